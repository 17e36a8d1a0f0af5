//! The route table: every loaded object, and per attachment point (Service and port, or waypoint
//! Gateway and hostname) the matches of all applicable rules, sorted once by Gateway API
//! precedence so that a lookup is a scan that stops at the first hit. Exact-path matches, which
//! all sort first, are looked up by path when there are many of them.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, Method};

use ambit_config::{ConfigError, ConfigWarning};

use crate::load::{self, Ext, Parsed};
use crate::model::{
    ExtensionKind, Fault, Grant, Match, Parent, PathMatch, Request, Route, RouteKind, Rule,
};
use crate::outcome::{self, Outcome};
use crate::ratelimit::{RateLimit, TokenBucket};
use crate::rng::Rng;

mod grants;

/// All HTTPRoutes (and ambit extension objects) a waypoint knows, compiled for lookup.
///
/// Immutable once built and `Send + Sync`; `clone` is an `Arc` clone, so a reloading waypoint
/// builds a new table and swaps it in (e.g. with `arc-swap`) while requests keep using the old
/// one. [`merge`](Self::merge), [`insert`](Self::insert) and [`remove_file`](Self::remove_file)
/// build a new table in place of this handle's; other clones are unaffected.
///
/// Rate-limit buckets are kept across rebuilds for rules whose route, rule index and
/// `LocalRateLimit` are unchanged; others start full.
#[derive(Clone, Default)]
pub struct RouteTable {
    inner: Arc<Inner>,
}

/// What [`RouteTable::parse`] made of one YAML stream.
#[derive(Debug)]
#[non_exhaustive]
pub struct LoadedRoutes {
    /// A table holding this stream's objects only.
    pub table: RouteTable,
    /// What was skipped or accepted with a caveat.
    pub warnings: Vec<ConfigWarning>,
}

/// Where a request is going, as the waypoint knows it from the HBONE CONNECT target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteTarget<'a> {
    /// Namespace of the destination Service.
    pub service_namespace: &'a str,
    /// Name of the destination Service.
    pub service_name: &'a str,
    /// The Service port the client connected to.
    pub port: u16,
    /// The waypoint Gateway (`namespace`, `name`) this request passes through, if any:
    /// routes attached to it apply when the Service has none of its own.
    pub waypoint: Option<(&'a str, &'a str)>,
    /// The request's authority (HTTP/2 `:authority`, or an absolute-form HTTP/1.1 target).
    /// `None` means: use the `Host` header. Used for `hostnames` and for redirects.
    pub authority: Option<&'a str>,
    /// The client's namespace (from its SPIFFE identity), for GAMMA consumer routes: a route
    /// attached to a Service in another namespace applies only to clients in the route's own
    /// namespace, and for them takes the place of the Service's own (producer) routes.
    /// `None` when unknown: consumer routes never apply.
    pub client_namespace: Option<&'a str>,
}

#[derive(Debug, Default)]
struct Inner {
    defs: Defs,
    index: Index,
}

/// The loaded objects, by `namespace/name`.
#[derive(Debug, Default, Clone)]
struct Defs {
    /// By (`namespace/name`, kind): an HTTPRoute and a GRPCRoute may share a name.
    routes: BTreeMap<(String, RouteKind), Arc<Route>>,
    faults: BTreeMap<String, Ext<Arc<Fault>>>,
    rate_limits: BTreeMap<String, Ext<RateLimit>>,
    grants: BTreeMap<String, Ext<Grant>>,
}

#[derive(Debug, Default)]
struct Index {
    services: HashMap<String, HashMap<String, ServiceEntry>>,
    gateways: HashMap<String, HashMap<String, GatewayRoutes>>,
    /// By (route key, rule index), so that a rebuild can keep a bucket's state.
    buckets: HashMap<(String, usize), (RateLimit, Arc<TokenBucket>)>,
}

