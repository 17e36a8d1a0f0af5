//! Istio `AuthorizationPolicy` as a waypoint enforces it: full L7 semantics over HTTP requests.
//!
//! Load with [`L7Policies::parse`], decide with [`L7Policies::evaluate`] (or cache
//! [`L7Policies::applicable`] per waypoint and service). Only policies that *target* the waypoint
//! or the destination service apply (see [`WaypointTarget`]).
//!
//! # Decision order
//! 1. CUSTOM policies whose rules match → **deny** (see below).
//! 2. Any DENY policy matches → deny.
//! 3. No ALLOW policy applies → allow.
//! 4. Any ALLOW policy matches → allow.
//! 5. Else deny.
//!
//! AUDIT policies are evaluated and the matching ones listed in [`L7Decision::audit`]; they never
//! change the decision. Policies annotated `istio.io/dry-run: "true"` are evaluated and listed in
//! [`L7Decision::dry_run`], never enforced.
//!
//! # Matching
//! A policy matches when any rule matches; `rules` absent or empty never matches (so an ALLOW
//! policy without rules denies everything, and a DENY one without rules does nothing), while a
//! rule `{}` matches everything. A rule matches when (`from` is empty or any source matches) and
//! (`to` is empty or any operation matches) and every `when` condition matches. Inside a source
//! or operation every set field must pass: a value list passes when any value matches, a `not*`
//! list when none does. An attribute the request lacks (no peer identity, no JWT, missing header)
//! fails every value list and passes every `not*` list, exactly like Envoy's RBAC `not_id`.
//!
//! String values use Istio's wildcards: `*` (present and non-empty), `abc*` (prefix), `*abc`
//! (suffix), else exact; matching is case-sensitive except for `hosts`.
//!
//! | field / `when` key | matched against |
//! |---|---|
//! | `principals`, `source.principal` | peer SPIFFE id without `spiffe://` |
//! | `namespaces`, `source.namespace` | namespace in the peer SPIFFE id |
//! | `serviceAccounts` (`sa` or `ns/sa`, exact) | namespace + service account of the peer id; trust domain ignored |
//! | `trustDomains` | trust domain of the peer id |
//! | `ipBlocks`, `source.ip` | [`HttpRequest::source_ip`] (IP or CIDR) |
//! | `remoteIpBlocks`, `remote.ip` | [`HttpRequest::remote_ip`] |
//! | `requestPrincipals`, `request.auth.principal` | JWT `iss`/`sub`, split at the last `/` of the value as Istio does (`*` = any issuer and subject, `iss/*` = any subject of `iss`, `*/sub` = `sub` from any issuer) |
//! | `request.auth.audiences` | any JWT `aud` |
//! | `request.auth.presenter` | JWT `azp` |
//! | `request.auth.claims[a][b]` | claim `a.b` (nested): a string, or any string of a list |
//! | `request.headers[name]` | header value (several values joined with `,`); `*` = header present; `[:authority]`/`[host]`, `[:method]`, `[:path]` read the request line (path with query, as received) |
//! | `hosts` | [`HttpRequest::host`] (`:authority`), case-insensitive, **port included** as in Istio: write `example.com` *and* `example.com:*` to cover both |
//! | `methods` | method, case-sensitive |
//! | `paths` | the normalized path without query ([`PathNormalization`], [`normalize_path`]); `{*}`/`{**}` templates |
//! | `ports`, `destination.port` | [`HttpRequest::destination_port`] |
//! | `destination.ip` | [`HttpRequest::destination_ip`] |
//! | `connection.sni` | [`HttpRequest::sni`] |
//!
//! # What cannot be enforced, and how it fails
//! - `action: CUSTOM` (external authorization) is not supported. The loader warns, and the
//!   policy's rules are enforced as a DENY: requests the extension would have been asked about are
//!   refused. This is what Istio itself generates when a CUSTOM provider is missing or invalid
//!   ("will generate deny configs"): failing closed.
//! - Values that cannot be compiled (a bad CIDR or port, an invalid header name or path template,
//!   an empty string) and `when` keys that are unknown or not meaningful at a waypoint
//!   (`experimental.envoy.filters.*`, which reads network-filter metadata an HTTP proxy does not
//!   have) are reported as warnings and handled as istiod does, always towards "more
//!   restrictive": in an ALLOW policy the whole rule is dropped (it allows nothing), in DENY,
//!   AUDIT and CUSTOM policies the value or condition is dropped (the rule matches more).
//! - Policies with `selector`, or with neither `selector` nor `targetRefs`, are skipped with a
//!   warning: waypoints do not apply them (ztunnel enforces their L4 part).

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ambit_identity::SpiffeId;
use http::HeaderName;
use ipnet::IpNet;

