//! Istio `RequestAuthentication` (JWT) as a waypoint enforces it. Pure: the caller passes the
//! current time and fetches remote key sets (see [`Authenticators::jwks_uris`]). The verified
//! identity it produces, [`RequestAuth`], is what ambit-authz's L7 policies read.
//!
//! # Outcome of [`Authenticators::authenticate`]
//! - No rule applies, or none of the applicable rules finds a token: [`AuthnOutcome::Anonymous`]
//!   (the request goes on without a request principal; pair with an AuthorizationPolicy such as
//!   `notRequestPrincipals: ["*"]` to require one).
//! - Every token found verifies: [`AuthnOutcome::Authenticated`] with the [`RequestAuth`] of the
//!   first token (rules in issuer order as istiod sorts them, then each rule's locations in
//!   order) and the [`HeaderEdits`] to apply before forwarding.
//! - Any token found does not verify: [`AuthnOutcome::Denied`]; answer HTTP 401 with the
//!   reason (Envoy's wording, e.g. `Jwt is expired`).
//!
//! Several tokens (in different locations, or for different issuers) must *all* be valid. Istio
//! calls the principal "undefined" in that case and Envoy can accept a request whose second token
//! is invalid when another provider's token is valid; ambit rejects it, and picks the principal
//! deterministically as above.
//!
//! # Where tokens are looked for
//! Each rule's `fromHeaders` (`name` with optional exact `prefix`; a header without the prefix
//! holds no token), `fromParams` (query parameters) and `fromCookies`; when a rule sets none of
//! them: `Authorization: Bearer <token>` (scheme case-insensitive), then the `access_token` query
//! parameter. A token found in a location is checked against the rules that read that location:
//! the one whose `issuer` equals the token's `iss` (a rule without `issuer` takes any issuer). No
//! such rule: `Jwt issuer is not configured`.
//!
//! # Verification
//! - Algorithms: RS256/384/512, PS256/384/512, ES256/384, EdDSA (Ed25519). `alg: none` and HS*
//!   are refused before any key is looked at, and `oct` keys in a JWKS are ignored: a public key
//!   set can never verify an HMAC token, which closes the classic "HS256 signed with the RSA
//!   public key" confusion. Tokens with a `crit` header are refused (no extension is understood).
//! - Keys, as Envoy selects them: a JWKS key is a candidate when its `kid` equals the token's
//!   `kid` (or either has none), its `alg` (if set) equals the token's, and its type fits the
//!   algorithm. No candidate: `Jwks doesn't have key to match kid or alg from Jwt`; candidates
//!   but no valid signature: `Jwt verification fails`.
//! - Times: `exp` and `nbf` are optional (as in Envoy); when present they must be integers and
//!   are checked with [`CLOCK_SKEW_SECONDS`] (60 s, Envoy's default) of leeway against the
//!   `now_unix` the caller passes.
//! - `aud`: when the rule lists `audiences`, one of the token's must be among them, compared
//!   after stripping an `http://`/`https://` scheme and a trailing `/` (as Envoy does). When the
//!   rule lists none, any audience is accepted (Istio documents "the service name"; Envoy
//!   accepts any, and ambit follows Envoy).
//!
//! # Forwarding ([`HeaderEdits`])
//! - The token is removed unless `forwardOriginalToken: true`: a header location loses the whole
//!   header (as Envoy does), a query parameter is removed from the path
//!   ([`HeaderEdits::apply_to_path`]), a cookie is removed from `Cookie`.
//! - `outputPayloadToHeader: h` sets `h` to the token's payload segment (base64url of the
//!   payload JSON, unpadded, as Envoy forwards it).
//! - `outputClaimToHeaders: [{header, claim}]` sets `header` to the claim (dots for nesting): a
//!   string as is, a number or boolean as JSON text, a list of those joined with `,`; other
//!   values set nothing.
//! - Hardening beyond Istio: every output header of every applicable rule is removed from the
//!   incoming request first, also for anonymous requests, so a client cannot forge
//!   `x-jwt-payload`-style headers that backends trust.
//!
//! # Remote key sets
//! `jwksUri` key sets (and, for rules with neither `jwks` nor `jwksUri`, the issuer's OpenID
//! discovery document) are fetched by the caller: [`Authenticators::jwks_uris`] lists them,
//! [`Authenticators::set_jwks`] installs or rotates one (atomically; readers never block), and
//! until a set is installed tokens needing it are refused with `Jwks remote fetch is failed`.
//! [`Authenticators::adopt_jwks`] carries fetched sets across a configuration reload.
//!
//! # Example
//!
//! ```
//! use ambit_authn::{Authenticators, AuthnOutcome};
//! use ambit_authz::WaypointTarget;
//!
//! let yaml = r#"
//! apiVersion: security.istio.io/v1
//! kind: RequestAuthentication
//! metadata: {name: jwt, namespace: shop}
//! spec:
//!   targetRefs: [{kind: Service, group: "", name: cart}]
//!   jwtRules: [{issuer: "https://issuer.example", jwksUri: "https://issuer.example/keys"}]
//! "#;
//! let (authn, warnings) = Authenticators::parse(yaml, "authn.yaml", "istio-system")?;
//! assert_eq!(authn.len(), 1, "{warnings:?}");
//! let target = WaypointTarget { namespace: "shop", name: "waypoint", service: Some(("shop", "cart")) };
//! let mut headers = http::HeaderMap::new();
//! // No token: anonymous (pair with an AuthorizationPolicy to require one).
//! assert!(matches!(authn.authenticate(&target, &headers, "/", 0), AuthnOutcome::Anonymous { .. }));
//! // A token that is not a JWT: 401, with Envoy's wording.
//! headers.insert("authorization", "Bearer not-a-jwt".parse()?);
//! match authn.authenticate(&target, &headers, "/", 0) {
//!     AuthnOutcome::Denied { reason } => assert_eq!(
//!         reason.to_string(),
//!         "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
//!     ),
//!     other => panic!("{other}"),
//! }
//! // The caller fetches remote key sets and installs them.
//! assert_eq!(authn.jwks_uris()[0].uri, "https://issuer.example/keys");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::{HeaderMap, HeaderName, HeaderValue};

