//! The L4 authorization model of Istio's workload API (`istio.security.Authorization`):
//! policy → rules (OR) → clauses (AND) → matches (OR) → fields (AND), values within a field OR.

use std::fmt;
use std::net::IpAddr;

use ambit_identity::SpiffeId;
use ipnet::IpNet;

/// One authorization policy as the node proxy enforces it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Authorization {
    /// Policy name.
    pub name: String,
    /// Policy namespace (empty for global policies from the local config).
    pub namespace: String,
    /// Which workloads it applies to.
    pub scope: Scope,
    /// What a match means.
    pub action: Action,
    /// Any rule matching makes the policy match. No rules: the policy never matches.
    pub rules: Vec<Rule>,
    /// Evaluated for logging only; never changes a decision.
    pub dry_run: bool,
}

/// Which workloads a policy applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Scope {
    /// Every workload in the mesh (a selector-less policy in the root namespace).
    Global,
    /// Every workload in the policy's namespace.
    Namespace,
    /// Workloads that reference it by key (`namespace/name`), as istiod resolves selectors.
    WorkloadSelector,
}

/// What a matching policy decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Action {
    /// Allow matching connections (and, once any ALLOW policy applies, deny the rest).
    Allow,
    /// Deny matching connections.
    Deny,
}

/// All clauses must match (none: matches).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rule {
    /// The clauses, AND-ed.
    pub clauses: Vec<Clause>,
}

/// Any match must match (none: matches).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Clause {
    /// The matches, OR-ed.
    pub matches: Vec<Match>,
}

/// Every populated field must pass; a positive list passes when any value matches, a `not_`
/// list when none does. A match with every field empty never matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Match {
    /// Source namespace (from the peer certificate).
    pub namespaces: Vec<StringMatch>,
    /// Negated source namespace.
    pub not_namespaces: Vec<StringMatch>,
    /// Source service account (namespace + name from the certificate).
    pub service_accounts: Vec<ServiceAccountMatch>,
    /// Negated source service account.
    pub not_service_accounts: Vec<ServiceAccountMatch>,
    /// Source principal, `td/ns/x/sa/y` (the SPIFFE id without `spiffe://`).
    pub principals: Vec<StringMatch>,
    /// Negated source principal.
    pub not_principals: Vec<StringMatch>,
    /// Source IP ranges.
    pub source_ips: Vec<IpNet>,
    /// Negated source IP ranges.
    pub not_source_ips: Vec<IpNet>,
    /// Destination IP ranges.
    pub destination_ips: Vec<IpNet>,
    /// Negated destination IP ranges.
    pub not_destination_ips: Vec<IpNet>,
    /// Destination (target) ports.
    pub destination_ports: Vec<u16>,
    /// Negated destination ports.
    pub not_destination_ports: Vec<u16>,
}

/// A string condition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum StringMatch {
    /// Equal.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// Ends with.
    Suffix(String),
    /// Present and non-empty.
    Presence,
}

/// A service account, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ServiceAccountMatch {
    /// Namespace.
    pub namespace: String,
    /// Service account name.
    pub service_account: String,
}

/// The attributes of one connection that L4 policy can see, at the destination.
#[derive(Debug, Clone, Copy)]
pub struct Connection<'a> {
    /// The client's verified SPIFFE id; `None` for plaintext (port 15006) traffic.
    pub source_id: Option<&'a SpiffeId>,
    /// The client's IP.
    pub source_ip: IpAddr,
    /// The destination workload IP.
    pub destination_ip: IpAddr,
    /// The destination target port (not 15008, not the service port).
    pub destination_port: u16,
}

// === impl Authorization ===

impl Authorization {
    /// A policy that is enforced (not dry-run).
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        scope: Scope,
        action: Action,
        rules: Vec<Rule>,
    ) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            scope,
            action,
            rules,
            dry_run: false,
        }
    }

    /// The key workloads use to reference it: `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether any rule matches `conn`.
    pub fn matches(&self, conn: &Connection<'_>) -> bool {
        self.matches_attrs(&Attrs::of(conn))
    }

    pub(crate) fn matches_attrs(&self, a: &Attrs<'_>) -> bool {
        self.rules.iter().any(|r| r.matches(a))
    }
}

impl Rule {
    fn matches(&self, a: &Attrs<'_>) -> bool {
        self.clauses.iter().all(|c| c.matches(a))
    }
}