use ambit_config::attach::{Attached, Attachment, Keyed, WaypointTarget};
use ambit_config::{ConfigError, ConfigWarning, Object, Report};

use crate::RequestAuth;
use crate::model::StringMatch;
use crate::set::DEFAULT_ROOT_NAMESPACE;

mod compile;
mod path;

use path::PathPattern;
pub use path::{PathNormalization, normalize_path, path_without_query};

/// What an L7 policy does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum L7Action {
    /// Allow matching requests (and, once any ALLOW policy applies, deny the rest).
    Allow,
    /// Record matching requests for auditing; never changes the decision.
    Audit,
    /// External authorization, which ambit does not support: matching requests are denied.
    Custom,
    /// Deny matching requests.
    Deny,
}

/// One compiled AuthorizationPolicy, as a waypoint enforces it.
#[derive(Debug)]
pub struct L7Policy {
    key: Arc<str>,
    name: String,
    namespace: String,
    action: L7Action,
    dry_run: bool,
    rules: Vec<Rule>,
    attachments: Vec<Attachment>,
}

/// All AuthorizationPolicies known to a waypoint, indexed by what they target.
#[derive(Debug, Clone)]
pub struct L7Policies {
    by_key: HashMap<String, Arc<L7Policy>>,
    attached: Attached<L7Policy>,
    root_namespace: String,
    normalization: PathNormalization,
}

/// The policies that apply to one waypoint and service, ready to decide many requests.
#[derive(Debug, Clone, Default)]
pub struct L7Applicable {
    policies: Vec<Arc<L7Policy>>,
    normalization: PathNormalization,
}

/// The attributes of one HTTP request that policy can see, borrowed from the proxy's request.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// The peer's verified SPIFFE id (from HBONE mTLS); `None` for plaintext.
    pub source_id: Option<&'a SpiffeId>,
    /// The peer's IP (`ipBlocks`, `source.ip`).
    pub source_ip: IpAddr,
    /// The original client IP (from `X-Forwarded-For` / PROXY protocol with the configured
    /// number of trusted proxies), or `source_ip` when there is none (`remoteIpBlocks`).
    pub remote_ip: IpAddr,
    /// The IP the client addressed (service VIP or workload IP).
    pub destination_ip: IpAddr,
    /// The port the client addressed (the service port for service traffic).
    pub destination_port: u16,
    /// `:authority` / `Host`, as received (port included if the client sent one).
    pub host: &'a str,
    /// The method, as received.
    pub method: &'a str,
    /// The request target as received: path plus optional query. The query is ignored and the
    /// path normalized before matching.
    pub path: &'a str,
    /// The request headers.
    pub headers: &'a http::HeaderMap,
    /// The request's JWT authentication (ambit-authn's `Authenticators::authenticate` gives it).
    pub auth: Option<&'a RequestAuth>,
    /// The TLS SNI the client sent to the waypoint, if any.
    pub sni: Option<&'a str>,
}

/// The outcome for one request. Denial is a value, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct L7Decision {
    /// Whether the request may proceed (a denied request is answered with HTTP 403).
    pub allowed: bool,
    /// The deciding policy (`namespace/name`), when one decided.
    pub policy: Option<Arc<str>>,
    /// Why.
    pub reason: L7Reason,
    /// AUDIT policies that matched (`namespace/name`), for the access log.
    pub audit: Vec<Arc<str>>,
    /// Dry-run policies that matched (`namespace/name`); never enforced.
    pub dry_run: Vec<Arc<str>>,
    /// The decision had the dry-run policies been enforced too; `None` when none applies.
    pub would_be: Option<crate::DryRun>,
}

/// Why an L7 decision came out as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum L7Reason {
    /// A CUSTOM policy matched; external authorization is unsupported, so it denies.
    DeniedByCustom,
    /// A DENY policy matched.
    DeniedByPolicy,
    /// An ALLOW policy matched.
    AllowedByPolicy,
    /// No ALLOW policy applies, and no DENY matched.
    NoAllowPolicies,
    /// ALLOW policies apply, but none matched.
    NoAllowMatched,
}

// === compiled rules (crate-private) ===

