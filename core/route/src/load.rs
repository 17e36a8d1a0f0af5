//! YAML → compiled routes. Everything the API server would reject (CEL rules, enums, ranges,
//! limits) is an error naming the object and the field; what ambit accepts but does not
//! (fully) apply, and fields it does not know, are warnings.

use std::collections::BTreeSet;

use std::sync::Arc;
use std::time::Duration;

use ambit_config::duration;
use http::{HeaderName, HeaderValue, StatusCode};

use ambit_config::{ConfigError, ConfigWarning, Object, Report, yaml_text};
use serde_yaml_ng::Value;

use crate::model::{
    Backend, ExtensionKind, ExtensionRef, Fault, Filters, Grant, HeaderMatch, HeaderModifier,
    Match, Mirror, Parent, PathMatch, PathModifier, QueryMatch, Redirect, Retry, Rewrite, Route,
    RouteKind, Rule, Scheme, Timeouts, ValueMatch, WeightedBackend,
};
use crate::ratelimit::RateLimit;
use crate::rng::Fraction;

mod backend;
mod checks;
mod cors;
mod extension;
mod filter;
mod grant;
mod grpc;
mod matches;
mod wire;

use checks::{
    check_hostname, check_match_path, check_replacement_path, default_match, full_match_regex,
    method, too_many,
};

/// A named extension object (`Fault`, `LocalRateLimit`) as loaded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ext<T> {
    /// `namespace/name`.
    pub(crate) key: String,
    pub(crate) file: String,
    pub(crate) spec: T,
}

/// Everything one YAML stream held.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) routes: Vec<Route>,
    pub(crate) faults: Vec<Ext<Arc<Fault>>>,
    pub(crate) rate_limits: Vec<Ext<RateLimit>>,
    pub(crate) grants: Vec<Ext<Grant>>,
    pub(crate) warnings: Vec<ConfigWarning>,
}

/// The API group of the waypoint Gateway, HTTPRoute, GRPCRoute and ReferenceGrant.
pub(crate) const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
/// The API group of ambit's extension kinds.
pub(crate) const AMBIT_GROUP: &str = "ambit.dev";
const AMBIT_API: &str = "ambit.dev/v1alpha1";

const MAX_RULES: usize = 16;
const MAX_MATCHES: usize = 64;
const MAX_MATCHES_PER_ROUTE: usize = 128;
const MAX_FILTERS: usize = 16;
const MAX_BACKENDS: usize = 16;
const MAX_HEADER_MATCHES: usize = 16;
const MAX_QUERY_MATCHES: usize = 16;
const MAX_HEADER_EDITS: usize = 16;
const MAX_HOSTNAMES: usize = 16;
const MAX_PARENTS: usize = 32;
const MAX_WEIGHT: i64 = 1_000_000;
const MAX_VALUE_LEN: usize = 1024;

/// Filters on a rule, or on one of its backendRefs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Rule,
    Backend,
}

#[derive(Default)]
struct FilterSet {
    filters: Filters,
    extensions: Vec<ExtensionRef>,
    fail_closed: bool,
}

/// Parses a multi-document YAML stream.
pub(crate) fn parse(yaml: &str, file: &str) -> Result<Parsed, ConfigError> {
    let mut report = Report::new(file);
    let objects = ambit_config::objects(yaml, &report)?;
    let mut parsed = from_objects(&objects, &mut report, true)?;
    parsed.warnings = report.into_warnings();
    Ok(parsed)
}

/// The HTTPRoutes and ambit extensions among `objects`; other kinds are warned about when
/// `strangers` is set (a stream of routes alone), and left to other loaders otherwise.
/// Warnings go to `report`.
pub(crate) fn from_objects(
    objects: &[Object],
    report: &mut Report,
    strangers: bool,
) -> Result<Parsed, ConfigError> {
    let mut loader = Loader {
        report: std::mem::take(report),
        out: Parsed::default(),
    };
    let result = objects.iter().try_for_each(|o| loader.object(o, strangers));
    *report = loader.report;
    result.map(|()| loader.out)
}