/// Routes attached to one Service: its producer routes (in the Service's namespace, for every
/// client) and consumer routes by the namespace they are in (for clients there only).
#[derive(Debug, Default)]
struct ServiceEntry {
    producer: Option<ServiceRoutes>,
    consumers: HashMap<String, ServiceRoutes>,
}

/// Routes attached to one Service, from one namespace. Hostnames do not apply (as in Istio).
#[derive(Debug, Default)]
struct ServiceRoutes {
    /// Routes whose parentRef names no port.
    any_port: Option<Table>,
    /// For each port some parentRef names: its routes plus the `any_port` ones.
    ports: Vec<(u16, Table)>,
}

/// Routes attached to one waypoint Gateway, grouped by hostname. Gateway API gives precedence
/// to the most specific matching hostname (exact, then the longest wildcard, then routes with
/// no hostnames); a request that matches no rule of one group falls through to the next.
#[derive(Debug, Default)]
struct GatewayRoutes {
    exact: HashMap<Box<str>, Table>,
    /// `.example.com` for `*.example.com`, longest first.
    wildcards: Vec<(Box<str>, Table)>,
    any_host: Option<Table>,
}

/// Matches in precedence order.
#[derive(Debug)]
struct Table {
    entries: Box<[Entry]>,
    /// Exact-path matches sort before all others, and only those for the request's very path
    /// can match; with enough of them, this finds them by path instead of scanning them all.
    /// Indices into `entries`, in order. Empty when not worth it.
    exact: HashMap<Box<str>, Box<[usize]>, Fnv>,
    /// Where the scan starts when `exact` is in use: the first non-Exact entry.
    scan_from: usize,
}

/// Exact-path matches below this count are scanned rather than hashed.
const EXACT_INDEX_MIN: usize = 8;

/// FNV-1a: quick for short keys. The keys are the configured paths; a request can only look
/// one up, so there is no collision attack to defend against.
#[derive(Debug, Clone, Copy, Default)]
struct Fnv;

#[derive(Debug)]
struct FnvHasher(u64);

impl std::hash::BuildHasher for Fnv {
    type Hasher = FnvHasher;
    fn build_hasher(&self) -> FnvHasher {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// One `matches[]` entry of one rule, with what deciding it needs.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) m: Match,
    pub(crate) match_index: usize,
    pub(crate) rule: Arc<RuleEntry>,
}

/// A rule with its extension objects resolved.
#[derive(Debug)]
pub(crate) struct RuleEntry {
    pub(crate) route: Arc<Route>,
    pub(crate) rule: Arc<Rule>,
    pub(crate) fault: Option<Arc<Fault>>,
    pub(crate) bucket: Option<Arc<TokenBucket>>,
    /// An unresolvable filter: answer 500.
    pub(crate) fail_closed: bool,
    /// Bit k: backendRef k is in another namespace and no ReferenceGrant permits it.
    pub(crate) refused_backends: u32,
    /// The same for mirrors: `[0]` the rule's, `[k + 1]` backendRef k's.
    pub(crate) refused_mirrors: Box<[u32]>,
}

impl RuleEntry {
    /// Refused mirrors, numbered as [`outcome::mirror_list`] lists them for `backend_index`.
    pub(crate) fn refused_mirrors(&self, backend_index: usize) -> u32 {
        let rule = self.refused_mirrors.first().copied().unwrap_or(0);
        let backend = self
            .refused_mirrors
            .get(backend_index + 1)
            .copied()
            .unwrap_or(0);
        let shift = self.rule.filters.mirrors.len();
        rule | backend.checked_shl(shift as u32).unwrap_or(0)
    }
}

// === impl RouteTable ===

impl RouteTable {
    /// An empty table: every lookup is [`Outcome::Unrouted`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a YAML stream as `kubectl apply` takes it: documents separated by `---`, or a
    /// `List`. `HTTPRoute` (gateway.networking.k8s.io v1 or v1beta1) and the ambit.dev/v1alpha1
    /// `Fault` and `LocalRateLimit` kinds are loaded; other kinds are skipped with a warning.
    /// `file` names the source in errors and warnings.
    ///
    /// Anything the Kubernetes API server would refuse is an error naming the object and the
    /// field; unknown fields and unsupported features are warnings.
    pub fn parse(yaml: &str, file: &str) -> Result<LoadedRoutes, ConfigError> {
        let parsed = load::parse(yaml, file)?;
        let mut table = RouteTable::new();
        let warnings = table.rebuild(|defs, warnings| defs.add(parsed, warnings));
        Ok(LoadedRoutes { table, warnings })
    }