/// `from` (OR of AND-ed conditions), `to` (same), `when` (AND).
#[derive(Debug, Clone, Default)]
struct Rule {
    from: Vec<Vec<Cond>>,
    to: Vec<Vec<Cond>>,
    when: Vec<Cond>,
}

/// A value list and a `not` list over one attribute.
#[derive(Debug, Clone)]
struct Values<M> {
    values: Vec<M>,
    not_values: Vec<M>,
}

/// Istio `requestPrincipals`: the issuer and subject are matched separately.
#[derive(Debug, Clone)]
struct IssSub {
    iss: StringMatch,
    sub: StringMatch,
}

/// A header condition: `*` means present (even empty), like Envoy's `present_match`.
#[derive(Debug, Clone)]
enum HeaderMatch {
    Present,
    Value(StringMatch),
}

/// A pseudo-header a `request.headers[...]` condition can name.
#[derive(Debug, Clone, Copy)]
enum Pseudo {
    Authority,
    Method,
    Path,
}

/// One condition on one request attribute.
#[derive(Debug, Clone)]
enum Cond {
    Principal(Values<StringMatch>),
    Namespace(Values<StringMatch>),
    ServiceAccount(Values<(String, String)>),
    TrustDomain(Values<StringMatch>),
    SourceIp(Values<IpNet>),
    RemoteIp(Values<IpNet>),
    RequestPrincipal(Values<IssSub>),
    Audience(Values<StringMatch>),
    Presenter(Values<StringMatch>),
    Claim(Vec<String>, Values<StringMatch>),
    Header(HeaderName, Values<HeaderMatch>),
    /// `request.headers[:authority]` (or `[host]`), `[:method]`, `[:path]`: HTTP/2 keeps these
    /// out of the header map, so they are read from the request view (path as received).
    Pseudo(Pseudo, Values<HeaderMatch>),
    DestinationIp(Values<IpNet>),
    DestinationPort(Values<u16>),
    Sni(Values<StringMatch>),
    /// Patterns are lowercase; the host is compared ASCII-case-insensitively.
    Host(Values<StringMatch>),
    Method(Values<StringMatch>),
    Path(Values<PathPattern>),
}

// === impl L7Policies ===

impl Default for L7Policies {
    fn default() -> Self {
        Self::new()
    }
}

impl L7Policies {
    /// An empty set with root namespace `istio-system` and Istio's default path normalization.
    pub fn new() -> Self {
        Self::with_root_namespace(DEFAULT_ROOT_NAMESPACE)
    }

    /// An empty set with another root namespace (where `GatewayClass istio-waypoint` targets
    /// are honoured).
    pub fn with_root_namespace(root: &str) -> Self {
        Self {
            by_key: HashMap::new(),
            attached: Attached::default(),
            root_namespace: root.to_owned(),
            normalization: PathNormalization::default(),
        }
    }

    /// Parses a YAML stream (documents separated by `---`). `file` names the source in
    /// messages (may be empty). AuthorizationPolicies are compiled; RequestAuthentication and
    /// PeerAuthentication are skipped silently (other loaders read them); other kinds are
    /// skipped with a warning. A malformed AuthorizationPolicy is an error naming the file, the
    /// object and the field; see the module docs for what loads with a warning.
    pub fn parse(
        yaml: &str,
        file: &str,
        root_namespace: &str,
    ) -> Result<(Self, Vec<ConfigWarning>), ConfigError> {
        let mut report = Report::new(file);
        let objects = ambit_config::objects(yaml, &report)?;
        let set = Self::from_objects(&objects, root_namespace, &mut report)?;
        for o in &objects {
            if !matches!(
                o.kind.as_str(),
                "AuthorizationPolicy" | "RequestAuthentication" | "PeerAuthentication"
            ) {
                report.warn(&o.label(), "kind", "not an AuthorizationPolicy; skipped");
            }
        }
        Ok((set, report.into_warnings()))
    }

    /// The AuthorizationPolicies among `objects`, compiled (other kinds are left for other
    /// loaders, silently); warnings go to `report`.
    pub fn from_objects(
        objects: &[Object],
        root_namespace: &str,
        report: &mut Report,
    ) -> Result<Self, ConfigError> {
        let mut set = Self::with_root_namespace(root_namespace);
        for obj in objects.iter().filter(|o| o.kind == "AuthorizationPolicy") {
            if !crate::is_security_api(&obj.api_version) {
                return Err(crate::unsupported_api(obj, report));
            }
            if let Some(p) = compile::policy(obj, root_namespace, report)? {
                set.insert(p);
            }
        }
        Ok(set)
    }

