//! Istio `AuthorizationPolicy` and `PeerAuthentication` YAML (security.istio.io v1 and v1beta1),
//! translated to the L4 model exactly as istiod translates them for ztunnel.
//!
//! What the node proxy cannot enforce is reported as a [`LoadWarning`], never dropped silently:
//! policies with `targetRef(s)` (for waypoints), AUDIT and CUSTOM actions, and HTTP attributes
//! (an ALLOW rule with any is dropped; a DENY rule keeps its L4 part, so it denies more).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::model::{
    Action, Authorization, Clause, Match, Rule, Scope, ServiceAccountMatch, StringMatch,
};
use crate::peer::{MtlsMode, PeerAuthentication};
use crate::set::{Labels, PolicySet};
use crate::wire::{FromEntry, ToEntry};

/// What a YAML stream of Istio security objects turned into.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct IstioPolicies {
    /// L4 authorizations, with their `matchLabels` selector if they have one.
    pub authorizations: Vec<(Authorization, Option<Labels>)>,
    /// PeerAuthentications.
    pub peer_authentications: Vec<PeerAuthentication>,
    /// Everything that was accepted with a caveat or skipped.
    pub warnings: Vec<LoadWarning>,
}

/// Something in the YAML the node proxy does not (fully) enforce.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadWarning {
    /// `Kind namespace/name`.
    pub object: String,
    /// The field path, e.g. `spec.rules[0].to[0].operation.methods`.
    pub field: String,
    /// What happens instead.
    pub message: String,
}