    /// The HTTPRoutes and ambit extensions among `objects` (read once with
    /// [`ambit_config::objects`] and shared with other loaders); other kinds are left to those
    /// loaders, silently. Warnings go to `report`, with those of building the table.
    pub fn from_objects(
        objects: &[ambit_config::Object],
        report: &mut ambit_config::Report,
    ) -> Result<RouteTable, ConfigError> {
        let parsed = load::from_objects(objects, report, false)?;
        let mut table = RouteTable::new();
        for w in table.rebuild(|defs, warnings| defs.add(parsed, warnings)) {
            report.push(w);
        }
        Ok(table)
    }

    /// One table from the objects of several files, each with its own report (so an error
    /// names the file it is in). References between files (a rule's extension defined in
    /// another file) are resolved once, over all of them; what is wrong with the combination
    /// is returned, each warning naming its own file.
    pub fn from_files<'a>(
        files: impl IntoIterator<Item = (&'a [ambit_config::Object], &'a mut ambit_config::Report)>,
    ) -> Result<(RouteTable, Vec<ConfigWarning>), ConfigError> {
        let mut all = Vec::new();
        for (objects, report) in files {
            all.push(load::from_objects(objects, report, false)?);
        }
        let mut table = RouteTable::new();
        let warnings = table.rebuild(|defs, warnings| {
            for parsed in all {
                defs.add(parsed, warnings);
            }
        });
        Ok((table, warnings))
    }

    /// Parses `yaml` and adds its objects to this table; see [`parse`](Self::parse). An object
    /// with the same kind, namespace and name as one already loaded replaces it (with a
    /// warning). On error the table is unchanged.
    pub fn insert(&mut self, yaml: &str, file: &str) -> Result<Vec<ConfigWarning>, ConfigError> {
        let parsed = load::parse(yaml, file)?;
        Ok(self.rebuild(|defs, warnings| defs.add(parsed, warnings)))
    }

    /// Adds every object of `other` to this table, replacing same-named ones (with a warning).
    /// Returns what is wrong with the combination (duplicates, references still unresolved).
    pub fn merge(&mut self, other: &RouteTable) -> Vec<ConfigWarning> {
        let theirs = other.inner.defs.clone();
        self.rebuild(|defs, warnings| defs.merge(theirs, warnings))
    }

    /// Drops every object loaded from `file`, e.g. before re-inserting a file that changed.
    pub fn remove_file(&mut self, file: &str) -> Vec<ConfigWarning> {
        self.rebuild(|defs, _| {
            defs.routes.retain(|_, r| r.file != file);
            defs.faults.retain(|_, f| f.file != file);
            defs.rate_limits.retain(|_, l| l.file != file);
            defs.grants.retain(|_, g| g.file != file);
        })
    }

    /// How many HTTPRoutes are loaded.
    pub fn len(&self) -> usize {
        self.inner.defs.routes.len()
    }

    /// Whether no HTTPRoute is loaded.
    pub fn is_empty(&self) -> bool {
        self.inner.defs.routes.is_empty()
    }

    /// The loaded HTTPRoutes and GRPCRoutes as `namespace/name`, sorted.
    pub fn route_names(&self) -> impl Iterator<Item = &str> {
        self.inner.defs.routes.keys().map(|(k, _)| k.as_str())
    }