impl Clause {
    fn matches(&self, a: &Attrs<'_>) -> bool {
        self.matches.is_empty() || self.matches.iter().any(|m| m.matches(a))
    }
}

/// A connection's attributes, with the source identity's parts extracted once per decision.
pub(crate) struct Attrs<'a> {
    conn: &'a Connection<'a>,
    principal: Option<&'a str>,
    namespace: Option<&'a str>,
    service_account: Option<(&'a str, &'a str)>,
}

impl<'a> Attrs<'a> {
    pub(crate) fn of(conn: &'a Connection<'a>) -> Self {
        let id = conn.source_id;
        Self {
            conn,
            principal: id.map(SpiffeId::principal),
            namespace: id.and_then(SpiffeId::namespace),
            service_account: id.and_then(|id| Some((id.namespace()?, id.service_account()?))),
        }
    }
}

// === impl Match ===

impl Match {
    /// Whether every field is empty (such a match never matches).
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
            && self.not_namespaces.is_empty()
            && self.service_accounts.is_empty()
            && self.not_service_accounts.is_empty()
            && self.principals.is_empty()
            && self.not_principals.is_empty()
            && self.source_ips.is_empty()
            && self.not_source_ips.is_empty()
            && self.destination_ips.is_empty()
            && self.not_destination_ips.is_empty()
            && self.destination_ports.is_empty()
            && self.not_destination_ports.is_empty()
    }

    fn matches(&self, a: &Attrs<'_>) -> bool {
        if self.is_empty() {
            return false;
        }
        let (conn, principal, namespace, sa) =
            (a.conn, a.principal, a.namespace, a.service_account);
        let str_any = |list: &[StringMatch], v: Option<&str>| {
            v.is_some_and(|v| list.iter().any(|m| m.matches(v)))
        };
        let sa_any = |list: &[ServiceAccountMatch]| {
            sa.is_some_and(|(ns, name)| {
                list.iter()
                    .any(|m| m.namespace == ns && m.service_account == name)
            })
        };
        let ip_any = |list: &[IpNet], ip: IpAddr| list.iter().any(|n| contains(n, ip));
        let port_any = |list: &[u16]| list.contains(&conn.destination_port);
        pass(&self.namespaces, &self.not_namespaces, |l| {
            str_any(l, namespace)
        }) && pass(&self.service_accounts, &self.not_service_accounts, sa_any)
            && pass(&self.principals, &self.not_principals, |l| {
                str_any(l, principal)
            })
            && pass(&self.source_ips, &self.not_source_ips, |l| {
                ip_any(l, conn.source_ip)
            })
            && pass(&self.destination_ips, &self.not_destination_ips, |l| {
                ip_any(l, conn.destination_ip)
            })
            && pass(
                &self.destination_ports,
                &self.not_destination_ports,
                port_any,
            )
    }
}

/// A positive list passes if empty or any matches; a negative one if empty or none matches.
fn pass<T>(pos: &[T], neg: &[T], any: impl Fn(&[T]) -> bool) -> bool {
    (pos.is_empty() || any(pos)) && (neg.is_empty() || !any(neg))
}

/// CIDR containment that also matches IPv4 addresses written as IPv4-mapped IPv6.
fn contains(net: &IpNet, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    net.contains(&ip)
}

// === impl StringMatch ===

impl StringMatch {
    /// Istio's wildcard form: `*` presence, `*x` suffix, `x*` prefix, else exact.
    pub fn from_istio(s: &str) -> Self {
        if s == "*" {
            StringMatch::Presence
        } else if let Some(suffix) = s.strip_prefix('*') {
            StringMatch::Suffix(suffix.to_owned())
        } else if let Some(prefix) = s.strip_suffix('*') {
            StringMatch::Prefix(prefix.to_owned())
        } else {
            StringMatch::Exact(s.to_owned())
        }
    }

    /// Whether `v` satisfies this condition.
    pub fn matches(&self, v: &str) -> bool {
        match self {
            StringMatch::Exact(s) => v == s,
            StringMatch::Prefix(p) => v.starts_with(p.as_str()),
            StringMatch::Suffix(s) => v.ends_with(s.as_str()),
            StringMatch::Presence => !v.is_empty(),
        }
    }
}

impl fmt::Display for StringMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StringMatch::Exact(s) => f.write_str(s),
            StringMatch::Prefix(p) => write!(f, "{p}*"),
            StringMatch::Suffix(s) => write!(f, "*{s}"),
            StringMatch::Presence => f.write_str("*"),
        }
    }
}
