//! Istio `AuthorizationPolicy` YAML → compiled [`L7Policy`]: hosts lowercased, CIDRs, ports and
//! templates parsed, header names validated, once at load time.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderName;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use ambit_config::attach::{self, TargetRef};
use ambit_config::{ConfigError, Object, Report};

use super::{Cond, HeaderMatch, IssSub, L7Action, L7Policy, PathPattern, Pseudo, Rule, Values};
use crate::model::StringMatch;
use crate::wire::{FromEntry, Operation, Source, ToEntry};

// === wire shapes ===

#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Spec {
    selector: Option<serde_yaml_ng::Value>,
    target_ref: Option<TargetRef>,
    #[serde(default)]
    target_refs: Vec<TargetRef>,
    action: Option<String>,
    provider: Option<Provider>,
    #[serde(default)]
    rules: Vec<WireRule>,
}

#[derive(Deserialize, Serialize, Default)]
struct Provider {
    name: Option<String>,
}

#[derive(Deserialize, Serialize, Default)]
struct WireRule {
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
    values: Vec<serde_yaml_ng::Value>,
    #[serde(default)]
    not_values: Vec<serde_yaml_ng::Value>,
}

// === compilation ===

/// Compiles one AuthorizationPolicy; `None` when no waypoint applies it (warned).
pub(super) fn policy(
    doc: &Object,
    root_namespace: &str,
    report: &mut Report,
) -> Result<Option<L7Policy>, ConfigError> {
    let name = doc.require_name(report)?.to_owned();
    let label = doc.label();
    let spec: Spec = report.decode(doc.spec.clone(), &label, "spec")?;
    let action = match spec.action.as_deref().unwrap_or("ALLOW") {
        "ALLOW" => L7Action::Allow,
        "DENY" => L7Action::Deny,
        "AUDIT" => L7Action::Audit,
        "CUSTOM" => L7Action::Custom,
        other => {
            return Err(report.error(
                &label,
                "spec.action",
                format!("unknown action {other:?} (ALLOW, DENY, AUDIT or CUSTOM)"),
            ));
        }
    };
    let mut warn = |field: &str, message: String| report.warn(&label, field, message);
    match (action, &spec.provider) {
        (L7Action::Custom, provider) => {
            let provider = provider
                .as_ref()
                .and_then(|p| p.name.as_deref())
                .unwrap_or("<none>");
            warn(
                "spec.action",
                format!(
                    "CUSTOM (external authorization via provider {provider:?}) is not supported by \
                     ambit's waypoint; requests matching this policy's rules are DENIED, as Istio \
                     does when a CUSTOM provider is unavailable"
                ),
            );
        }
        (_, Some(_)) => warn(
            "spec.provider",
            "only meaningful with CUSTOM; ignored".into(),
        ),
        (_, None) => {}
    }
    let dry_run = crate::dry_run(&doc.annotations, &mut warn);
    let attachments = attach::resolve(
        spec.selector.is_some(),
        spec.target_ref,
        spec.target_refs,
        &doc.namespace,
        root_namespace,
        &label,
        report,
    )?;
    if attachments.is_empty() {
        return Ok(None);
    }
    let mut rules = Vec::with_capacity(spec.rules.len());
    for (i, r) in spec.rules.into_iter().enumerate() {
        let mut c = RuleCompiler {
            action,
            namespace: &doc.namespace,
            label: &label,
            at: format!("spec.rules[{i}]"),
            report: &mut *report,
            broken: false,
        };
        let rule = c.rule(r);
        if c.broken {
            // Already reported; an ALLOW rule with an unusable part allows nothing.
            continue;
        }
        rules.push(rule);
    }
    Ok(Some(L7Policy {
        key: Arc::from(format!("{}/{name}", doc.namespace)),
        name,
        namespace: doc.namespace.clone(),
        action,
        dry_run,
        rules,
        attachments,
    }))
}

/// Compiles one rule, handling unusable values the way istiod does (see the module docs).
struct RuleCompiler<'a> {
    action: L7Action,
    namespace: &'a str,
    label: &'a str,
    at: String,
    report: &'a mut Report,
    broken: bool,
}