    /// Decides one request.
    ///
    /// `path_and_query` is the request target in origin form (`/path?query`); the path is
    /// matched as given (normalise it first if wanted: Gateway API leaves that to the
    /// implementation). `now` feeds rate limiting; `rng` feeds the weighted backend choice,
    /// fault and mirror sampling (how many draws a decision takes is unspecified).
    ///
    /// Routes attached to the target Service (and port) are used if there are any; otherwise
    /// those attached to the waypoint Gateway for the request's host; otherwise the request is
    /// [`Outcome::Unrouted`]. When routes apply but none of their rules matches, it is
    /// [`Outcome::NotFound`].
    ///
    /// Nothing here allocates except a redirect's `Location` and a regular-expression query
    /// match on a percent-encoded value (and, on a thread's first use of a regular expression,
    /// the regex engine's scratch space).
    pub fn route<R: Rng + ?Sized>(
        &self,
        target: &RouteTarget<'_>,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        now: Instant,
        rng: &mut R,
    ) -> Outcome {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let path = path.split_once('#').map_or(path, |(p, _)| p);
        let req = Request {
            method,
            path,
            query,
            headers,
        };
        let host = outcome::request_host(target.authority, headers);
        let index = &self.inner.index;
        let decide = |e: &Entry, rng: &mut R| outcome::decide(e, &req, host, target.port, now, rng);

        let service = index
            .services
            .get(target.service_namespace)
            .and_then(|m| m.get(target.service_name))
            .and_then(|s| s.table(target.client_namespace, target.port));
        if let Some(table) = service {
            return match table.find(&req) {
                Some(e) => decide(e, rng),
                None => Outcome::NotFound,
            };
        }
        let gateway = target
            .waypoint
            .and_then(|(ns, name)| index.gateways.get(ns)?.get(name));
        if let Some(gateway) = gateway {
            let mut buf = [0u8; 253];
            let host = host.and_then(|h| ascii_lowercase(h, &mut buf));
            let mut applies = false;
            for table in gateway.tables(host) {
                applies = true;
                if let Some(e) = table.find(&req) {
                    return decide(e, rng);
                }
            }
            if applies {
                return Outcome::NotFound;
            }
        }
        Outcome::Unrouted
    }

    /// Applies `change` to a copy of the definitions and rebuilds the index from it.
    fn rebuild(
        &mut self,
        change: impl FnOnce(&mut Defs, &mut Vec<ConfigWarning>),
    ) -> Vec<ConfigWarning> {
        let mut warnings = Vec::new();
        let mut defs = self.inner.defs.clone();
        change(&mut defs, &mut warnings);
        let index = Index::build(&defs, &self.inner.index, &mut warnings);
        self.inner = Arc::new(Inner { defs, index });
        warnings
    }
}

impl fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTable")
            .field(
                "routes",
                &self
                    .inner
                    .defs
                    .routes
                    .keys()
                    .map(|k| &k.0)
                    .collect::<Vec<_>>(),
            )
            .field("faults", &self.inner.defs.faults.keys().collect::<Vec<_>>())
            .field(
                "rate_limits",
                &self.inner.defs.rate_limits.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Lower-cases an ASCII-case-insensitive host into `buf` without allocating; `None` when it is
/// too long to be a DNS name (it then matches no hostname).
fn ascii_lowercase<'b>(host: &str, buf: &'b mut [u8; 253]) -> Option<&'b str> {
    let out = buf.get_mut(..host.len())?;
    out.copy_from_slice(host.as_bytes());
    out.make_ascii_lowercase();
    std::str::from_utf8(out).ok()
}

// === impl Defs ===

impl Defs {
    fn add(&mut self, parsed: Parsed, warnings: &mut Vec<ConfigWarning>) {
        warnings.extend(parsed.warnings);
        for route in parsed.routes {
            let (key, kind, file) = (route.key.clone(), route.kind, route.file.clone());
            if let Some(old) = self.routes.insert((key.clone(), kind), Arc::new(route)) {
                warnings.push(replaced(kind.as_str(), &key, &file, &old.file));
            }
        }
        for g in parsed.grants {
            if let Some(old) = self.grants.insert(g.key.clone(), g.clone()) {
                warnings.push(replaced("ReferenceGrant", &g.key, &g.file, &old.file));
            }
        }
        for f in parsed.faults {
            if let Some(old) = self.faults.insert(f.key.clone(), f.clone()) {
                warnings.push(replaced("Fault", &f.key, &f.file, &old.file));
            }
        }
        for l in parsed.rate_limits {
            if let Some(old) = self.rate_limits.insert(l.key.clone(), l.clone()) {
                warnings.push(replaced("LocalRateLimit", &l.key, &l.file, &old.file));
            }
        }
    }