    /// Adds every policy of `other` (replacing policies with the same `namespace/name`).
    pub fn merge(&mut self, other: L7Policies) {
        let mut incoming: Vec<Arc<L7Policy>> = other.by_key.into_values().collect();
        incoming.sort_by(|a, b| a.key.cmp(&b.key));
        for p in incoming {
            self.insert_arc(p);
        }
    }

    fn insert(&mut self, p: L7Policy) {
        self.insert_arc(Arc::new(p));
    }

    fn insert_arc(&mut self, p: Arc<L7Policy>) {
        self.remove(&p.key);
        self.attached.insert(&p.attachments, &p);
        self.by_key.insert(p.key.to_string(), p);
    }

    /// Removes a policy by `namespace/name`; returns whether it existed.
    pub fn remove(&mut self, key: &str) -> bool {
        match self.by_key.remove(key) {
            Some(p) => {
                self.attached.remove(&p);
                true
            }
            None => false,
        }
    }

    /// Sets how request paths are normalized before matching (default: Istio's `BASE`).
    pub fn set_path_normalization(&mut self, mode: PathNormalization) {
        self.normalization = mode;
    }

    /// The path normalization in use.
    pub fn path_normalization(&self) -> PathNormalization {
        self.normalization
    }

    /// The root namespace.
    pub fn root_namespace(&self) -> &str {
        &self.root_namespace
    }

    /// A policy by `namespace/name`.
    pub fn get(&self, key: &str) -> Option<&Arc<L7Policy>> {
        self.by_key.get(key)
    }

    /// Number of policies that apply to some waypoint.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Every policy, in no particular order.
    pub fn policies(&self) -> impl Iterator<Item = &Arc<L7Policy>> {
        self.by_key.values()
    }

    /// The policies that apply to requests through `target`, for caching.
    pub fn applicable(&self, target: &WaypointTarget<'_>) -> L7Applicable {
        let mut policies: Vec<Arc<L7Policy>> = Vec::new();
        for p in self.attached.for_target(target) {
            if !policies.iter().any(|q| Arc::ptr_eq(p, q)) {
                policies.push(p.clone());
            }
        }
        L7Applicable {
            policies,
            normalization: self.normalization,
        }
    }

    /// Decides one request through `target`. Allocates nothing unless a policy is reported
    /// in [`L7Decision::audit`] / [`L7Decision::dry_run`] or the path needs normalizing.
    pub fn evaluate(&self, target: &WaypointTarget<'_>, req: &HttpRequest<'_>) -> L7Decision {
        decide(self.attached.for_target(target), req, self.normalization)
    }
}

// === impl L7Applicable ===

impl L7Applicable {
    /// Decides one request (see the module docs for the order).
    pub fn evaluate(&self, req: &HttpRequest<'_>) -> L7Decision {
        decide(self.policies.iter(), req, self.normalization)
    }

    /// How many policies apply (all actions, dry-run included).
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// Whether no policy applies.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

/// The decision procedure over the applicable policies, iterated once per phase.
fn decide<'p, I>(policies: I, req: &HttpRequest<'_>, normalization: PathNormalization) -> L7Decision
where
    I: Iterator<Item = &'p Arc<L7Policy>> + Clone,
{
    let cx = Cx::new(req, normalization);
    let mut audit: Vec<Arc<str>> = Vec::new();
    let mut dry_run: Vec<Arc<str>> = Vec::new();
    for p in policies.clone() {
        let list = match (p.dry_run, p.action) {
            (true, _) => &mut dry_run,
            (false, L7Action::Audit) => &mut audit,
            _ => continue,
        };
        if !list.contains(&p.key) && p.matches_cx(&cx) {
            list.push(p.key.clone());
        }
    }
    let any_dry_run = policies.clone().any(|p| p.dry_run);
    let (allowed, policy, reason) = verdict(policies.clone().filter(|p| !p.dry_run), &cx);
    let would_be = any_dry_run.then(|| {
        let (allowed, policy, _) = verdict(policies, &cx);
        crate::DryRun {
            allowed,
            policy: policy.map(|p| p.key.to_string()),
        }
    });
    L7Decision {
        allowed,
        policy: policy.map(|p| p.key.clone()),
        reason,
        audit,
        dry_run,
        would_be,
    }
}