struct Loader {
    report: Report,
    out: Parsed,
}

// === impl Loader ===

impl Loader {
    fn error(&self, object: &str, field: &str, message: impl Into<String>) -> ConfigError {
        self.report.error(object, field, message)
    }

    fn warn(&mut self, object: &str, field: &str, message: impl Into<String>) {
        self.report.warn(object, field, message);
    }

    fn object(&mut self, obj: &Object, strangers: bool) -> Result<(), ConfigError> {
        let kind = obj.kind.as_str();
        let api = obj.api_version.as_str();
        let ours = matches!(
            (obj.group(), kind),
            (GATEWAY_GROUP, "HTTPRoute" | "GRPCRoute" | "ReferenceGrant")
                | (AMBIT_GROUP, "Fault" | "LocalRateLimit")
        );
        if !ours {
            if strangers {
                self.warn(
                    &obj.label(),
                    "kind",
                    format!("{api} {kind} is not an HTTPRoute or an ambit.dev extension; skipped"),
                );
            }
            return Ok(());
        }
        let name = obj.require_name(&self.report)?.to_owned();
        let ns = obj.namespace.clone();
        let label = obj.label();
        match (kind, api) {
            ("HTTPRoute", "gateway.networking.k8s.io/v1" | "gateway.networking.k8s.io/v1beta1") => {
                self.http_route(obj, ns, name, &label)
            }
            ("GRPCRoute", "gateway.networking.k8s.io/v1") => self.grpc_route(obj, ns, name, &label),
            (
                "ReferenceGrant",
                "gateway.networking.k8s.io/v1beta1" | "gateway.networking.k8s.io/v1",
            ) => {
                let grant = self.grant(obj.spec.clone(), &label)?;
                self.out.grants.push(Ext {
                    key: format!("{ns}/{name}"),
                    file: self.report.file().to_owned(),
                    spec: grant,
                });
                Ok(())
            }
            ("HTTPRoute" | "GRPCRoute", _) => Err(self.error(
                &label,
                "apiVersion",
                format!("{api:?} is not supported; use gateway.networking.k8s.io/v1"),
            )),
            ("ReferenceGrant", _) => Err(self.error(
                &label,
                "apiVersion",
                format!("{api:?} is not supported; use gateway.networking.k8s.io/v1beta1"),
            )),
            (_, AMBIT_API) => {
                let key = format!("{ns}/{name}");
                let file = self.report.file().to_owned();
                if kind == "Fault" {
                    let spec = self.fault(obj.spec.clone(), &label)?;
                    self.out.faults.push(Ext {
                        key,
                        file,
                        spec: Arc::new(spec),
                    });
                } else {
                    let spec = self.rate_limit(obj.spec.clone(), &label)?;
                    self.out.rate_limits.push(Ext { key, file, spec });
                }
                Ok(())
            }
            _ => Err(self.error(
                &label,
                "apiVersion",
                format!("{api:?} is not supported; use {AMBIT_API}"),
            )),
        }
    }

    fn http_route(
        &mut self,
        obj: &Object,
        ns: String,
        name: String,
        label: &str,
    ) -> Result<(), ConfigError> {
        let spec: wire::RouteSpec = self.report.decode(obj.spec.clone(), label, "spec")?;
        self.route(obj, RouteKind::Http, ns, name, label, spec)
    }