    fn merge(&mut self, other: Defs, warnings: &mut Vec<ConfigWarning>) {
        for (key, route) in other.routes {
            let file = route.file.clone();
            if let Some(old) = self.routes.insert(key.clone(), route) {
                warnings.push(replaced(key.1.as_str(), &key.0, &file, &old.file));
            }
        }
        for (key, g) in other.grants {
            let file = g.file.clone();
            if let Some(old) = self.grants.insert(key.clone(), g) {
                warnings.push(replaced("ReferenceGrant", &key, &file, &old.file));
            }
        }
        for (key, f) in other.faults {
            let file = f.file.clone();
            if let Some(old) = self.faults.insert(key.clone(), f) {
                warnings.push(replaced("Fault", &key, &file, &old.file));
            }
        }
        for (key, l) in other.rate_limits {
            let file = l.file.clone();
            if let Some(old) = self.rate_limits.insert(key.clone(), l) {
                warnings.push(replaced("LocalRateLimit", &key, &file, &old.file));
            }
        }
    }
}

fn replaced(kind: &str, key: &str, file: &str, old_file: &str) -> ConfigWarning {
    ConfigWarning::new(
        file,
        &format!("{kind} {key}"),
        "metadata.name",
        format!("replaces the {kind} of the same name from {old_file}"),
    )
}

// === impl Index ===

impl Index {
    fn build(defs: &Defs, previous: &Index, warnings: &mut Vec<ConfigWarning>) -> Index {
        let mut buckets = HashMap::new();
        // Each route's rules, resolved once and shared by every table the route is in.
        let attached: Vec<(&Arc<Route>, Vec<Arc<RuleEntry>>)> = defs
            .routes
            .values()
            .map(|route| {
                let rules = route
                    .rules
                    .iter()
                    .map(|rule| resolve(route, rule, defs, previous, &mut buckets, warnings))
                    .collect();
                (route, rules)
            })
            .collect();

        type Ids = BTreeSet<usize>;
        // (Service namespace, name, the consumer namespace or None for producer routes).
        type ServiceKey<'a> = (&'a str, &'a str, Option<&'a str>);
        let mut services: BTreeMap<ServiceKey<'_>, BTreeMap<Option<u16>, Ids>> = BTreeMap::new();
        #[derive(Default)]
        struct ByHost<'a> {
            hostnames: BTreeMap<&'a str, Ids>,
            any: Ids,
        }
        let mut gateways: BTreeMap<(&str, &str), ByHost<'_>> = BTreeMap::new();
        for (id, (route, _)) in attached.iter().enumerate() {
            for parent in &route.parents {
                match parent {
                    Parent::Service {
                        namespace,
                        name,
                        port,
                    } => {
                        let consumer = (*namespace != route.namespace).then_some(&*route.namespace);
                        services
                            .entry((namespace, name, consumer))
                            .or_default()
                            .entry(*port)
                            .or_default()
                            .insert(id);
                    }
                    Parent::Gateway { namespace, name } => {
                        let g = gateways.entry((namespace, name)).or_default();
                        if route.hostnames.is_empty() {
                            g.any.insert(id);
                        }
                        for h in &route.hostnames {
                            g.hostnames.entry(h).or_default().insert(id);
                        }
                    }
                }
            }
        }

        let table = |ids: &Ids| Table::new(ids.iter().filter_map(|&i| attached.get(i)));
        let mut index = Index {
            buckets,
            ..Index::default()
        };
        for ((ns, name, consumer), by_port) in &services {
            let any = by_port.get(&None);
            let ports = by_port
                .iter()
                .filter_map(|(port, ids)| {
                    let port = (*port)?;
                    let mut all = ids.clone();
                    all.extend(any.into_iter().flatten());
                    Some((port, table(&all)))
                })
                .collect();
            let routes = ServiceRoutes {
                any_port: any.map(table),
                ports,
            };
            let entry = index
                .services
                .entry((*ns).to_owned())
                .or_default()
                .entry((*name).to_owned())
                .or_default();
            match consumer {
                None => entry.producer = Some(routes),
                Some(c) => {
                    entry.consumers.insert((*c).to_owned(), routes);
                }
            }
        }
        for ((ns, name), by_host) in &gateways {
            let mut g = GatewayRoutes {
                any_host: (!by_host.any.is_empty()).then(|| table(&by_host.any)),
                ..GatewayRoutes::default()
            };
            for (host, ids) in &by_host.hostnames {
                match host.strip_prefix('*') {
                    Some(suffix) => g.wildcards.push((suffix.into(), table(ids))),
                    None => {
                        g.exact.insert((*host).into(), table(ids));
                    }
                }
            }
            g.wildcards
                .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
            index
                .gateways
                .entry((*ns).to_owned())
                .or_default()
                .insert((*name).to_owned(), g);
        }
        index
    }
}