use ambit_authz::DEFAULT_ROOT_NAMESPACE;
use ambit_config::attach::{Attached, Attachment, Keyed, WaypointTarget};
use ambit_config::{ConfigError, ConfigWarning, Object, Report};

pub use ambit_authz::RequestAuth;

mod extract;
mod keys;
mod load;
mod token;

use keys::KeySet;
pub use keys::jwks_uri_from_openid_configuration;

/// Leeway for `exp` and `nbf`, in seconds (Envoy's default `clock_skew_seconds`).
pub const CLOCK_SKEW_SECONDS: u64 = 60;

/// What authentication decided for one request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AuthnOutcome {
    /// No token: the request continues without a request principal. `edits` strips forged
    /// output headers (see the module docs).
    Anonymous {
        /// Edits to apply before forwarding.
        edits: HeaderEdits,
    },
    /// Every token verified.
    Authenticated {
        /// The request principal and claims.
        auth: RequestAuth,
        /// Edits to apply before forwarding.
        edits: HeaderEdits,
    },
    /// A token is present but invalid: answer 401 with `reason`.
    Denied {
        /// Why (its `Display` is Envoy's wording).
        reason: JwtError,
    },
}

/// Header (and query) changes to make before forwarding an authenticated request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, HeaderValue)>,
    remove_params: Vec<String>,
    remove_cookies: Vec<String>,
}