    /// What HTTPRoute and GRPCRoute share, from the HTTPRoute form of the spec.
    fn route(
        &mut self,
        obj: &Object,
        kind: RouteKind,
        ns: String,
        name: String,
        label: &str,
        spec: wire::RouteSpec,
    ) -> Result<(), ConfigError> {
        let created = match &obj.creation_timestamp {
            None => None,
            Some(ts) => {
                let parsed = ambit_config::time::rfc3339(ts);
                if parsed.is_none() {
                    self.warn(
                        label,
                        "metadata.creationTimestamp",
                        format!("{ts:?} is not an RFC 3339 time; the route ranks as the newest"),
                    );
                }
                parsed
            }
        };
        let parents = self.parents(&spec.parent_refs, &ns, label)?;

        if spec.hostnames.len() > MAX_HOSTNAMES {
            return Err(self.error(label, "spec.hostnames", too_many(MAX_HOSTNAMES)));
        }
        let mut hostnames = Vec::with_capacity(spec.hostnames.len());
        for (i, h) in spec.hostnames.iter().enumerate() {
            check_hostname(h, true)
                .map_err(|m| self.error(label, &format!("spec.hostnames[{i}]"), m))?;
            if !hostnames.contains(h) {
                hostnames.push(h.clone());
            }
        }
        if !hostnames.is_empty() && !parents.iter().any(|p| matches!(p, Parent::Gateway { .. })) {
            self.warn(
                label,
                "spec.hostnames",
                "ignored for Service parentRefs (as Istio does): a Service-attached route \
                 applies to every request for the Service",
            );
        }

        if spec.rules.len() > MAX_RULES {
            return Err(self.error(label, "spec.rules", too_many(MAX_RULES)));
        }
        let total: usize = spec.rules.iter().map(|r| r.matches.len()).sum();
        if total > MAX_MATCHES_PER_ROUTE {
            return Err(self.error(
                label,
                "spec.rules",
                format!("{total} matches in all; at most {MAX_MATCHES_PER_ROUTE} are allowed"),
            ));
        }
        let mut names = BTreeSet::new();
        for (i, r) in spec.rules.iter().enumerate() {
            if let Some(n) = &r.name
                && !names.insert(n.as_str())
            {
                return Err(self.error(
                    label,
                    &format!("spec.rules[{i}].name"),
                    format!("rule name {n:?} is used twice; names must be unique in a route"),
                ));
            }
        }
        let mut rules = Vec::with_capacity(spec.rules.len().max(1));
        if spec.rules.is_empty() {
            self.warn(
                label,
                "spec.rules",
                "no rules: Gateway API's default rule matches every request and, having no \
                 backendRefs, answers 500",
            );
            rules.push(Arc::new(Rule {
                index: 0,
                name: None,
                matches: vec![default_match()],
                filters: Filters::default(),
                backends: Vec::new(),
                total_weight: 0,
                timeouts: Timeouts::default(),
                retry: None,
                extensions: Vec::new(),
                fail_closed: false,
            }));
        }
        for (i, r) in spec.rules.into_iter().enumerate() {
            rules.push(Arc::new(self.rule(r, i, &ns, label)?));
        }
        self.out.routes.push(Route {
            key: format!("{ns}/{name}"),
            kind,
            namespace: ns,
            file: self.report.file().to_owned(),
            created,
            parents,
            hostnames,
            rules,
        });
        Ok(())
    }

    fn parents(
        &mut self,
        refs: &[wire::ParentRef],
        ns: &str,
        label: &str,
    ) -> Result<Vec<Parent>, ConfigError> {
        if refs.len() > MAX_PARENTS {
            return Err(self.error(label, "spec.parentRefs", too_many(MAX_PARENTS)));
        }
        let mut out = Vec::with_capacity(refs.len());
        for (i, p) in refs.iter().enumerate() {
            let at = format!("spec.parentRefs[{i}]");
            let group = p.group.as_deref().unwrap_or(GATEWAY_GROUP);
            let kind = p.kind.as_deref().unwrap_or("Gateway");
            let namespace = p.namespace.clone().unwrap_or_else(|| ns.to_owned());
            let port = match p.port {
                Some(v) => Some(self.port(v, label, &format!("{at}.port"))?),
                None => None,
            };
            let parent = match (group, kind) {
                ("", "Service") => {
                    if p.section_name.is_some() && port.is_none() {
                        self.warn(
                            label,
                            &format!("{at}.sectionName"),
                            "port names are not resolved by ambit; the route applies to every \
                             port of the Service (use `port`)",
                        );
                    }
                    Parent::Service {
                        namespace,
                        name: p.name.clone(),
                        port,
                    }
                }
                (GATEWAY_GROUP, "Gateway") => {
                    if p.section_name.is_some() || port.is_some() {
                        self.warn(
                            label,
                            &at,
                            "sectionName and port select a listener; a waypoint has one, so \
                             they are ignored",
                        );
                    }
                    Parent::Gateway {
                        namespace,
                        name: p.name.clone(),
                    }
                }
                _ => {
                    self.warn(
                        label,
                        &at,
                        format!(
                            "{group:?}/{kind} is neither a Service (group \"\") nor a Gateway; \
                             this parentRef is ignored"
                        ),
                    );
                    continue;
                }
            };
            if !out.contains(&parent) {
                out.push(parent);
            }
        }
        if out.is_empty() {
            self.warn(
                label,
                "spec.parentRefs",
                "attached to no Service or Gateway; the route is never used",
            );
        }
        Ok(out)
    }