/// Resolves a rule's `ambit.dev` extension references.
fn resolve(
    route: &Arc<Route>,
    rule: &Arc<Rule>,
    defs: &Defs,
    previous: &Index,
    buckets: &mut HashMap<(String, usize), (RateLimit, Arc<TokenBucket>)>,
    warnings: &mut Vec<ConfigWarning>,
) -> Arc<RuleEntry> {
    let (refused_backends, refused_mirrors) = grants::refusals(route, rule, defs, warnings);
    let mut entry = RuleEntry {
        route: route.clone(),
        rule: rule.clone(),
        fault: None,
        bucket: None,
        fail_closed: rule.fail_closed,
        refused_backends,
        refused_mirrors,
    };
    for ext in &rule.extensions {
        let key = format!("{}/{}", route.namespace, ext.name);
        let found = match ext.kind {
            ExtensionKind::Fault => defs.faults.get(&key).map(|f| {
                entry.fault = Some(f.spec.clone());
            }),
            ExtensionKind::LocalRateLimit => defs.rate_limits.get(&key).map(|l| {
                // Keyed by kind too: an HTTPRoute and a GRPCRoute may share a name.
                let id = (format!("{} {}", route.kind.as_str(), route.key), rule.index);
                let bucket = match previous.buckets.get(&id) {
                    Some((spec, b)) if *spec == l.spec => b.clone(),
                    _ => Arc::new(TokenBucket::new(l.spec)),
                };
                buckets.insert(id, (l.spec, bucket.clone()));
                entry.bucket = Some(bucket);
            }),
        };
        if found.is_none() {
            let kind = match ext.kind {
                ExtensionKind::Fault => "Fault",
                ExtensionKind::LocalRateLimit => "LocalRateLimit",
            };
            entry.fail_closed = true;
            warnings.push(ConfigWarning::new(
                &route.file,
                &format!("{} {}", route.kind.as_str(), route.key),
                &ext.field,
                format!(
                    "{kind} {key} is not loaded; requests matching this rule get 500 until it is"
                ),
            ));
        }
    }
    Arc::new(entry)
}

// === impl ServiceEntry ===

impl ServiceEntry {
    /// The table for a request from `client` to `port`: the client namespace's consumer
    /// routes if it has any for the port, else the producer routes.
    fn table(&self, client: Option<&str>, port: u16) -> Option<&Table> {
        client
            .and_then(|c| self.consumers.get(c))
            .and_then(|r| r.table(port))
            .or_else(|| self.producer.as_ref()?.table(port))
    }
}