/// Why a token was refused. `Display` gives Envoy's `jwt_authn` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Not three dot-separated parts.
    #[error("Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections")]
    BadFormat,
    /// Header is not base64url.
    #[error("Jwt header is an invalid Base64url encoded")]
    HeaderBadBase64,
    /// Header is not a JSON object.
    #[error("Jwt header is an invalid JSON")]
    HeaderBadJson,
    /// `alg` missing or not a string.
    #[error("Jwt header [alg] field is required and must be a string")]
    HeaderBadAlg,
    /// `alg` is `none`, HMAC, or unknown.
    #[error("Jwt header [alg] is not supported")]
    UnsupportedAlg,
    /// `kid` is not a string.
    #[error("Jwt header [kid] field is not a string")]
    HeaderBadKid,
    /// A `crit` header asks for extensions ambit does not implement.
    #[error("Jwt header [crit] is not supported")]
    UnsupportedCritical,
    /// Payload is not base64url.
    #[error("Jwt payload is an invalid Base64url encoded")]
    PayloadBadBase64,
    /// Payload is not a JSON object.
    #[error("Jwt payload is an invalid JSON")]
    PayloadBadJson,
    /// `iss` is not a string.
    #[error("Jwt payload [iss] field is not a string")]
    BadIssuer,
    /// `sub` is not a string.
    #[error("Jwt payload [sub] field is not a string")]
    BadSubject,
    /// `aud` is not a string or a list of strings.
    #[error("Jwt payload [aud] field is not a string or string list")]
    BadAudience,
    /// `exp` is not an integer.
    #[error("Jwt payload [exp] field is not an integer")]
    BadExp,
    /// `nbf` is not an integer.
    #[error("Jwt payload [nbf] field is not an integer")]
    BadNbf,
    /// Signature is not base64url.
    #[error("Jwt signature is an invalid Base64url encoded")]
    SignatureBadBase64,
    /// No rule reading this location has the token's issuer.
    #[error("Jwt issuer is not configured")]
    UnknownIssuer,
    /// `exp` (plus leeway) is in the past.
    #[error("Jwt is expired")]
    Expired,
    /// `nbf` (minus leeway) is in the future.
    #[error("Jwt not yet valid")]
    NotYetValid,
    /// None of the token's audiences is allowed.
    #[error("Audiences in Jwt are not allowed")]
    AudienceNotAllowed,
    /// The key set has no key with the token's `kid` / `alg`.
    #[error("Jwks doesn't have key to match kid or alg from Jwt")]
    KidAlgMismatch,
    /// No candidate key verifies the signature.
    #[error("Jwt verification fails")]
    VerificationFailed,
    /// The remote key set has not been fetched (yet).
    #[error("Jwks remote fetch is failed")]
    JwksNotFetched,
}

/// A key set that could not be installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// No rule uses this URI.
    #[error("no RequestAuthentication rule uses jwksUri {0:?}")]
    UnknownUri(String),
    /// Not a JWKS document.
    #[error("not a JSON Web Key Set: {0}")]
    Malformed(String),
    /// Parsed, but no key is usable for signature verification (reasons listed).
    #[error("no usable key in the JSON Web Key Set ({0})")]
    NoUsableKeys(String),
    /// An OpenID discovery document without `jwks_uri`.
    #[error("OpenID configuration has no jwks_uri: {0}")]
    NoJwksUri(String),
}

/// A key set the caller must fetch for the authenticators.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwksUri {
    /// What to GET. Also the key to pass to [`Authenticators::set_jwks`].
    pub uri: String,
    /// The rule's `timeout` for the fetch (default 5 s).
    pub timeout: Duration,
    /// `uri` is an OpenID discovery document (`<issuer>/.well-known/openid-configuration`):
    /// read its `jwks_uri` with [`jwks_uri_from_openid_configuration`], fetch that, and install
    /// the result under `uri`.
    pub openid_discovery: bool,
}

/// All RequestAuthentications known to a waypoint. Cheap to share (`Arc`) between threads;
/// [`set_jwks`](Self::set_jwks) works through a shared reference.
#[derive(Debug, Clone)]
pub struct Authenticators {
    by_key: HashMap<String, Arc<RaPolicy>>,
    attached: Attached<RaPolicy>,
    remote: HashMap<String, Arc<RemoteJwks>>,
    root_namespace: String,
}

// === crate-private model ===

/// One RequestAuthentication.
#[derive(Debug)]
struct RaPolicy {
    key: String,
    rules: Vec<Arc<JwtRule>>,
    attachments: Vec<Attachment>,
}

