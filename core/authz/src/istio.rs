//! Istio `AuthorizationPolicy` and `PeerAuthentication` YAML (security.istio.io v1 and v1beta1),
//! translated to the L4 model exactly as istiod translates them for ztunnel.
//!
//! What the node proxy cannot enforce is reported as a [`ConfigWarning`], never dropped
//! silently: policies with `targetRef(s)` (for waypoints), AUDIT and CUSTOM actions, and HTTP
//! attributes (an ALLOW rule with any is dropped; a DENY rule keeps its L4 part, so it denies
//! more).
//!
//! [`ConfigWarning`]: ambit_config::ConfigWarning

use std::collections::BTreeMap;
use std::net::IpAddr;

use ambit_config::{ConfigError, ConfigWarning, Object, Report, yaml_text};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

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
    pub warnings: Vec<ConfigWarning>,
}

// === wire shapes (private; every field of the Istio API, see `wire.rs`) ===

#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
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

#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Selector {
    #[serde(default)]
    match_labels: Labels,
}

#[derive(Deserialize, Serialize, Default)]
struct ApRule {
    #[serde(default)]
    from: Vec<FromEntry>,
    #[serde(default)]
    to: Vec<ToEntry>,
    #[serde(default)]
    when: Vec<Condition>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Condition {
    key: String,
    #[serde(default)]
    values: Vec<String>,
    #[serde(default)]
    not_values: Vec<String>,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct PaSpec {
    selector: Option<Selector>,
    mtls: Option<PaMtls>,
    #[serde(default)]
    port_level_mtls: serde_yaml_ng::Mapping,
}

#[derive(Deserialize, Serialize, Default)]
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
    /// Parses a YAML stream (documents separated by `---`; `kind: List` expanded); `file` names
    /// it in messages. Objects of other kinds are skipped with a warning; a malformed security
    /// object is an error naming the file, the object and the field.
    pub fn parse(yaml: &str, file: &str, root_namespace: &str) -> Result<Self, ConfigError> {
        let mut report = Report::new(file);
        let objects = ambit_config::objects(yaml, &report)?;
        let mut out = Self::from_objects(&objects, root_namespace, &mut report)?;
        for o in &objects {
            if !matches!(
                o.kind.as_str(),
                "AuthorizationPolicy" | "PeerAuthentication"
            ) {
                report.warn(
                    &o.label(),
                    "kind",
                    "not a security policy the node proxy enforces; skipped",
                );
            }
        }
        out.warnings = report.into_warnings();
        Ok(out)
    }

    /// The AuthorizationPolicies and PeerAuthentications among `objects` (other kinds are left
    /// for other loaders, silently); warnings go to `report`, and [`Self::warnings`] stays empty.
    pub fn from_objects(
        objects: &[Object],
        root_namespace: &str,
        report: &mut Report,
    ) -> Result<Self, ConfigError> {
        let mut out = IstioPolicies::default();
        for obj in objects {
            if !matches!(
                obj.kind.as_str(),
                "AuthorizationPolicy" | "PeerAuthentication"
            ) {
                continue;
            }
            let name = obj.require_name(report)?.to_owned();
            let label = obj.label();
            if !crate::is_security_api(&obj.api_version) {
                return Err(crate::unsupported_api(obj, report));
            }
            let ns = obj.namespace.as_str();
            if obj.kind == "AuthorizationPolicy" {
                let spec: ApSpec = report.decode(obj.spec.clone(), &label, "spec")?;
                let dry_run = crate::dry_run(&obj.annotations, &mut |field, message| {
                    report.warn(&label, field, message)
                });
                out.authorization(spec, ns, &name, root_namespace, &label, dry_run, report)?;
            } else {
                let spec: PaSpec = report.decode(obj.spec.clone(), &label, "spec")?;
                out.peer_authentication(spec, ns, &name, &label, report)?;
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

    #[allow(clippy::too_many_arguments)]
    fn authorization(
        &mut self,
        spec: ApSpec,
        ns: &str,
        name: &str,
        root: &str,
        label: &str,
        dry_run: bool,
        report: &mut Report,
    ) -> Result<(), ConfigError> {
        if spec.target_ref.is_some() || !spec.target_refs.is_empty() {
            report.warn(
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
                report.warn(
                    label,
                    "spec.action",
                    format!("the node proxy does not support the {a} action; skipped"),
                );
                return Ok(());
            }
            other => {
                return Err(report.error(
                    label,
                    "spec.action",
                    format!("unknown action {other:?} (ALLOW, DENY, AUDIT or CUSTOM)"),
                ));
            }
        };
        if spec.provider.is_some() {
            report.warn(
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
            let (rule, l7) = self.rule(r, ns, label, &at, report)?;
            if l7.is_empty() {
                rules.push(rule);
                continue;
            }
            let found = l7.join(", ");
            match action {
                Action::Allow => report.warn(
                    label,
                    &at,
                    format!(
                        "HTTP attributes ({found}) need a waypoint; this ALLOW rule is omitted, \
                         which is more restrictive than requested"
                    ),
                ),
                Action::Deny => {
                    report.warn(
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
                dry_run,
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
        report: &mut Report,
    ) -> Result<(Rule, Vec<String>), ConfigError> {
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
                destination_ports: Self::ports(&op.ports, label, &format!("{f}.ports"), report)?,
                not_destination_ports: Self::ports(
                    &op.not_ports,
                    label,
                    &format!("{f}.notPorts"),
                    report,
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
                source_ips: Self::ips(&s.ip_blocks, label, &format!("{f}.ipBlocks"), report),
                not_source_ips: Self::ips(
                    &s.not_ip_blocks,
                    label,
                    &format!("{f}.notIpBlocks"),
                    report,
                ),
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
                    m.source_ips = Self::ips(&c.values, label, &format!("{f}.values"), report);
                    m.not_source_ips =
                        Self::ips(&c.not_values, label, &format!("{f}.notValues"), report);
                }
                "destination.ip" => {
                    m.destination_ips = Self::ips(&c.values, label, &format!("{f}.values"), report);
                    m.not_destination_ips =
                        Self::ips(&c.not_values, label, &format!("{f}.notValues"), report);
                }
                "destination.port" => {
                    let yaml = |v: &[String]| {
                        v.iter()
                            .map(|s| serde_yaml_ng::Value::String(s.clone()))
                            .collect::<Vec<_>>()
                    };
                    m.destination_ports =
                        Self::ports(&yaml(&c.values), label, &format!("{f}.values"), report)?;
                    m.not_destination_ports = Self::ports(
                        &yaml(&c.not_values),
                        label,
                        &format!("{f}.notValues"),
                        report,
                    )?;
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
        values: &[serde_yaml_ng::Value],
        label: &str,
        field: &str,
        report: &mut Report,
    ) -> Result<Vec<u16>, ConfigError> {
        let mut out = Vec::with_capacity(values.len());
        for v in values {
            let parsed = match v {
                serde_yaml_ng::Value::String(s) => s.trim().parse::<u16>().ok(),
                serde_yaml_ng::Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
                _ => None,
            };
            match parsed {
                Some(p) => out.push(p),
                None => report.warn(
                    label,
                    field,
                    format!("{} is not a port (1-65535); ignored", yaml_text(v)),
                ),
            }
        }
        Ok(out)
    }

    /// IPs or CIDRs; unusable entries are skipped and reported, as for ports.
    fn ips(values: &[String], label: &str, field: &str, report: &mut Report) -> Vec<IpNet> {
        let mut out = Vec::with_capacity(values.len());
        for v in values {
            let net = v
                .parse::<IpNet>()
                .ok()
                .or_else(|| v.parse::<IpAddr>().ok().map(IpNet::from));
            match net {
                Some(n) => out.push(n),
                None => report.warn(
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
        report: &mut Report,
    ) -> Result<(), ConfigError> {
        let mode =
            |m: &Option<PaMtls>, field: &str, report: &Report| -> Result<MtlsMode, ConfigError> {
                match m
                    .as_ref()
                    .and_then(|m| m.mode.as_deref())
                    .unwrap_or("UNSET")
                {
                    "UNSET" => Ok(MtlsMode::Unset),
                    "DISABLE" => Ok(MtlsMode::Disable),
                    "PERMISSIVE" => Ok(MtlsMode::Permissive),
                    "STRICT" => Ok(MtlsMode::Strict),
                    other => Err(report.error(
                        label,
                        field,
                        format!("unknown mode {other:?} (UNSET, DISABLE, PERMISSIVE or STRICT)"),
                    )),
                }
            };
        let workload_mode = mode(&spec.mtls, "spec.mtls.mode", report)?;
        if workload_mode == MtlsMode::Disable {
            report.warn(
                label,
                "spec.mtls.mode",
                "DISABLE is not supported in ambient; treated as PERMISSIVE",
            );
        }
        let selector = spec.selector.map(|s| s.match_labels);
        let mut port_modes = BTreeMap::new();
        for (port, m) in spec.port_level_mtls {
            let field = format!("spec.portLevelMtls[{}]", yaml_text(&port));
            let m: PaMtls = report.decode(m, label, &field)?;
            let p = match &port {
                serde_yaml_ng::Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
                serde_yaml_ng::Value::String(s) => s.parse().ok(),
                _ => None,
            }
            .filter(|p| *p != 0)
            .ok_or_else(|| report.error(label, &field, "not a port number"))?;
            port_modes.insert(p, mode(&Some(m), &format!("{field}.mode"), report)?);
        }
        if !port_modes.is_empty() && selector.is_none() {
            report.warn(
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