impl RuleCompiler<'_> {
    /// Reports an unusable value: an ALLOW rule is dropped, otherwise the value is ignored.
    fn problem(&mut self, field: &str, what: String) {
        let consequence = if self.action == L7Action::Allow {
            self.broken = true;
            "this ALLOW rule is omitted (allows nothing), which is more restrictive than requested"
        } else {
            "ignored; this rule matches more requests, which is more restrictive than requested"
        };
        self.report
            .warn(self.label, field, format!("{what}; {consequence}"));
    }

    fn rule(&mut self, r: WireRule) -> Rule {
        let at = self.at.clone();
        let from = r
            .from
            .into_iter()
            .enumerate()
            .map(|(j, f)| self.source(f.source, &format!("{at}.from[{j}].source")))
            .collect();
        let to =
            r.to.into_iter()
                .enumerate()
                .map(|(j, t)| self.operation(t.operation, &format!("{at}.to[{j}].operation")))
                .collect();
        let when = r
            .when
            .into_iter()
            .enumerate()
            .filter_map(|(j, c)| self.condition(c, &format!("{at}.when[{j}]")))
            .collect();
        Rule { from, to, when }
    }

    fn source(&mut self, s: Source, at: &str) -> Vec<Cond> {
        let mut out = Vec::new();
        let has_sas = !s.service_accounts.is_empty() || !s.not_service_accounts.is_empty();
        let has_ids = !s.principals.is_empty()
            || !s.not_principals.is_empty()
            || !s.namespaces.is_empty()
            || !s.not_namespaces.is_empty();
        if has_sas && has_ids {
            self.problem(
                &format!("{at}.serviceAccounts"),
                "serviceAccounts cannot be combined with principals or namespaces".into(),
            );
        }
        let f = |name: &str| format!("{at}.{name}");
        self.push(
            &mut out,
            &f("principals"),
            &s.principals,
            &s.not_principals,
            Self::string,
            Cond::Principal,
        );
        self.push(
            &mut out,
            &f("namespaces"),
            &s.namespaces,
            &s.not_namespaces,
            Self::string,
            Cond::Namespace,
        );
        let ns = self.namespace.to_owned();
        self.push(
            &mut out,
            &f("serviceAccounts"),
            &s.service_accounts,
            &s.not_service_accounts,
            |_, v| service_account(v, &ns),
            Cond::ServiceAccount,
        );
        self.push(
            &mut out,
            &f("trustDomains"),
            &s.trust_domains,
            &s.not_trust_domains,
            Self::string,
            Cond::TrustDomain,
        );
        self.push(
            &mut out,
            &f("ipBlocks"),
            &s.ip_blocks,
            &s.not_ip_blocks,
            |_, v| cidr(v),
            Cond::SourceIp,
        );
        self.push(
            &mut out,
            &f("remoteIpBlocks"),
            &s.remote_ip_blocks,
            &s.not_remote_ip_blocks,
            |_, v| cidr(v),
            Cond::RemoteIp,
        );
        self.push(
            &mut out,
            &f("requestPrincipals"),
            &s.request_principals,
            &s.not_request_principals,
            |_, v| nonempty(v).map(request_principal),
            Cond::RequestPrincipal,
        );
        out
    }

    fn operation(&mut self, o: Operation, at: &str) -> Vec<Cond> {
        let mut out = Vec::new();
        let f = |name: &str| format!("{at}.{name}");
        self.push(
            &mut out,
            &f("hosts"),
            &o.hosts,
            &o.not_hosts,
            |_, v| nonempty(v).map(|v| StringMatch::from_istio(&v.to_ascii_lowercase())),
            Cond::Host,
        );
        let ports = |v: &[serde_yaml_ng::Value]| v.iter().map(yaml_text).collect::<Vec<_>>();
        self.push(
            &mut out,
            &f("ports"),
            &ports(&o.ports),
            &ports(&o.not_ports),
            |_, v| port(v),
            Cond::DestinationPort,
        );
        self.push(
            &mut out,
            &f("methods"),
            &o.methods,
            &o.not_methods,
            Self::string,
            Cond::Method,
        );
        self.push(
            &mut out,
            &f("paths"),
            &o.paths,
            &o.not_paths,
            |_, v| nonempty(v).and_then(PathPattern::parse),
            Cond::Path,
        );
        out
    }

    /// One `when` entry; `None` when it is dropped (reported).
    fn condition(&mut self, c: Condition, at: &str) -> Option<Cond> {
        let values: Vec<String> = c.values.iter().map(yaml_text).collect();
        let not_values: Vec<String> = c.not_values.iter().map(yaml_text).collect();
        if values.is_empty() && not_values.is_empty() {
            self.problem(at, format!("condition {:?} has no values", c.key));
            return None;
        }
        let key = c.key.as_str();
        let mut out = Vec::with_capacity(1);
        let (v, nv) = (&values[..], &not_values[..]);
        macro_rules! cond {
            ($parse:expr, $make:expr) => {
                self.push(&mut out, at, v, nv, $parse, $make)
            };
        }
        match key {
            "source.ip" => cond!(|_, v| cidr(v), Cond::SourceIp),
            "remote.ip" => cond!(|_, v| cidr(v), Cond::RemoteIp),
            "source.namespace" => cond!(Self::string, Cond::Namespace),
            "source.principal" => cond!(Self::string, Cond::Principal),
            "request.auth.principal" => cond!(
                |_, v| nonempty(v).map(request_principal),
                Cond::RequestPrincipal
            ),
            "request.auth.audiences" => cond!(Self::string, Cond::Audience),
            "request.auth.presenter" => cond!(Self::string, Cond::Presenter),
            "destination.ip" => cond!(|_, v| cidr(v), Cond::DestinationIp),
            "destination.port" => cond!(|_, v| port(v), Cond::DestinationPort),
            "connection.sni" => cond!(Self::string, Cond::Sni),
            _ => {
                if let Some(rest) = key.strip_prefix("request.headers") {
                    match bracketed(rest).as_deref() {
                        Some([name]) => {
                            let pseudo = match name.to_ascii_lowercase().as_str() {
                                ":authority" | "host" => Some(Pseudo::Authority),
                                ":method" => Some(Pseudo::Method),
                                ":path" => Some(Pseudo::Path),
                                _ => None,
                            };
                            match (pseudo, HeaderName::from_bytes(name.as_bytes())) {
                                (Some(p), _) => {
                                    cond!(Self::header_value, |vals| Cond::Pseudo(p, vals))
                                }
                                (None, Ok(h)) => {
                                    cond!(Self::header_value, |vals| Cond::Header(h, vals))
                                }
                                (None, Err(_)) => self.problem(
                                    &format!("{at}.key"),
                                    format!("{name:?} is not a valid header name"),
                                ),
                            }
                        }
                        _ => self.problem(
                            &format!("{at}.key"),
                            format!("{key:?}: expected request.headers[<name>]"),
                        ),
                    }
                } else if let Some(rest) = key.strip_prefix("request.auth.claims") {
                    match bracketed(rest) {
                        Some(path) => {
                            cond!(Self::string, |vals| Cond::Claim(path.clone(), vals))
                        }
                        None => self.problem(
                            &format!("{at}.key"),
                            format!("{key:?}: expected request.auth.claims[<name>] or [<a>][<b>]"),
                        ),
                    }
                } else if key.starts_with("experimental.envoy.filters.") {
                    self.problem(
                        &format!("{at}.key"),
                        format!(
                            "{key:?} reads Envoy network-filter metadata, which a waypoint does \
                             not have"
                        ),
                    );
                } else {
                    self.problem(
                        &format!("{at}.key"),
                        format!("unknown condition key {key:?}"),
                    );
                }
            }
        }
        out.pop()
    }

    /// Compiles a value list and its `not` list; pushes a condition when either is non-empty
    /// after dropping unusable values.
    fn push<M>(
        &mut self,
        out: &mut Vec<Cond>,
        field: &str,
        values: &[String],
        not_values: &[String],
        mut parse: impl FnMut(&mut Self, &str) -> Result<M, String>,
        make: impl FnOnce(Values<M>) -> Cond,
    ) {
        if values.is_empty() && not_values.is_empty() {
            return;
        }
        let mut compile = |this: &mut Self, list: &[String], field: String| {
            let mut out = Vec::with_capacity(list.len());
            for v in list {
                match parse(this, v) {
                    Ok(m) => out.push(m),
                    Err(e) => this.problem(&field, e),
                }
            }
            out
        };
        let negated = negate(field);
        let values_c = compile(self, values, field.to_owned());
        let not_values_c = compile(self, not_values, negated);
        if values_c.is_empty() && not_values_c.is_empty() {
            return;
        }
        out.push(make(Values {
            values: values_c,
            not_values: not_values_c,
        }));
    }

    fn string(&mut self, v: &str) -> Result<StringMatch, String> {
        nonempty(v).map(StringMatch::from_istio)
    }

    fn header_value(&mut self, v: &str) -> Result<HeaderMatch, String> {
        nonempty(v).map(|v| match v {
            "*" => HeaderMatch::Present,
            v => HeaderMatch::Value(StringMatch::from_istio(v)),
        })
    }
}