/// One `jwtRules` entry, compiled.
#[derive(Debug)]
struct JwtRule {
    /// Empty: any issuer.
    issuer: String,
    /// Normalized (scheme and trailing `/` stripped).
    audiences: Vec<String>,
    keys: Keys,
    locations: Vec<Location>,
    forward_original_token: bool,
    output_payload_to_header: Option<HeaderName>,
    output_claim_to_headers: Vec<(HeaderName, Vec<String>)>,
    space_delimited_claims: Vec<String>,
}

#[derive(Debug, Clone)]
enum Keys {
    Inline(Arc<KeySet>),
    Remote(Arc<RemoteJwks>),
}

/// A fetched key set slot.
#[derive(Debug)]
struct RemoteJwks {
    uri: String,
    timeout: Duration,
    openid_discovery: bool,
    keys: ArcSwapOption<KeySet>,
}

/// Where a token may be.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    /// A header, with a prefix that must be present exactly (`Bearer ` for the default, matched
    /// case-insensitively there).
    Header {
        name: HeaderName,
        prefix: String,
        ignore_case: bool,
    },
    Param(String),
    Cookie(String),
}

// === impl Authenticators ===

impl Default for Authenticators {
    fn default() -> Self {
        Self::new()
    }
}

impl Authenticators {
    /// None, with root namespace `istio-system`.
    pub fn new() -> Self {
        Self::with_root_namespace(DEFAULT_ROOT_NAMESPACE)
    }

    /// None, with another root namespace.
    pub fn with_root_namespace(root: &str) -> Self {
        Self {
            by_key: HashMap::new(),
            attached: Attached::default(),
            remote: HashMap::new(),
            root_namespace: root.to_owned(),
        }
    }

    /// Parses a YAML stream. RequestAuthentications are compiled (inline `jwks` parsed now);
    /// every other kind is skipped silently (ambit-authz's `L7Policies::parse` reports
    /// strangers). A malformed RequestAuthentication (including an invalid inline `jwks`, or
    /// both `jwks` and `jwksUri`) is an error naming the file, the object and the field.
    pub fn parse(
        yaml: &str,
        file: &str,
        root_namespace: &str,
    ) -> Result<(Self, Vec<ConfigWarning>), ConfigError> {
        let mut report = Report::new(file);
        let objects = ambit_config::objects(yaml, &report)?;
        let out = Self::from_objects(&objects, root_namespace, &mut report)?;
        Ok((out, report.into_warnings()))
    }

    /// The RequestAuthentications among `objects`, compiled (other kinds are left for other
    /// loaders, silently); warnings go to `report`.
    pub fn from_objects(
        objects: &[Object],
        root_namespace: &str,
        report: &mut Report,
    ) -> Result<Self, ConfigError> {
        let mut out = Self::with_root_namespace(root_namespace);
        for obj in objects.iter().filter(|o| o.kind == "RequestAuthentication") {
            if !matches!(
                obj.api_version.as_str(),
                "security.istio.io/v1" | "security.istio.io/v1beta1"
            ) {
                return Err(report.error(
                    &obj.label(),
                    "apiVersion",
                    format!(
                        "{:?} is not supported; use security.istio.io/v1 or v1beta1",
                        obj.api_version
                    ),
                ));
            }
            if let Some(p) = load::policy(obj, root_namespace, &mut out.remote, report)? {
                out.insert(p);
            }
        }
        Ok(out)
    }

    /// Adds everything of `other`, replacing RequestAuthentications with the same
    /// `namespace/name`. Remote key sets already fetched on either side are kept.
    pub fn merge(&mut self, other: Authenticators) {
        for (uri, slot) in &other.remote {
            match self.remote.get(uri) {
                Some(mine) => {
                    if mine.keys.load().is_none() {
                        mine.keys.store(slot.keys.load_full());
                    }
                }
                None => {
                    self.remote.insert(uri.clone(), slot.clone());
                }
            }
        }
        let mut incoming: Vec<Arc<RaPolicy>> = other.by_key.into_values().collect();
        incoming.sort_by(|a, b| a.key.cmp(&b.key));
        for p in incoming {
            // Point the incoming rules at this set's slots, so set_jwks reaches them.
            let rules = p
                .rules
                .iter()
                .map(|r| match &r.keys {
                    Keys::Remote(slot) => match self.remote.get(&slot.uri) {
                        Some(mine) if !Arc::ptr_eq(mine, slot) => Arc::new(JwtRule {
                            keys: Keys::Remote(mine.clone()),
                            ..r.duplicate()
                        }),
                        _ => r.clone(),
                    },
                    Keys::Inline(_) => r.clone(),
                })
                .collect();
            self.insert(RaPolicy {
                key: p.key.clone(),
                rules,
                attachments: p.attachments.clone(),
            });
        }
    }