/// CUSTOM, then DENY, then ALLOW, over `policies`.
fn verdict<'p, I>(policies: I, cx: &Cx<'_>) -> (bool, Option<&'p Arc<L7Policy>>, L7Reason)
where
    I: Iterator<Item = &'p Arc<L7Policy>> + Clone,
{
    for (action, reason) in [
        (L7Action::Custom, L7Reason::DeniedByCustom),
        (L7Action::Deny, L7Reason::DeniedByPolicy),
    ] {
        if let Some(p) = policies
            .clone()
            .find(|p| p.action == action && p.matches_cx(cx))
        {
            return (false, Some(p), reason);
        }
    }
    let mut allows = policies.filter(|p| p.action == L7Action::Allow).peekable();
    if allows.peek().is_none() {
        return (true, None, L7Reason::NoAllowPolicies);
    }
    match allows.find(|p| p.matches_cx(cx)) {
        Some(p) => (true, Some(p), L7Reason::AllowedByPolicy),
        None => (false, None, L7Reason::NoAllowMatched),
    }
}

// === impl L7Policy ===

impl L7Policy {
    /// `namespace/name`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Action.
    pub fn action(&self) -> L7Action {
        self.action
    }

    /// Whether it is a dry-run policy (`istio.io/dry-run: "true"`).
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// How many rules survived compilation.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Whether any rule matches `req`, with Istio's default path normalization.
    pub fn matches(&self, req: &HttpRequest<'_>) -> bool {
        self.matches_cx(&Cx::new(req, PathNormalization::default()))
    }

    fn matches_cx(&self, cx: &Cx<'_>) -> bool {
        self.rules.iter().any(|r| r.matches(cx))
    }
}

impl Keyed for L7Policy {
    fn sort_key(&self) -> &str {
        &self.key
    }
}

// === evaluation ===

/// A request with the parts derived from it computed once per decision.
struct Cx<'a> {
    req: &'a HttpRequest<'a>,
    principal: Option<&'a str>,
    namespace: Option<&'a str>,
    service_account: Option<(&'a str, &'a str)>,
    trust_domain: Option<&'a str>,
    normalization: PathNormalization,
    path: OnceCell<Cow<'a, str>>,
}

impl<'a> Cx<'a> {
    fn new(req: &'a HttpRequest<'a>, normalization: PathNormalization) -> Self {
        let id = req.source_id;
        Self {
            req,
            principal: id.map(SpiffeId::principal),
            namespace: id.and_then(SpiffeId::namespace),
            service_account: id.and_then(|id| Some((id.namespace()?, id.service_account()?))),
            trust_domain: id.map(SpiffeId::trust_domain_name),
            normalization,
            path: OnceCell::new(),
        }
    }

    fn path(&self) -> &str {
        self.path
            .get_or_init(|| normalize_path(path_without_query(self.req.path), self.normalization))
    }
}

impl Rule {
    fn matches(&self, cx: &Cx<'_>) -> bool {
        let all = |conds: &[Cond]| conds.iter().all(|c| c.matches(cx));
        (self.from.is_empty() || self.from.iter().any(|s| all(s)))
            && (self.to.is_empty() || self.to.iter().any(|o| all(o)))
            && all(&self.when)
    }
}

impl<M> Values<M> {
    fn pass(&self, matches: impl Fn(&M) -> bool) -> bool {
        (self.values.is_empty() || self.values.iter().any(&matches))
            && !self.not_values.iter().any(&matches)
    }
}