    fn rule(
        &mut self,
        r: wire::Rule,
        index: usize,
        ns: &str,
        label: &str,
    ) -> Result<Rule, ConfigError> {
        let at = format!("spec.rules[{index}]");
        if r.matches.len() > MAX_MATCHES {
            return Err(self.error(label, &format!("{at}.matches"), too_many(MAX_MATCHES)));
        }
        let mut matches = Vec::with_capacity(r.matches.len().max(1));
        for (j, m) in r.matches.into_iter().enumerate() {
            matches.push(self.route_match(m, &format!("{at}.matches[{j}]"), label)?);
        }
        if matches.is_empty() {
            matches.push(default_match());
        }

        let set = self.filters(r.filters, &at, ns, label, Level::Rule)?;
        if set.filters.redirect.is_some() && !r.backend_refs.is_empty() {
            return Err(self.error(
                label,
                &format!("{at}.backendRefs"),
                "a rule with a RequestRedirect filter must not have backendRefs",
            ));
        }
        if r.backend_refs.len() > MAX_BACKENDS {
            return Err(self.error(label, &format!("{at}.backendRefs"), too_many(MAX_BACKENDS)));
        }
        let mut backends = Vec::with_capacity(r.backend_refs.len());
        for (k, b) in r.backend_refs.into_iter().enumerate() {
            backends.push(self.backend(b, &format!("{at}.backendRefs[{k}]"), ns, label)?);
        }
        let one_prefix = matches.len() == 1 && matches!(matches[0].path, PathMatch::Prefix(_));
        let levels = std::iter::once((format!("{at}.filters"), &set.filters)).chain(
            backends
                .iter()
                .enumerate()
                .map(|(k, b)| (format!("{at}.backendRefs[{k}].filters"), &b.filters)),
        );
        for (field, filters) in levels {
            if filters.uses_prefix_match() && !one_prefix {
                return Err(self.error(
                    label,
                    &field,
                    "ReplacePrefixMatch needs exactly one match, and it must be a PathPrefix match",
                ));
            }
        }
        let total_weight = backends.iter().map(|b| u64::from(b.weight)).sum();
        if !backends.is_empty() && total_weight == 0 {
            self.warn(
                label,
                &format!("{at}.backendRefs"),
                "every weight is 0: requests matching this rule get 500",
            );
        }

        let timeouts = match r.timeouts {
            Some(t) => self.timeouts(t, &format!("{at}.timeouts"), label)?,
            None => Timeouts::default(),
        };
        let retry = match r.retry {
            Some(t) => Some(self.retry(t, &format!("{at}.retry"), label)?),
            None => None,
        };
        if r.session_persistence.is_some() {
            self.warn(
                label,
                &format!("{at}.sessionPersistence"),
                "session persistence is not supported; ignored",
            );
        }
        Ok(Rule {
            index,
            name: r.name,
            matches,
            filters: set.filters,
            backends,
            total_weight,
            timeouts,
            retry,
            extensions: set.extensions,
            fail_closed: set.fail_closed,
        })
    }

    fn port(&self, v: i64, label: &str, field: &str) -> Result<u16, ConfigError> {
        u16::try_from(v)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| self.error(label, field, format!("{v} is out of range 1-65535")))
    }
}