// === impl ServiceRoutes ===

impl ServiceRoutes {
    fn table(&self, port: u16) -> Option<&Table> {
        self.ports
            .iter()
            .find(|(p, _)| *p == port)
            .map(|(_, t)| t)
            .or(self.any_port.as_ref())
    }
}

// === impl GatewayRoutes ===

impl GatewayRoutes {
    /// The tables that apply to `host` (lower-case), most specific first.
    fn tables<'g>(&'g self, host: Option<&str>) -> impl Iterator<Item = &'g Table> {
        let exact = host.and_then(|h| self.exact.get(h));
        let wild = self.wildcards.iter().filter_map(move |(suffix, t)| {
            let h = host?;
            (h.len() > suffix.len() && h.ends_with(&**suffix)).then_some(t)
        });
        exact.into_iter().chain(wild).chain(self.any_host.as_ref())
    }
}

// === impl Table ===

impl Table {
    fn new<'a>(routes: impl Iterator<Item = &'a (&'a Arc<Route>, Vec<Arc<RuleEntry>>)>) -> Self {
        let mut entries = Vec::new();
        for (_, rules) in routes {
            for rule in rules {
                for (j, m) in rule.rule.matches.iter().enumerate() {
                    entries.push(Entry {
                        m: m.clone(),
                        match_index: j,
                        rule: rule.clone(),
                    });
                }
            }
        }
        entries.sort_by(precedence);
        let scan_from = entries
            .iter()
            .position(|e| !matches!(e.m.path, PathMatch::Exact(_)))
            .unwrap_or(entries.len());
        let mut exact: HashMap<Box<str>, Box<[usize]>, Fnv> = HashMap::default();
        if scan_from >= EXACT_INDEX_MIN {
            let mut by_path: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            for (i, e) in entries.iter().enumerate().take(scan_from) {
                if let PathMatch::Exact(p) = &e.m.path {
                    by_path.entry(p).or_default().push(i);
                }
            }
            exact = by_path
                .into_iter()
                .map(|(p, ids)| (p.into(), ids.into()))
                .collect();
        }
        Table {
            entries: entries.into(),
            scan_from: if exact.is_empty() { 0 } else { scan_from },
            exact,
        }
    }

    fn find(&self, req: &Request<'_>) -> Option<&Entry> {
        if !self.exact.is_empty()
            && let Some(ids) = self.exact.get(req.path)
        {
            let hit = ids
                .iter()
                .filter_map(|&i| self.entries.get(i))
                .find(|e| e.m.matches(req));
            if hit.is_some() {
                return hit;
            }
        }
        self.entries
            .get(self.scan_from..)?
            .iter()
            .find(|e| e.m.matches(req))
    }
}

/// Gateway API match precedence, then its tie-breakers: Exact path; the longest PathPrefix (in
/// characters); RegularExpression (its rank is implementation-specific: ambit puts it after
/// prefixes, as Istio does); a method match; more header matches; more query matches; the oldest
/// route (a route without `creationTimestamp` counts as newest); `namespace/name` in alphabetical
/// order; rule order; match order.
pub(crate) fn precedence(a: &Entry, b: &Entry) -> Ordering {
    let (ma, mb) = (&a.m, &b.m);
    let (ra, rb) = (&a.rule.route, &b.rule.route);
    ma.path
        .rank()
        .cmp(&mb.path.rank())
        .then_with(|| mb.path.prefix_len().cmp(&ma.path.prefix_len()))
        .then_with(|| mb.method.is_some().cmp(&ma.method.is_some()))
        .then_with(|| mb.headers.len().cmp(&ma.headers.len()))
        .then_with(|| mb.query.len().cmp(&ma.query.len()))
        .then_with(|| match (ra.created, rb.created) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
        .then_with(|| ra.key.cmp(&rb.key))
        .then_with(|| a.rule.rule.index.cmp(&b.rule.rule.index))
        .then_with(|| a.match_index.cmp(&b.match_index))
}

#[cfg(test)]
mod tests;