/// `spec.rules[0].from[0].source.principals` → `…notPrincipals`; `when[0]` → `when[0].notValues`.
fn negate(field: &str) -> String {
    match field.rsplit_once('.') {
        Some((head, name)) if !name.contains('[') => {
            let mut chars = name.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase());
            format!(
                "{head}.not{}{}",
                first.map(String::from).unwrap_or_default(),
                chars.as_str()
            )
        }
        _ => format!("{field}.notValues"),
    }
}

fn nonempty(v: &str) -> Result<&str, String> {
    if v.is_empty() {
        Err("empty value".into())
    } else {
        Ok(v)
    }
}

fn cidr(v: &str) -> Result<IpNet, String> {
    v.parse::<IpNet>()
        .ok()
        .or_else(|| v.parse::<IpAddr>().ok().map(IpNet::from))
        .ok_or_else(|| format!("{v:?} is not an IP address or CIDR"))
}

fn port(v: &str) -> Result<u16, String> {
    v.trim()
        .parse::<u16>()
        .map_err(|_| format!("{v:?} is not a port (0-65535)"))
}

fn service_account(v: &str, ns: &str) -> Result<(String, String), String> {
    let (n, sa) = v.split_once('/').unwrap_or((ns, v));
    if n.is_empty() || sa.is_empty() || v.contains('*') || sa.contains('/') {
        return Err(format!(
            "{v:?} is not a service account (`name` or `namespace/name`, no wildcards)"
        ));
    }
    Ok((n.to_owned(), sa.to_owned()))
}