    fn insert(&mut self, p: RaPolicy) {
        self.remove(&p.key);
        let p = Arc::new(p);
        self.attached.insert(&p.attachments, &p);
        self.by_key.insert(p.key.clone(), p);
    }

    /// Removes a RequestAuthentication by `namespace/name`; returns whether it existed.
    pub fn remove(&mut self, key: &str) -> bool {
        match self.by_key.remove(key) {
            Some(p) => {
                self.attached.remove(&p);
                true
            }
            None => false,
        }
    }

    /// Number of RequestAuthentications that apply to some waypoint.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The root namespace.
    pub fn root_namespace(&self) -> &str {
        &self.root_namespace
    }

    /// Whether any rule applies to requests through `target` (if not, skip authentication).
    pub fn applies_to(&self, target: &WaypointTarget<'_>) -> bool {
        self.attached
            .for_target(target)
            .any(|p| !p.rules.is_empty())
    }

    /// The remote key sets to fetch, sorted by URI.
    pub fn jwks_uris(&self) -> Vec<JwksUri> {
        let mut out: Vec<JwksUri> = self
            .remote
            .values()
            .map(|r| JwksUri {
                uri: r.uri.clone(),
                timeout: r.timeout,
                openid_discovery: r.openid_discovery,
            })
            .collect();
        out.sort_by(|a, b| a.uri.cmp(&b.uri));
        out
    }

    /// Whether the key set for `uri` has been installed.
    pub fn has_jwks(&self, uri: &str) -> bool {
        self.remote
            .get(uri)
            .is_some_and(|r| r.keys.load().is_some())
    }

    /// Installs (or rotates) the key set fetched from `uri`: `json` is the JWKS document.
    /// Returns how many keys are usable. On error the previous set stays in place.
    pub fn set_jwks(&self, uri: &str, json: &str) -> Result<usize, JwksError> {
        let slot = self
            .remote
            .get(uri)
            .ok_or_else(|| JwksError::UnknownUri(uri.to_owned()))?;
        let set = KeySet::parse(json)?;
        let n = set.len();
        slot.keys.store(Some(Arc::new(set)));
        Ok(n)
    }

    /// Carries every key set already fetched by `previous` (same URI) over to this one, for a
    /// configuration reload that should not refuse tokens while keys are re-fetched.
    pub fn adopt_jwks(&self, previous: &Authenticators) {
        for (uri, slot) in &self.remote {
            if let Some(keys) = previous
                .remote
                .get(uri)
                .and_then(|old| old.keys.load_full())
            {
                slot.keys.store(Some(keys));
            }
        }
    }

    /// Authenticates one request through `target`: `headers` as received, `path_and_query` the
    /// request target, `now_unix` the current time in seconds since the Unix epoch.
    pub fn authenticate(
        &self,
        target: &WaypointTarget<'_>,
        headers: &HeaderMap,
        path_and_query: &str,
        now_unix: u64,
    ) -> AuthnOutcome {
        let mut rules: Vec<&JwtRule> = Vec::new();
        for p in self.attached.for_target(target) {
            for r in &p.rules {
                if !rules.iter().any(|q| std::ptr::eq(*q, &**r)) {
                    rules.push(r);
                }
            }
        }
        if rules.is_empty() {
            return AuthnOutcome::Anonymous {
                edits: HeaderEdits::default(),
            };
        }
        // istiod sorts the rules by issuer; the first token found decides the principal.
        rules.sort_by(|a, b| a.issuer.cmp(&b.issuer));
        token::authenticate(&rules, headers, path_and_query, now_unix)
    }
}