impl Cond {
    fn matches(&self, cx: &Cx<'_>) -> bool {
        let req = cx.req;
        let auth = req.auth;
        let opt = |v: Option<&str>, m: &StringMatch| v.is_some_and(|v| m.matches(v));
        match self {
            Cond::Principal(v) => v.pass(|m| opt(cx.principal, m)),
            Cond::Namespace(v) => v.pass(|m| opt(cx.namespace, m)),
            Cond::ServiceAccount(v) => v.pass(|(ns, sa)| {
                cx.service_account
                    .is_some_and(|(n, s)| n == ns.as_str() && s == sa.as_str())
            }),
            Cond::TrustDomain(v) => v.pass(|m| opt(cx.trust_domain, m)),
            Cond::SourceIp(v) => v.pass(|n| contains(n, req.source_ip)),
            Cond::RemoteIp(v) => v.pass(|n| contains(n, req.remote_ip)),
            Cond::DestinationIp(v) => v.pass(|n| contains(n, req.destination_ip)),
            Cond::DestinationPort(v) => v.pass(|p| *p == req.destination_port),
            Cond::RequestPrincipal(v) => v.pass(|m| {
                auth.is_some_and(|a| m.iss.matches(&a.issuer) && opt(a.subject.as_deref(), &m.sub))
            }),
            Cond::Audience(v) => {
                v.pass(|m| auth.is_some_and(|a| a.audiences.iter().any(|aud| m.matches(aud))))
            }
            Cond::Presenter(v) => v.pass(|m| opt(auth.and_then(|a| a.presenter.as_deref()), m)),
            Cond::Claim(path, v) => {
                let claim = auth.and_then(|a| a.claim(path));
                v.pass(|m| claim.is_some_and(|c| claim_matches(c, m)))
            }
            Cond::Header(name, v) => v.pass(|m| header_matches(req.headers, name, m)),
            Cond::Pseudo(p, v) => {
                let value = match p {
                    Pseudo::Authority => req.host,
                    Pseudo::Method => req.method,
                    Pseudo::Path => req.path,
                };
                v.pass(|m| match m {
                    HeaderMatch::Present => true,
                    HeaderMatch::Value(m) => m.matches(value),
                })
            }
            Cond::Sni(v) => v.pass(|m| opt(req.sni, m)),
            Cond::Host(v) => v.pass(|m| host_matches(req.host, m)),
            Cond::Method(v) => v.pass(|m| m.matches(req.method)),
            Cond::Path(v) => v.pass(|m| m.matches(cx.path())),
        }
    }
}

/// A claim value matches when it is a string that matches, or a list with one that does.
fn claim_matches(claim: &serde_json::Value, m: &StringMatch) -> bool {
    match claim {
        serde_json::Value::String(s) => m.matches(s),
        serde_json::Value::Array(items) => items
            .iter()
            .any(|i| i.as_str().is_some_and(|s| m.matches(s))),
        _ => false,
    }
}

fn header_matches(headers: &http::HeaderMap, name: &HeaderName, m: &HeaderMatch) -> bool {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return false;
    };
    let m = match m {
        HeaderMatch::Present => return true,
        HeaderMatch::Value(m) => m,
    };
    let text = |v: &http::HeaderValue| std::str::from_utf8(v.as_bytes()).ok().map(str::to_owned);
    match values.next() {
        // The common case: one value, compared in place.
        None => std::str::from_utf8(first.as_bytes()).is_ok_and(|s| m.matches(s)),
        // Several values: matched joined with ",", as Envoy does.
        Some(second) => {
            let mut joined = String::new();
            for v in [first, second].into_iter().chain(values) {
                let Some(s) = text(v) else {
                    return false;
                };
                if !joined.is_empty() {
                    joined.push(',');
                }
                joined.push_str(&s);
            }
            m.matches(&joined)
        }
    }
}

/// `m` is lowercase; `host` is compared ASCII-case-insensitively without allocating.
fn host_matches(host: &str, m: &StringMatch) -> bool {
    let h = host.as_bytes();
    match m {
        StringMatch::Exact(s) => h.eq_ignore_ascii_case(s.as_bytes()),
        StringMatch::Prefix(p) => {
            h.len() >= p.len() && h[..p.len()].eq_ignore_ascii_case(p.as_bytes())
        }
        StringMatch::Suffix(s) => {
            h.len() >= s.len() && h[h.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
        }
        StringMatch::Presence => !h.is_empty(),
    }
}

/// CIDR containment that also matches IPv4 addresses written as IPv4-mapped IPv6.
fn contains(net: &IpNet, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    net.contains(&ip)
}

impl fmt::Display for L7Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.reason, &self.policy) {
            (L7Reason::DeniedByCustom, Some(p)) => write!(
                f,
                "denied by CUSTOM policy {p} (external authorization is not supported)"
            ),
            (L7Reason::DeniedByPolicy, Some(p)) => write!(f, "denied by {p}"),
            (L7Reason::AllowedByPolicy, Some(p)) => write!(f, "allowed by {p}"),
            (L7Reason::NoAllowPolicies, _) => f.write_str("allowed: no ALLOW policy applies"),
            (L7Reason::NoAllowMatched, _) => {
                f.write_str("denied: allow policies exist, but none allowed")
            }
            (_, None) => f.write_str(if self.allowed { "allowed" } else { "denied" }),
        }
    }
}

#[cfg(test)]
mod tests;