/// A document that could not be loaded; names the object and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {field}: {message}")]
#[non_exhaustive]
pub struct LoadError {
    /// `Kind namespace/name`, or `document N` when the object has no readable name.
    pub object: String,
    /// The field path (`spec.action`), or empty for the document as a whole.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

// === wire shapes (private) ===

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Object {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    spec: serde_yaml_ng::Value,
}

#[derive(Deserialize, Default)]
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ApSpec {
    selector: Option<Selector>,
    target_ref: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    target_refs: Vec<serde_yaml_ng::Value>,
    action: Option<String>,
    provider: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    rules: Vec<ApRule>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Selector {
    #[serde(default)]
    match_labels: Labels,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ApRule {
    #[serde(default)]
    from: Vec<FromEntry>,
    #[serde(default)]
    to: Vec<ToEntry>,
    #[serde(default)]
    when: Vec<Condition>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Condition {
    key: String,
    #[serde(default)]
    values: Vec<String>,
    #[serde(default)]
    not_values: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PaSpec {
    selector: Option<Selector>,
    mtls: Option<PaMtls>,
    #[serde(default)]
    port_level_mtls: serde_yaml_ng::Mapping,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PaMtls {
    mode: Option<String>,
}

const L4_WHEN_KEYS: [&str; 5] = [
    "source.ip",
    "source.namespace",
    "source.principal",
    "destination.ip",
    "destination.port",
];

// === impl IstioPolicies ===

impl IstioPolicies {
    /// Parses a YAML stream (documents separated by `---`, or a `kind: List` is not needed).
    /// Objects of other kinds are skipped with a warning; a malformed security object is an
    /// error naming it and the field.
    pub fn parse(yaml: &str, root_namespace: &str) -> Result<Self, LoadError> {
        let mut out = IstioPolicies::default();
        ambit_yaml::check(yaml).map_err(|e| LoadError {
            object: "document".into(),
            field: String::new(),
            message: e.to_string(),
        })?;
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
            let value = serde_yaml_ng::Value::deserialize(doc).map_err(|e| LoadError {
                object: format!("document {}", i + 1),
                field: String::new(),
                message: format!("not valid YAML: {e}"),
            })?;
            if value.is_null() {
                continue;
            }
            let obj: Object = from_value(value, &format!("document {}", i + 1), "")?;
            let ns = obj
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let kind = obj.kind.clone().unwrap_or_default();
            let name = obj.metadata.name.clone().ok_or_else(|| LoadError {
                object: format!("{kind} in document {}", i + 1),
                field: "metadata.name".into(),
                message: "missing".into(),
            })?;
            let label = format!("{kind} {ns}/{name}");
            let api = obj.api_version.as_deref().unwrap_or_default();
            let security_api = matches!(api, "security.istio.io/v1" | "security.istio.io/v1beta1");
            match kind.as_str() {
                "AuthorizationPolicy" | "PeerAuthentication" if !security_api => {
                    return Err(LoadError {
                        object: label,
                        field: "apiVersion".into(),
                        message: format!(
                            "{api:?} is not supported; use security.istio.io/v1 or v1beta1"
                        ),
                    });
                }
                "AuthorizationPolicy" => {
                    let spec: ApSpec = from_value(obj.spec, &label, "spec")?;
                    out.authorization(spec, &ns, &name, root_namespace, &label)?;
                }
                "PeerAuthentication" => {
                    let spec: PaSpec = from_value(obj.spec, &label, "spec")?;
                    out.peer_authentication(spec, &ns, &name, &label)?;
                }
                _ => out.warn(
                    &label,
                    "kind",
                    "not a security policy the node proxy enforces; skipped",
                ),
            }
        }
        Ok(out)
    }

    /// Adds everything to `set`.
    pub fn apply_to(&self, set: &mut PolicySet) {
        for (auth, selector) in &self.authorizations {
            match selector {
                Some(s) => set.insert_with_selector(auth.clone(), s.clone()),
                None => set.insert(auth.clone()),
            }
        }
        for pa in &self.peer_authentications {
            set.insert_peer_authentication(pa.clone());
        }
    }

    fn warn(&mut self, object: &str, field: &str, message: impl Into<String>) {
        self.warnings.push(LoadWarning {
            object: object.to_owned(),
            field: field.to_owned(),
            message: message.into(),
        });
    }

    fn authorization(
        &mut self,
        spec: ApSpec,
        ns: &str,
        name: &str,
        root: &str,
        label: &str,
    ) -> Result<(), LoadError> {
        if spec.target_ref.is_some() || !spec.target_refs.is_empty() {
            self.warn(
                label,
                "spec.targetRefs",
                "targets a waypoint or gateway; not enforced by the node proxy",
            );
            return Ok(());
        }
        let action = match spec.action.as_deref().unwrap_or("ALLOW") {
            "ALLOW" => Action::Allow,
            "DENY" => Action::Deny,
            a @ ("AUDIT" | "CUSTOM") => {
                self.warn(
                    label,
                    "spec.action",
                    format!("the node proxy does not support the {a} action; skipped"),
                );
                return Ok(());
            }
            other => {
                return Err(LoadError {
                    object: label.into(),
                    field: "spec.action".into(),
                    message: format!("unknown action {other:?} (ALLOW, DENY, AUDIT or CUSTOM)"),
                });
            }
        };
        if spec.provider.is_some() {
            self.warn(
                label,
                "spec.provider",
                "only meaningful with CUSTOM; ignored",
            );
        }
        let selector = spec.selector.map(|s| s.match_labels);
        let scope = match (&selector, ns == root) {
            (Some(_), _) => Scope::WorkloadSelector,
            (None, true) => Scope::Global,
            (None, false) => Scope::Namespace,
        };
        let mut rules = Vec::new();
        for (i, r) in spec.rules.into_iter().enumerate() {
            let at = format!("spec.rules[{i}]");
            let (rule, l7) = self.rule(r, ns, label, &at)?;
            if l7.is_empty() {
                rules.push(rule);
                continue;
            }
            let found = l7.join(", ");
            match action {
                Action::Allow => self.warn(
                    label,
                    &at,
                    format!(
                        "HTTP attributes ({found}) need a waypoint; this ALLOW rule is omitted, \
                         which is more restrictive than requested"
                    ),
                ),
                Action::Deny => {
                    self.warn(
                        label,
                        &at,
                        format!(
                            "HTTP attributes ({found}) need a waypoint; this DENY rule is enforced \
                             without them, which is more restrictive than requested"
                        ),
                    );
                    rules.push(rule);
                }
            }
        }
        self.authorizations.push((
            Authorization {
                name: name.to_owned(),
                namespace: ns.to_owned(),
                scope,
                action,
                rules,
                dry_run: false,
            },
            selector,
        ));
        Ok(())
    }

    /// One Istio rule → (workload-API rule, HTTP attributes found).
    fn rule(
        &mut self,
        r: ApRule,
        ns: &str,
        label: &str,
        at: &str,
    ) -> Result<(Rule, Vec<String>), LoadError> {
        let mut l7 = Vec::new();
        let mut clauses = Vec::new();
        let mut to = Vec::new();
        for (j, op) in r.to.into_iter().enumerate() {
            let op = op.operation;
            for (field, v) in [
                ("hosts", &op.hosts),
                ("notHosts", &op.not_hosts),
                ("methods", &op.methods),
                ("notMethods", &op.not_methods),
                ("paths", &op.paths),
                ("notPaths", &op.not_paths),
            ] {
                if !v.is_empty() {
                    l7.push(field.to_owned());
                }
            }
            let f = format!("{at}.to[{j}].operation");
            to.push(Match {
                destination_ports: self.ports(&op.ports, label, &format!("{f}.ports"))?,
                not_destination_ports: self.ports(
                    &op.not_ports,
                    label,
                    &format!("{f}.notPorts"),
                )?,
                ..Match::default()
            });
        }
        if !to.is_empty() {
            clauses.push(Clause { matches: to });
        }
        let mut from = Vec::new();
        for (j, s) in r.from.into_iter().enumerate() {
            let s = s.source;
            for (field, v) in [
                ("requestPrincipals", &s.request_principals),
                ("notRequestPrincipals", &s.not_request_principals),
                ("remoteIpBlocks", &s.remote_ip_blocks),
                ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
                // The workload API has no trust-domain match: ztunnel cannot enforce these.
                ("trustDomains", &s.trust_domains),
                ("notTrustDomains", &s.not_trust_domains),
            ] {
                if !v.is_empty() {
                    l7.push(field.to_owned());
                }
            }
            let f = format!("{at}.from[{j}].source");
            from.push(Match {
                source_ips: self.ips(&s.ip_blocks, label, &format!("{f}.ipBlocks")),
                not_source_ips: self.ips(&s.not_ip_blocks, label, &format!("{f}.notIpBlocks")),
                namespaces: strings(&s.namespaces),
                not_namespaces: strings(&s.not_namespaces),
                service_accounts: service_accounts(&s.service_accounts, ns),
                not_service_accounts: service_accounts(&s.not_service_accounts, ns),
                principals: strings(&s.principals),
                not_principals: strings(&s.not_principals),
                ..Match::default()
            });
        }
        if !from.is_empty() {
            clauses.push(Clause { matches: from });
        }
        for (j, c) in r.when.into_iter().enumerate() {
            let f = format!("{at}.when[{j}]");
            if !L4_WHEN_KEYS.contains(&c.key.as_str()) {
                l7.push(c.key.clone());
            }
            let mut m = Match::default();
            match c.key.as_str() {
                "source.namespace" => {
                    m.namespaces = strings(&c.values);
                    m.not_namespaces = strings(&c.not_values);
                }
                "source.principal" => {
                    m.principals = strings(&c.values);
                    m.not_principals = strings(&c.not_values);
                }
                "source.ip" => {
                    m.source_ips = self.ips(&c.values, label, &format!("{f}.values"));
                    m.not_source_ips = self.ips(&c.not_values, label, &format!("{f}.notValues"));
                }
                "destination.ip" => {
                    m.destination_ips = self.ips(&c.values, label, &format!("{f}.values"));
                    m.not_destination_ips =
                        self.ips(&c.not_values, label, &format!("{f}.notValues"));
                }
                "destination.port" => {
                    let yaml = |v: &[String]| {
                        v.iter()
                            .map(|s| serde_yaml_ng::Value::String(s.clone()))
                            .collect::<Vec<_>>()
                    };
                    m.destination_ports =
                        self.ports(&yaml(&c.values), label, &format!("{f}.values"))?;
                    m.not_destination_ports =
                        self.ports(&yaml(&c.not_values), label, &format!("{f}.notValues"))?;
                }
                _ => {}
            }
            clauses.push(Clause { matches: vec![m] });
        }
        l7.sort();
        l7.dedup();
        Ok((Rule { clauses }, l7))
    }

    /// Ports are strings in Istio's API; numbers are accepted too. Like istiod, an unusable
    /// entry is skipped, and here it is also reported.
    fn ports(
        &mut self,
        values: &[serde_yaml_ng::Value],
        label: &str,
        field: &str,
    ) -> Result<Vec<u16>, LoadError> {
        let mut out = Vec::with_capacity(values.len());
        for v in values {
            let parsed = match v {
                serde_yaml_ng::Value::String(s) => s.trim().parse::<u16>().ok(),
                serde_yaml_ng::Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
                _ => None,
            };
            match parsed {
                Some(p) => out.push(p),
                None => self.warn(
                    label,
                    field,
                    format!("{} is not a port (1-65535); ignored", yaml_text(v)),
                ),
            }
        }
        Ok(out)
    }

    /// IPs or CIDRs; unusable entries are skipped and reported, as for ports.
    fn ips(&mut self, values: &[String], label: &str, field: &str) -> Vec<IpNet> {
        let mut out = Vec::with_capacity(values.len());
        for v in values {
            let net = v
                .parse::<IpNet>()
                .ok()
                .or_else(|| v.parse::<IpAddr>().ok().map(IpNet::from));
            match net {
                Some(n) => out.push(n),
                None => self.warn(
                    label,
                    field,
                    format!("{v:?} is not an IP address or CIDR; ignored"),
                ),
            }
        }
        out
    }

    fn peer_authentication(
        &mut self,
        spec: PaSpec,
        ns: &str,
        name: &str,
        label: &str,
    ) -> Result<(), LoadError> {
        let mode = |m: &Option<PaMtls>, field: &str| -> Result<MtlsMode, LoadError> {
            match m
                .as_ref()
                .and_then(|m| m.mode.as_deref())
                .unwrap_or("UNSET")
            {
                "UNSET" => Ok(MtlsMode::Unset),
                "DISABLE" => Ok(MtlsMode::Disable),
                "PERMISSIVE" => Ok(MtlsMode::Permissive),
                "STRICT" => Ok(MtlsMode::Strict),
                other => Err(LoadError {
                    object: label.into(),
                    field: field.into(),
                    message: format!(
                        "unknown mode {other:?} (UNSET, DISABLE, PERMISSIVE or STRICT)"
                    ),
                }),
            }
        };
        let workload_mode = mode(&spec.mtls, "spec.mtls.mode")?;
        if workload_mode == MtlsMode::Disable {
            self.warn(
                label,
                "spec.mtls.mode",
                "DISABLE is not supported in ambient; treated as PERMISSIVE",
            );
        }
        let selector = spec.selector.map(|s| s.match_labels);
        let mut port_modes = BTreeMap::new();
        for (port, m) in spec.port_level_mtls {
            let field = format!("spec.portLevelMtls[{}]", yaml_text(&port));
            let m: PaMtls = from_value(m, label, &field)?;
            let p = match &port {
                serde_yaml_ng::Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
                serde_yaml_ng::Value::String(s) => s.parse().ok(),
                _ => None,
            }
            .filter(|p| *p != 0)
            .ok_or_else(|| LoadError {
                object: label.into(),
                field: field.clone(),
                message: "not a port number".into(),
            })?;
            port_modes.insert(p, mode(&Some(m), &format!("{field}.mode"))?);
        }
        if !port_modes.is_empty() && selector.is_none() {
            self.warn(
                label,
                "spec.portLevelMtls",
                "port-level modes need a selector; ignored",
            );
            port_modes.clear();
        }
        self.peer_authentications.push(PeerAuthentication {
            name: name.to_owned(),
            namespace: ns.to_owned(),
            selector,
            mode: workload_mode,
            port_modes,
        });
        Ok(())
    }
}

fn strings(v: &[String]) -> Vec<StringMatch> {
    v.iter().map(|s| StringMatch::from_istio(s)).collect()
}

fn service_accounts(v: &[String], ns: &str) -> Vec<ServiceAccountMatch> {
    v.iter()
        .map(|s| match s.split_once('/') {
            Some((n, sa)) => ServiceAccountMatch {
                namespace: n.to_owned(),
                service_account: sa.to_owned(),
            },
            None => ServiceAccountMatch {
                namespace: ns.to_owned(),
                service_account: s.clone(),
            },
        })
        .collect()
}

fn yaml_text(v: &serde_yaml_ng::Value) -> String {
    match v {
        serde_yaml_ng::Value::String(s) => return s.clone(),
        serde_yaml_ng::Value::Number(n) => return n.to_string(),
        _ => {}
    }
    serde_yaml_ng::to_string(v)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

/// Deserializes with the failing field's path in the error.
pub(crate) fn from_value<T: DeserializeOwned>(
    value: serde_yaml_ng::Value,
    object: &str,
    prefix: &str,
) -> Result<T, LoadError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = match (prefix.is_empty(), path.as_str()) {
            (_, ".") => prefix.to_owned(),
            (true, p) => p.to_owned(),
            (false, p) => format!("{prefix}.{p}"),
        };
        LoadError {
            object: object.to_owned(),
            field,
            message: e.into_inner().to_string(),
        }
    })
}

impl fmt::Display for LoadWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.object, self.field, self.message)
    }
}