impl JwtRule {
    /// A field-by-field copy (the rule holds no interior state of its own).
    fn duplicate(&self) -> JwtRule {
        JwtRule {
            issuer: self.issuer.clone(),
            audiences: self.audiences.clone(),
            keys: self.keys.clone(),
            locations: self.locations.clone(),
            forward_original_token: self.forward_original_token,
            output_payload_to_header: self.output_payload_to_header.clone(),
            output_claim_to_headers: self.output_claim_to_headers.clone(),
            space_delimited_claims: self.space_delimited_claims.clone(),
        }
    }
}

impl Keyed for RaPolicy {
    fn sort_key(&self) -> &str {
        &self.key
    }
}

// === impl HeaderEdits ===

impl HeaderEdits {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.set.is_empty()
            && self.remove_params.is_empty()
            && self.remove_cookies.is_empty()
    }

    /// Applies the header changes: removals (headers and cookies) first, then the output
    /// headers.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        if !self.remove_cookies.is_empty() {
            extract::remove_cookies(headers, &self.remove_cookies);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
    }

    /// The request target without the query parameters that carried a removed token.
    pub fn apply_to_path<'p>(&self, path_and_query: &'p str) -> Cow<'p, str> {
        extract::remove_params(path_and_query, &self.remove_params)
    }

    /// Applies every edit to a request about to be forwarded: the headers, and the request
    /// target without the query parameters that carried a removed token (the URI keeps its
    /// scheme and authority).
    pub fn apply_to_request(&self, parts: &mut http::request::Parts) {
        self.apply(&mut parts.headers);
        if self.remove_params.is_empty() {
            return;
        }
        let Some(pq) = parts.uri.path_and_query() else {
            return;
        };
        let trimmed = self.apply_to_path(pq.as_str());
        if trimmed == pq.as_str() {
            return;
        }
        let Ok(pq) = trimmed.parse::<http::uri::PathAndQuery>() else {
            return;
        };
        let mut u = parts.uri.clone().into_parts();
        u.path_and_query = Some(pq);
        if let Ok(uri) = http::Uri::from_parts(u) {
            parts.uri = uri;
        }
    }

    /// The headers and request target to forward after this outcome: `headers` and
    /// `path_and_query` as received, with every edit applied. The form the C ABI and the Python
    /// binding hand back.
    pub fn forwarded(&self, headers: &HeaderMap, path_and_query: &str) -> (HeaderMap, String) {
        let mut out = headers.clone();
        self.apply(&mut out);
        (out, self.apply_to_path(path_and_query).into_owned())
    }

    /// Headers to remove.
    pub fn removed_headers(&self) -> &[HeaderName] {
        &self.remove
    }

    /// Headers to set (replacing any value).
    pub fn set_headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.set
    }

    /// Query parameters to remove.
    pub fn removed_params(&self) -> &[String] {
        &self.remove_params
    }

    /// Cookies to remove.
    pub fn removed_cookies(&self) -> &[String] {
        &self.remove_cookies
    }
}

impl fmt::Display for JwksUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl fmt::Display for AuthnOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthnOutcome::Anonymous { .. } => f.write_str("anonymous"),
            AuthnOutcome::Authenticated { auth, .. } => {
                write!(f, "authenticated as {}", auth.principal())
            }
            AuthnOutcome::Denied { reason } => write!(f, "denied: {reason}"),
        }
    }
}

/// Envoy's audience comparison: scheme and trailing `/` do not matter.
fn normalize_audience(a: &str) -> &str {
    let a = a
        .strip_prefix("http://")
        .or_else(|| a.strip_prefix("https://"))
        .unwrap_or(a);
    a.strip_suffix('/').unwrap_or(a)
}

/// For the claim-to-header output: the text of a string, number, boolean or list of those.
fn claim_header_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::Array(items) => {
            let parts: Option<Vec<String>> = items
                .iter()
                .map(|i| match i {
                    serde_json::Value::Array(_) | serde_json::Value::Object(_) => None,
                    other => claim_header_text(other),
                })
                .collect();
            parts.map(|p| p.join(","))
        }
        _ => None,
    }
}