/// Istio's `requestPrincipals` split: at the last `/`, wildcards on either side.
fn request_principal(v: &str) -> IssSub {
    use StringMatch::{Exact, Prefix, Presence, Suffix};
    let (iss, sub, split) = match v.rfind('/') {
        Some(i) => (&v[..i], &v[i + 1..], true),
        None => (v, "", false),
    };
    let (iss, sub) = if v == "*" {
        (Presence, Presence)
    } else if let Some(rest) = v.strip_prefix('*') {
        if split {
            let iss = match iss {
                "*" => Presence,
                i => Suffix(i[1..].to_owned()),
            };
            (iss, Exact(sub.to_owned()))
        } else {
            (Presence, Suffix(rest.to_owned()))
        }
    } else if let Some(rest) = v.strip_suffix('*') {
        if split {
            let sub = match sub {
                "*" => Presence,
                s => Prefix(s[..s.len() - 1].to_owned()),
            };
            (Exact(iss.to_owned()), sub)
        } else {
            (Prefix(rest.to_owned()), Presence)
        }
    } else {
        (Exact(iss.to_owned()), Exact(sub.to_owned()))
    };
    IssSub { iss, sub }
}

/// `[a]` → `["a"]`, `[a][b]` → `["a", "b"]`; anything else (empty names, trailing text) → `None`.
fn bracketed(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let (name, tail) = inner.split_once(']')?;
        if name.is_empty() || name.contains('[') {
            return None;
        }
        out.push(name.to_owned());
        rest = tail;
    }
    if out.is_empty() { None } else { Some(out) }
}

fn yaml_text(v: &serde_yaml_ng::Value) -> String {
    match v {
        serde_yaml_ng::Value::String(s) => s.clone(),
        serde_yaml_ng::Value::Number(n) => n.to_string(),
        serde_yaml_ng::Value::Bool(b) => b.to_string(),
        other => serde_yaml_ng::to_string(other)
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "?".into()),
    }
}
