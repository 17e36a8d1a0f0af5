//! YAML → compiled routes. Everything the API server would reject (CEL rules, enums, ranges,
//! limits) is an error naming the object and the field; what ambit accepts but does not
//! (fully) apply, and fields it does not know, are warnings.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use regex::{Regex, RegexBuilder};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

use crate::duration;
use crate::model::{
    Backend, ExtensionKind, ExtensionRef, Fault, Filters, HeaderMatch, HeaderModifier, Match,
    Mirror, Parent, PathMatch, PathModifier, QueryMatch, Redirect, Retry, Rewrite, Route, Rule,
    Scheme, Timeouts, ValueMatch, WeightedBackend,
};
use crate::ratelimit::RateLimit;
use crate::rng::Fraction;

mod wire;

/// Something in the YAML that was accepted with a caveat, or skipped. Never silent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadWarning {
    /// The file name given to [`RouteTable::parse`](crate::RouteTable::parse).
    pub file: String,
    /// `Kind namespace/name`, or `document N` when the object has no readable name.
    pub object: String,
    /// The field path, e.g. `spec.rules[0].filters[1].cors`.
    pub field: String,
    /// What happens instead.
    pub message: String,
}

/// A document that could not be loaded: names the file, the object and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {object}: {field}: {message}")]
#[non_exhaustive]
pub struct LoadError {
    /// The file name given to [`RouteTable::parse`](crate::RouteTable::parse).
    pub file: String,
    /// `Kind namespace/name`, or `document N` when the object has no readable name.
    pub object: String,
    /// The field path (`spec.rules[0].matches[1].path.value`), or empty for the whole document.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

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
    pub(crate) warnings: Vec<LoadWarning>,
}

/// The API group of the waypoint Gateway and of HTTPRoute.
const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Object {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    spec: Value,
    #[serde(default)]
    items: Vec<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
    creation_timestamp: Option<String>,
}

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
pub(crate) fn parse(yaml: &str, file: &str) -> Result<Parsed, LoadError> {
    let mut loader = Loader {
        file,
        out: Parsed::default(),
    };
    ambit_yaml::check(yaml).map_err(|e| loader.error("document", "", e.to_string()))?;
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
        let at = format!("document {}", i + 1);
        let value = Value::deserialize(doc)
            .map_err(|e| loader.error(&at, "", format!("not valid YAML: {e}")))?;
        loader.document(value, &at)?;
    }
    Ok(loader.out)
}

struct Loader<'f> {
    file: &'f str,
    out: Parsed,
}

// === impl Loader ===

impl Loader<'_> {
    fn error(&self, object: &str, field: &str, message: impl Into<String>) -> LoadError {
        LoadError {
            file: self.file.to_owned(),
            object: object.to_owned(),
            field: field.to_owned(),
            message: message.into(),
        }
    }

    fn warn(&mut self, object: &str, field: &str, message: impl Into<String>) {
        self.out.warnings.push(LoadWarning {
            file: self.file.to_owned(),
            object: object.to_owned(),
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// Deserialises `value` with the failing field's path in any error, and warns about every
    /// field of the input that the wire type does not have.
    fn decode<T: DeserializeOwned + Serialize>(
        &mut self,
        value: Value,
        object: &str,
        prefix: &str,
    ) -> Result<T, LoadError> {
        let parsed: T = serde_path_to_error::deserialize(value.clone()).map_err(|e| {
            let path = e.path().to_string();
            let field = match (prefix.is_empty(), path.as_str()) {
                (_, ".") => prefix.to_owned(),
                (true, p) => p.to_owned(),
                (false, p) => format!("{prefix}.{p}"),
            };
            self.error(object, &field, e.into_inner().to_string())
        })?;
        if let Ok(known) = serde_yaml_ng::to_value(&parsed) {
            let mut unknown = Vec::new();
            unknown_fields(&value, &known, prefix, &mut unknown);
            for field in unknown {
                self.warn(object, &field, "unknown field; ignored");
            }
        }
        Ok(parsed)
    }

    fn document(&mut self, value: Value, at: &str) -> Result<(), LoadError> {
        if value.is_null() {
            return Ok(());
        }
        let obj: Object = serde_path_to_error::deserialize(value).map_err(|e| {
            let field = e.path().to_string();
            self.error(
                at,
                field.trim_start_matches('.'),
                e.into_inner().to_string(),
            )
        })?;
        let kind = obj.kind.clone().unwrap_or_default();
        let api = obj.api_version.clone().unwrap_or_default();
        // `kubectl get -o yaml` output: a List (or HTTPRouteList) of objects.
        if kind.ends_with("List") {
            for (j, item) in obj.items.into_iter().enumerate() {
                self.document(item, &format!("{at} item {}", j + 1))?;
            }
            return Ok(());
        }
        let ns = obj
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let group = api.split_once('/').map_or("", |(g, _)| g);
        let ours = matches!(
            (group, kind.as_str()),
            (GATEWAY_GROUP, "HTTPRoute") | (AMBIT_GROUP, "Fault" | "LocalRateLimit")
        );
        if !ours {
            let object = match &obj.metadata.name {
                Some(name) => format!("{kind} {ns}/{name}"),
                None => format!("{kind} in {at}"),
            };
            self.warn(
                &object,
                "kind",
                format!("{api} {kind} is not an HTTPRoute or an ambit.dev extension; skipped"),
            );
            return Ok(());
        }
        let Some(name) = obj.metadata.name.clone() else {
            return Err(self.error(&format!("{kind} in {at}"), "metadata.name", "missing"));
        };
        let label = format!("{kind} {ns}/{name}");
        match (kind.as_str(), api.as_str()) {
            ("HTTPRoute", "gateway.networking.k8s.io/v1" | "gateway.networking.k8s.io/v1beta1") => {
                self.http_route(obj, ns, name, &label)
            }
            ("HTTPRoute", _) => Err(self.error(
                &label,
                "apiVersion",
                format!("{api:?} is not supported; use gateway.networking.k8s.io/v1"),
            )),
            (_, AMBIT_API) => {
                let key = format!("{ns}/{name}");
                if kind == "Fault" {
                    let spec = self.fault(obj.spec, &label)?;
                    self.out.faults.push(Ext {
                        key,
                        file: self.file.to_owned(),
                        spec: Arc::new(spec),
                    });
                } else {
                    let spec = self.rate_limit(obj.spec, &label)?;
                    self.out.rate_limits.push(Ext {
                        key,
                        file: self.file.to_owned(),
                        spec,
                    });
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
        obj: Object,
        ns: String,
        name: String,
        label: &str,
    ) -> Result<(), LoadError> {
        let spec: wire::RouteSpec = self.decode(obj.spec, label, "spec")?;
        let created = match obj.metadata.creation_timestamp {
            None => None,
            Some(ts) => {
                let parsed = rfc3339(&ts);
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
            namespace: ns,
            file: self.file.to_owned(),
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
    ) -> Result<Vec<Parent>, LoadError> {
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
                    if namespace != ns {
                        self.warn(
                            label,
                            &format!("{at}.namespace"),
                            format!(
                                "a consumer route (Service in {namespace}, route in {ns}) applies \
                                 only to clients in {ns} in Istio; a waypoint cannot tell, and \
                                 ambit applies it to every client"
                            ),
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
    ) -> Result<Rule, LoadError> {
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
        let prefix_modifier =
            |m: &Option<PathModifier>| matches!(m, Some(PathModifier::ReplacePrefixMatch(_)));
        let uses_prefix = set
            .filters
            .redirect
            .as_ref()
            .is_some_and(|r| prefix_modifier(&r.path))
            || set
                .filters
                .rewrite
                .as_ref()
                .is_some_and(|r| prefix_modifier(&r.path));
        if uses_prefix && !(matches.len() == 1 && matches!(matches[0].path, PathMatch::Prefix(_))) {
            return Err(self.error(
                label,
                &format!("{at}.filters"),
                "ReplacePrefixMatch needs exactly one match, and it must be a PathPrefix match",
            ));
        }

        if r.backend_refs.len() > MAX_BACKENDS {
            return Err(self.error(label, &format!("{at}.backendRefs"), too_many(MAX_BACKENDS)));
        }
        let mut backends = Vec::with_capacity(r.backend_refs.len());
        for (k, b) in r.backend_refs.into_iter().enumerate() {
            backends.push(self.backend(b, &format!("{at}.backendRefs[{k}]"), ns, label)?);
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

    fn route_match(&mut self, m: wire::Match, at: &str, label: &str) -> Result<Match, LoadError> {
        let path = match m.path {
            None => PathMatch::Prefix("".into()),
            Some(p) => self.path_match(p, &format!("{at}.path"), label)?,
        };
        let method = match m.method {
            None => None,
            Some(s) => Some(method(&s).map_err(|e| self.error(label, &format!("{at}.method"), e))?),
        };

        if m.headers.len() > MAX_HEADER_MATCHES {
            return Err(self.error(
                label,
                &format!("{at}.headers"),
                too_many(MAX_HEADER_MATCHES),
            ));
        }
        let mut headers: Vec<HeaderMatch> = Vec::with_capacity(m.headers.len());
        for (k, h) in m.headers.into_iter().enumerate() {
            let f = format!("{at}.headers[{k}]");
            let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
                self.error(
                    label,
                    &format!("{f}.name"),
                    format!("{:?} is not a valid header name", h.name),
                )
            })?;
            let value = self.value_match(h.kind.as_deref(), h.value, &f, label)?;
            if headers.iter().any(|x| x.name == name) {
                self.warn(
                    label,
                    &f,
                    format!("a second match on header {name}; only the first counts"),
                );
                continue;
            }
            headers.push(HeaderMatch { name, value });
        }

        if m.query_params.len() > MAX_QUERY_MATCHES {
            return Err(self.error(
                label,
                &format!("{at}.queryParams"),
                too_many(MAX_QUERY_MATCHES),
            ));
        }
        let mut query: Vec<QueryMatch> = Vec::with_capacity(m.query_params.len());
        for (k, q) in m.query_params.into_iter().enumerate() {
            let f = format!("{at}.queryParams[{k}]");
            if q.name.is_empty() {
                return Err(self.error(label, &format!("{f}.name"), "must not be empty"));
            }
            let value = self.value_match(q.kind.as_deref(), q.value, &f, label)?;
            if query.iter().any(|x| *x.name == *q.name) {
                self.warn(
                    label,
                    &f,
                    format!(
                        "a second match on query parameter {:?}; only the first counts",
                        q.name
                    ),
                );
                continue;
            }
            query.push(QueryMatch {
                name: q.name.into(),
                value,
            });
        }
        Ok(Match {
            path,
            method,
            headers: headers.into(),
            query: query.into(),
        })
    }

    fn path_match(
        &mut self,
        p: wire::PathMatch,
        at: &str,
        label: &str,
    ) -> Result<PathMatch, LoadError> {
        let value = p.value.unwrap_or_else(|| "/".into());
        let value_field = format!("{at}.value");
        match p.kind.as_deref().unwrap_or("PathPrefix") {
            "Exact" => {
                check_match_path(&value).map_err(|m| self.error(label, &value_field, m))?;
                Ok(PathMatch::Exact(value.into()))
            }
            "PathPrefix" => {
                check_match_path(&value).map_err(|m| self.error(label, &value_field, m))?;
                Ok(PathMatch::Prefix(value.trim_end_matches('/').into()))
            }
            "RegularExpression" => Ok(PathMatch::Regex(
                full_match_regex(&value).map_err(|m| self.error(label, &value_field, m))?,
            )),
            other => Err(self.error(
                label,
                &format!("{at}.type"),
                format!(
                    "unknown path match type {other:?} (Exact, PathPrefix or RegularExpression)"
                ),
            )),
        }
    }

    fn value_match(
        &mut self,
        kind: Option<&str>,
        value: String,
        at: &str,
        label: &str,
    ) -> Result<ValueMatch, LoadError> {
        let value_field = format!("{at}.value");
        if value.is_empty() || value.len() > 4096 {
            return Err(self.error(label, &value_field, "must be 1 to 4096 characters"));
        }
        match kind.unwrap_or("Exact") {
            "Exact" => Ok(ValueMatch::Exact(value.into())),
            "RegularExpression" => Ok(ValueMatch::Regex(
                full_match_regex(&value).map_err(|m| self.error(label, &value_field, m))?,
            )),
            other => Err(self.error(
                label,
                &format!("{at}.type"),
                format!("unknown match type {other:?} (Exact or RegularExpression)"),
            )),
        }
    }

    fn filters(
        &mut self,
        list: Vec<wire::Filter>,
        at: &str,
        ns: &str,
        label: &str,
        level: Level,
    ) -> Result<FilterSet, LoadError> {
        let list_field = format!("{at}.filters");
        if list.len() > MAX_FILTERS {
            return Err(self.error(label, &list_field, too_many(MAX_FILTERS)));
        }
        let mut out = FilterSet::default();
        let mut seen = BTreeSet::new();
        for (k, f) in list.into_iter().enumerate() {
            let fat = format!("{list_field}[{k}]");
            const KINDS: [(&str, &str); 8] = [
                ("RequestHeaderModifier", "requestHeaderModifier"),
                ("ResponseHeaderModifier", "responseHeaderModifier"),
                ("RequestRedirect", "requestRedirect"),
                ("URLRewrite", "urlRewrite"),
                ("RequestMirror", "requestMirror"),
                ("CORS", "cors"),
                ("ExternalAuth", "externalAuth"),
                ("ExtensionRef", "extensionRef"),
            ];
            if !KINDS.iter().any(|(k, _)| *k == f.kind) {
                return Err(self.error(
                    label,
                    &format!("{fat}.type"),
                    format!(
                        "unknown filter type {:?} (RequestHeaderModifier, ResponseHeaderModifier, \
                         RequestRedirect, URLRewrite, RequestMirror, CORS, ExternalAuth or \
                         ExtensionRef)",
                        f.kind
                    ),
                ));
            }
            let present = [
                f.request_header_modifier.is_some(),
                f.response_header_modifier.is_some(),
                f.request_redirect.is_some(),
                f.url_rewrite.is_some(),
                f.request_mirror.is_some(),
                f.cors.is_some(),
                f.external_auth.is_some(),
                f.extension_ref.is_some(),
            ];
            for ((kind, field), has) in KINDS.iter().zip(present) {
                if has && *kind != f.kind {
                    return Err(self.error(
                        label,
                        &format!("{fat}.{field}"),
                        format!("must not be set when the filter type is {}", f.kind),
                    ));
                }
                if !has && *kind == f.kind {
                    return Err(self.error(
                        label,
                        &format!("{fat}.{field}"),
                        format!("must be set for a {kind} filter"),
                    ));
                }
            }
            let repeatable = matches!(f.kind.as_str(), "RequestMirror" | "ExtensionRef");
            if !repeatable && !seen.insert(f.kind.clone()) {
                return Err(self.error(
                    label,
                    &fat,
                    format!("a {} filter cannot be repeated", f.kind),
                ));
            }
            if let Some(h) = f.request_header_modifier {
                let m = self.header_modifier(h, &format!("{fat}.requestHeaderModifier"), label)?;
                out.filters.request_headers = Some(m);
            }
            if let Some(h) = f.response_header_modifier {
                let m = self.header_modifier(h, &format!("{fat}.responseHeaderModifier"), label)?;
                out.filters.response_headers = Some(m);
            }
            if let Some(r) = f.request_redirect {
                let r = self.redirect(r, &format!("{fat}.requestRedirect"), label)?;
                out.filters.redirect = Some(r);
            }
            if let Some(r) = f.url_rewrite {
                let r = self.rewrite(r, &format!("{fat}.urlRewrite"), label)?;
                out.filters.rewrite = Some(r);
            }
            if let Some(m) = f.request_mirror
                && let Some(m) = self.mirror(m, &format!("{fat}.requestMirror"), ns, label)?
            {
                out.filters.mirrors.push(m);
            }
            if f.cors.is_some() {
                self.warn(
                    label,
                    &format!("{fat}.cors"),
                    "CORS is not implemented by ambit; the filter is ignored",
                );
            }
            if f.external_auth.is_some() {
                out.fail_closed = true;
                self.warn(
                    label,
                    &format!("{fat}.externalAuth"),
                    "ExternalAuth is not implemented by ambit; as the filter must fail closed, \
                     requests it applies to get 500",
                );
            }
            if let Some(r) = f.extension_ref {
                let kind = match (r.group.as_str(), r.kind.as_str(), level) {
                    (AMBIT_GROUP, "Fault", Level::Rule) => Some(ExtensionKind::Fault),
                    (AMBIT_GROUP, "LocalRateLimit", Level::Rule) => {
                        Some(ExtensionKind::LocalRateLimit)
                    }
                    _ => None,
                };
                let field = format!("{fat}.extensionRef");
                match kind {
                    Some(kind) => {
                        if out.extensions.iter().any(|e| e.kind == kind) {
                            return Err(self.error(
                                label,
                                &field,
                                format!("at most one {} per rule", r.kind),
                            ));
                        }
                        out.extensions.push(ExtensionRef {
                            kind,
                            name: r.name,
                            field,
                        });
                    }
                    None => {
                        out.fail_closed = true;
                        let place = match level {
                            Level::Rule => "",
                            Level::Backend => " on a backendRef",
                        };
                        self.warn(
                            label,
                            &field,
                            format!(
                                "{}/{} {:?}{place} is not a filter ambit implements; Gateway API \
                                 forbids skipping it, so requests it applies to get 500",
                                r.group, r.kind, r.name
                            ),
                        );
                    }
                }
            }
        }
        if out.filters.redirect.is_some() && out.filters.rewrite.is_some() {
            return Err(self.error(
                label,
                &list_field,
                "RequestRedirect and URLRewrite cannot be used in the same rule",
            ));
        }
        if level == Level::Backend {
            // Backend-level filters are implementation-specific; ambit applies the header
            // modifiers. A redirect or rewrite changes where the request goes, so it must not be
            // skipped; a mirror is only lost observability, so it is.
            if out.filters.redirect.is_some() || out.filters.rewrite.is_some() {
                out.fail_closed = true;
                self.warn(
                    label,
                    &list_field,
                    "RequestRedirect and URLRewrite are supported on rules, not on backendRefs; \
                     requests sent to this backend get 500",
                );
            }
            if !out.filters.mirrors.is_empty() {
                self.warn(
                    label,
                    &list_field,
                    "RequestMirror is supported on rules, not on backendRefs; ignored",
                );
            }
        }
        Ok(out)
    }

    fn header_modifier(
        &mut self,
        h: wire::HeaderFilter,
        at: &str,
        label: &str,
    ) -> Result<HeaderModifier, LoadError> {
        let mut out = HeaderModifier::default();
        let mut names: Vec<HeaderName> = Vec::new();
        let mut claim = |this: &Self, name: &str, field: &str| -> Result<HeaderName, LoadError> {
            let parsed = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                this.error(label, field, format!("{name:?} is not a valid header name"))
            })?;
            if names.contains(&parsed) {
                return Err(this.error(
                    label,
                    field,
                    format!("header {parsed} has more than one action; only one is allowed"),
                ));
            }
            names.push(parsed.clone());
            Ok(parsed)
        };
        for (list, key) in [(h.set, "set"), (h.add, "add")] {
            if list.len() > MAX_HEADER_EDITS {
                return Err(self.error(label, &format!("{at}.{key}"), too_many(MAX_HEADER_EDITS)));
            }
            for (i, header) in list.into_iter().enumerate() {
                let field = format!("{at}.{key}[{i}]");
                let name = claim(self, &header.name, &format!("{field}.name"))?;
                let value = HeaderValue::from_str(&header.value).map_err(|_| {
                    self.error(
                        label,
                        &format!("{field}.value"),
                        format!("{:?} is not a valid header value", header.value),
                    )
                })?;
                match key {
                    "set" => out.set.push((name, value)),
                    _ => out.add.push((name, value)),
                }
            }
        }
        if h.remove.len() > MAX_HEADER_EDITS {
            return Err(self.error(label, &format!("{at}.remove"), too_many(MAX_HEADER_EDITS)));
        }
        for (i, name) in h.remove.iter().enumerate() {
            let name = claim(self, name, &format!("{at}.remove[{i}]"))?;
            out.remove.push(name);
        }
        Ok(out)
    }

    fn redirect(
        &mut self,
        r: wire::Redirect,
        at: &str,
        label: &str,
    ) -> Result<Redirect, LoadError> {
        let scheme = match r.scheme.as_deref() {
            None => None,
            Some("http") => Some(Scheme::Http),
            Some("https") => Some(Scheme::Https),
            Some(other) => {
                return Err(self.error(
                    label,
                    &format!("{at}.scheme"),
                    format!("unknown scheme {other:?} (http or https)"),
                ));
            }
        };
        if let Some(h) = &r.hostname {
            check_hostname(h, false)
                .map_err(|m| self.error(label, &format!("{at}.hostname"), m))?;
        }
        let path = match r.path {
            Some(p) => Some(self.path_modifier(p, &format!("{at}.path"), label)?),
            None => None,
        };
        let port = match r.port {
            Some(p) => Some(self.port(p, label, &format!("{at}.port"))?),
            None => None,
        };
        let status = match r.status_code.unwrap_or(302) {
            c @ (301 | 302 | 303 | 307 | 308) => {
                StatusCode::from_u16(c as u16).unwrap_or(StatusCode::FOUND)
            }
            other => {
                return Err(self.error(
                    label,
                    &format!("{at}.statusCode"),
                    format!("{other} is not a redirect status (301, 302, 303, 307 or 308)"),
                ));
            }
        };
        Ok(Redirect {
            scheme,
            hostname: r.hostname,
            path,
            port,
            status,
        })
    }

    fn rewrite(&mut self, r: wire::Rewrite, at: &str, label: &str) -> Result<Rewrite, LoadError> {
        let hostname = match &r.hostname {
            None => None,
            Some(h) => {
                let field = format!("{at}.hostname");
                check_hostname(h, false).map_err(|m| self.error(label, &field, m))?;
                Some(HeaderValue::from_str(h).map_err(|_| {
                    self.error(label, &field, format!("{h:?} is not a valid Host value"))
                })?)
            }
        };
        let path = match r.path {
            Some(p) => Some(self.path_modifier(p, &format!("{at}.path"), label)?),
            None => None,
        };
        Ok(Rewrite { hostname, path })
    }

    fn path_modifier(
        &mut self,
        p: wire::PathModifier,
        at: &str,
        label: &str,
    ) -> Result<PathModifier, LoadError> {
        let check = |this: &Self, value: &str, field: &str, empty_ok: bool| {
            if empty_ok && value.is_empty() {
                return Ok(());
            }
            check_replacement_path(value)
                .map_err(|m| this.error(label, &format!("{at}.{field}"), m))
        };
        match (p.kind.as_str(), p.replace_full_path, p.replace_prefix_match) {
            ("ReplaceFullPath", Some(full), None) => {
                check(self, &full, "replaceFullPath", false)?;
                Ok(PathModifier::ReplaceFullPath(full))
            }
            ("ReplacePrefixMatch", None, Some(prefix)) => {
                check(self, &prefix, "replacePrefixMatch", true)?;
                Ok(PathModifier::ReplacePrefixMatch(
                    prefix.trim_end_matches('/').to_owned(),
                ))
            }
            ("ReplaceFullPath", _, Some(_)) => Err(self.error(
                label,
                &format!("{at}.replacePrefixMatch"),
                "must not be set when type is ReplaceFullPath",
            )),
            ("ReplaceFullPath", None, _) => Err(self.error(
                label,
                &format!("{at}.replaceFullPath"),
                "must be set when type is ReplaceFullPath",
            )),
            ("ReplacePrefixMatch", Some(_), _) => Err(self.error(
                label,
                &format!("{at}.replaceFullPath"),
                "must not be set when type is ReplacePrefixMatch",
            )),
            ("ReplacePrefixMatch", None, None) => Err(self.error(
                label,
                &format!("{at}.replacePrefixMatch"),
                "must be set when type is ReplacePrefixMatch",
            )),
            (other, _, _) => Err(self.error(
                label,
                &format!("{at}.type"),
                format!(
                    "unknown path modifier type {other:?} (ReplaceFullPath or ReplacePrefixMatch)"
                ),
            )),
        }
    }

    fn mirror(
        &mut self,
        m: wire::Mirror,
        at: &str,
        ns: &str,
        label: &str,
    ) -> Result<Option<Mirror>, LoadError> {
        let fraction = match (m.percent, m.fraction) {
            (Some(_), Some(_)) => {
                return Err(self.error(label, at, "only one of percent and fraction may be set"));
            }
            (Some(p), None) => {
                if !(0..=100).contains(&p) {
                    return Err(self.error(
                        label,
                        &format!("{at}.percent"),
                        format!("{p} is out of range 0-100"),
                    ));
                }
                Fraction::new(p as u64, 100)
            }
            (None, Some(f)) => {
                let den = f.denominator.unwrap_or(100);
                if den < 1 || f.numerator < 0 || f.numerator > den || den > i64::from(i32::MAX) {
                    return Err(self.error(
                        label,
                        &format!("{at}.fraction"),
                        format!(
                            "{}/{den} is not a fraction (denominator at least 1, numerator \
                             0 to denominator)",
                            f.numerator
                        ),
                    ));
                }
                Fraction::new(f.numerator as u64, den as u64)
            }
            (None, None) => Fraction::ALWAYS,
        };
        let r = m.backend_ref;
        let field = format!("{at}.backendRef");
        let Some(backend) = self.service_ref(
            r.group.as_deref(),
            r.kind.as_deref(),
            r.name,
            r.namespace,
            r.port,
            ns,
            &field,
            label,
        )?
        else {
            self.warn(
                label,
                &field,
                "only Services can be mirrored to; this mirror is dropped",
            );
            return Ok(None);
        };
        Ok(Some(Mirror { backend, fraction }))
    }

    fn backend(
        &mut self,
        b: wire::BackendRef,
        at: &str,
        ns: &str,
        label: &str,
    ) -> Result<WeightedBackend, LoadError> {
        let weight = b.weight.unwrap_or(1);
        if !(0..=MAX_WEIGHT).contains(&weight) {
            return Err(self.error(
                label,
                &format!("{at}.weight"),
                format!("{weight} is out of range 0-{MAX_WEIGHT}"),
            ));
        }
        let set = self.filters(b.filters, at, ns, label, Level::Backend)?;
        let backend = self.service_ref(
            b.group.as_deref(),
            b.kind.as_deref(),
            b.name,
            b.namespace,
            b.port,
            ns,
            at,
            label,
        )?;
        if backend.is_none() {
            self.warn(
                label,
                at,
                "only Services are supported as backends; requests sent to this one get 500",
            );
        }
        Ok(WeightedBackend {
            backend,
            weight: weight as u32,
            request_headers: set.filters.request_headers,
            response_headers: set.filters.response_headers,
            fail_closed: set.fail_closed,
        })
    }

    /// A `BackendObjectReference` to a Service; `None` for any other kind.
    #[allow(clippy::too_many_arguments)]
    fn service_ref(
        &mut self,
        group: Option<&str>,
        kind: Option<&str>,
        name: String,
        namespace: Option<String>,
        port: Option<i64>,
        ns: &str,
        at: &str,
        label: &str,
    ) -> Result<Option<Backend>, LoadError> {
        let port = match port {
            Some(p) => Some(self.port(p, label, &format!("{at}.port"))?),
            None => None,
        };
        if !matches!(
            (group.unwrap_or(""), kind.unwrap_or("Service")),
            ("", "Service")
        ) {
            return Ok(None);
        }
        if port.is_none() {
            self.warn(
                label,
                &format!("{at}.port"),
                "a Service backend needs a port; the port the request was sent to is used",
            );
        }
        Ok(Some(Backend {
            namespace: namespace.unwrap_or_else(|| ns.to_owned()),
            name,
            port,
        }))
    }

    fn timeouts(
        &mut self,
        t: wire::Timeouts,
        at: &str,
        label: &str,
    ) -> Result<Timeouts, LoadError> {
        let parse = |this: &Self, v: &Option<String>, field: &str| -> Result<_, LoadError> {
            v.as_deref()
                .map(|s| {
                    duration::parse(s).map_err(|m| this.error(label, &format!("{at}.{field}"), m))
                })
                .transpose()
        };
        let request = parse(self, &t.request, "request")?;
        let backend_request = parse(self, &t.backend_request, "backendRequest")?;
        if let (Some(r), Some(b)) = (request, backend_request)
            && !r.is_zero()
            && b > r
        {
            return Err(self.error(
                label,
                &format!("{at}.backendRequest"),
                format!(
                    "backendRequest ({}) cannot be longer than request ({})",
                    t.backend_request.as_deref().unwrap_or_default(),
                    t.request.as_deref().unwrap_or_default()
                ),
            ));
        }
        let enabled = |d: Option<Duration>| d.filter(|d| !d.is_zero());
        Ok(Timeouts {
            request: enabled(request),
            backend_request: enabled(backend_request),
        })
    }

    fn retry(&mut self, r: wire::Retry, at: &str, label: &str) -> Result<Retry, LoadError> {
        let mut codes = Vec::with_capacity(r.codes.len());
        for (i, c) in r.codes.iter().enumerate() {
            let field = format!("{at}.codes[{i}]");
            let code = u16::try_from(*c)
                .ok()
                .filter(|c| (400..=599).contains(c))
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| self.error(label, &field, format!("{c} is out of range 400-599")))?;
            if codes.contains(&code) {
                return Err(self.error(label, &field, format!("{c} is listed twice")));
            }
            codes.push(code);
        }
        let attempts = match r.attempts {
            None => 2,
            Some(a) => u32::try_from(a).map_err(|_| {
                self.error(
                    label,
                    &format!("{at}.attempts"),
                    format!("{a} is not a number of attempts (0 or more)"),
                )
            })?,
        };
        let backoff = match r.backoff.as_deref() {
            None => None,
            Some(s) => Some(
                duration::parse(s).map_err(|m| self.error(label, &format!("{at}.backoff"), m))?,
            ),
        };
        Ok(Retry {
            attempts,
            codes,
            backoff,
        })
    }

    fn fault(&mut self, spec: Value, label: &str) -> Result<Fault, LoadError> {
        let spec: wire::FaultSpec = self.decode(spec, label, "spec")?;
        let delay = match spec.delay {
            None => None,
            Some(d) => {
                let Some(fixed) = d.fixed_delay else {
                    return Err(self.error(label, "spec.delay.fixedDelay", "missing"));
                };
                let fixed = duration::parse_proto_or_gateway(&fixed)
                    .map_err(|m| self.error(label, "spec.delay.fixedDelay", m))?;
                let fraction = self.percentage(
                    d.percentage.as_ref(),
                    "spec.delay.percentage",
                    label,
                    "delayed",
                )?;
                Some((fixed, fraction))
            }
        };
        let abort = match spec.abort {
            None => None,
            Some(a) => match (a.http_status, a.grpc_status) {
                (Some(status), _) => {
                    let status = u16::try_from(status)
                        .ok()
                        .filter(|s| (200..=599).contains(s))
                        .and_then(|s| StatusCode::from_u16(s).ok())
                        .ok_or_else(|| {
                            self.error(
                                label,
                                "spec.abort.httpStatus",
                                format!("{status} is out of range 200-599"),
                            )
                        })?;
                    let fraction = self.percentage(
                        a.percentage.as_ref(),
                        "spec.abort.percentage",
                        label,
                        "aborted",
                    )?;
                    Some((status, fraction))
                }
                (None, Some(_)) => {
                    self.warn(
                        label,
                        "spec.abort.grpcStatus",
                        "gRPC aborts are not supported; the abort is ignored",
                    );
                    None
                }
                (None, None) => {
                    return Err(self.error(label, "spec.abort.httpStatus", "missing"));
                }
            },
        };
        if delay.is_none() && abort.is_none() {
            self.warn(
                label,
                "spec",
                "neither a delay nor an abort: this Fault does nothing",
            );
        }
        Ok(Fault { delay, abort })
    }

    /// Istio's `percentage: {value: 12.5}`, or a bare number. Absent means no request, as in
    /// Istio (and a warning, since it is rarely what was meant).
    fn percentage(
        &mut self,
        v: Option<&Value>,
        at: &str,
        label: &str,
        what: &str,
    ) -> Result<Fraction, LoadError> {
        let Some(v) = v else {
            self.warn(
                label,
                at,
                format!(
                    "no percentage: as in Istio, no request is {what} (set percentage: {{value: 100}})"
                ),
            );
            return Ok(Fraction::new(0, 1));
        };
        let n = match v {
            Value::Number(n) => n.as_f64(),
            Value::Mapping(m) => m.get("value").and_then(Value::as_f64),
            _ => None,
        };
        match n {
            Some(p) if (0.0..=100.0).contains(&p) => Ok(Fraction::from_percent(p)),
            _ => Err(self.error(
                label,
                at,
                format!(
                    "{} is not a percentage 0-100 ({{value: 12.5}} or 12.5)",
                    yaml_text(v)
                ),
            )),
        }
    }

    fn rate_limit(&mut self, spec: Value, label: &str) -> Result<RateLimit, LoadError> {
        let spec: wire::RateLimitSpec = self.decode(spec, label, "spec")?;
        let count = |this: &Self, v: Option<i64>, field: &str| -> Result<u32, LoadError> {
            v.and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    this.error(
                        label,
                        &format!("spec.{field}"),
                        match v {
                            None => "missing".to_owned(),
                            Some(n) => format!("{n} is not a positive count"),
                        },
                    )
                })
        };
        let max_tokens = count(self, spec.max_tokens, "maxTokens")?;
        let tokens_per_fill = count(self, spec.tokens_per_fill.or(Some(1)), "tokensPerFill")?;
        let Some(interval) = spec.fill_interval else {
            return Err(self.error(label, "spec.fillInterval", "missing"));
        };
        let fill_interval = duration::parse_proto_or_gateway(&interval)
            .map_err(|m| self.error(label, "spec.fillInterval", m))?;
        if fill_interval.is_zero() {
            return Err(self.error(label, "spec.fillInterval", "must be longer than 0s"));
        }
        Ok(RateLimit {
            max_tokens,
            tokens_per_fill,
            fill_interval,
        })
    }

    fn port(&self, v: i64, label: &str, field: &str) -> Result<u16, LoadError> {
        u16::try_from(v)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| self.error(label, field, format!("{v} is out of range 1-65535")))
    }
}

/// Every field of `input` (a mapping tree) that `known` (the same data, re-serialised from the
/// wire type) does not have.
fn unknown_fields(input: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Mapping(a), Value::Mapping(b)) => {
            for (k, v) in a {
                let name = yaml_text(k);
                let p = if path.is_empty() {
                    name
                } else {
                    format!("{path}.{name}")
                };
                match b.get(k) {
                    Some(kv) => unknown_fields(v, kv, &p, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Sequence(a), Value::Sequence(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                unknown_fields(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn default_match() -> Match {
    Match {
        path: PathMatch::Prefix("".into()),
        method: None,
        headers: Box::new([]),
        query: Box::new([]),
    }
}

fn too_many(max: usize) -> String {
    format!("at most {max} entries are allowed")
}

fn method(s: &str) -> Result<Method, String> {
    const METHODS: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    if !METHODS.contains(&s) {
        return Err(format!(
            "unknown method {s:?} (GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE or PATCH)"
        ));
    }
    Method::from_bytes(s.as_bytes()).map_err(|e| e.to_string())
}

/// A regular expression (Rust `regex` syntax, close to RE2's) that must match the whole value.
fn full_match_regex(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_VALUE_LEN {
        return Err(format!("longer than {MAX_VALUE_LEN} characters"));
    }
    let one_line = |e: regex::Error| {
        let text = e.to_string();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        format!("invalid regular expression {pattern:?}: {text}")
    };
    // Checked on its own first, so that an error shows the pattern as written.
    Regex::new(pattern).map_err(one_line)?;
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(one_line)
}

/// Gateway API's rules for Exact and PathPrefix values (HTTPPathMatch CEL validations).
fn check_match_path(value: &str) -> Result<(), String> {
    let fail = |why: &str| Err(format!("{value:?} is not a valid path: {why}"));
    if value.len() > MAX_VALUE_LEN {
        return fail("longer than 1024 characters");
    }
    if !value.starts_with('/') {
        return fail("must start with '/'");
    }
    for bad in ["//", "/./", "/../", "%2f", "%2F", "#"] {
        if value.contains(bad) {
            return fail(&format!("must not contain {bad:?}"));
        }
    }
    if value.ends_with("/..") || value.ends_with("/.") {
        return fail("must not end with \"/..\" or \"/.\"");
    }
    let b = value.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return fail("'%' must be followed by two hex digits");
            }
            i += 3;
            continue;
        }
        if !(c.is_ascii_alphanumeric() || b"-/._~!$&'()*+,;=:@".contains(&c)) {
            return fail(&format!("{:?} is not allowed", char::from(c)));
        }
        i += 1;
    }
    Ok(())
}

/// A replacement path must at least make a valid request target.
fn check_replacement_path(value: &str) -> Result<(), String> {
    if value.len() > MAX_VALUE_LEN {
        return Err(format!("{value:?} is longer than 1024 characters"));
    }
    if !value.starts_with('/')
        || value.contains(['?', '#'])
        || value.parse::<PathAndQuery>().is_err()
    {
        return Err(format!(
            "{value:?} is not a path (it must start with '/' and have no query or fragment)"
        ));
    }
    Ok(())
}

/// RFC 1123 DNS names as Gateway API's `Hostname` (optionally `*.`-prefixed) and
/// `PreciseHostname` types allow them: lower case, no IP addresses.
fn check_hostname(h: &str, wildcard: bool) -> Result<(), String> {
    let name = if wildcard {
        h.strip_prefix("*.").unwrap_or(h)
    } else {
        h
    };
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let ip = name
        .split('.')
        .all(|l| l.bytes().all(|c| c.is_ascii_digit()));
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) || ip {
        let kind = if wildcard {
            "a lower-case DNS name, optionally starting with \"*.\""
        } else {
            "a lower-case DNS name"
        };
        return Err(format!(
            "{h:?} is not a valid hostname ({kind}; IP addresses are not allowed)"
        ));
    }
    Ok(())
}

/// `2024-05-01T10:00:00Z` (any RFC 3339 offset, optional fraction) → seconds and nanoseconds
/// since the Unix epoch.
pub(crate) fn rfc3339(s: &str) -> Option<(i64, u32)> {
    let digits = |from: usize, len: usize| -> Option<i64> {
        let t = s.get(from..from + len)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let sep = |at: usize, any: &[u8]| s.as_bytes().get(at).is_some_and(|b| any.contains(b));
    let (y, mo, d) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (h, mi, sec) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = s.get(19..)?;
    let mut nanos = 0;
    if let Some(f) = rest.strip_prefix('.') {
        let n = f.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        nanos = format!("{:0<9}", &f[..n.min(9)]).parse().ok()?;
        rest = &f[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let t = &rest[1..];
            if t.len() != 5 || t.as_bytes()[2] != b':' {
                return None;
            }
            let oh: i64 = t[..2].parse().ok()?;
            let om: i64 = t[3..].parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    // Days from civil (Howard Hinnant's algorithm).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + sec - offset, nanos))
}

fn yaml_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => serde_yaml_ng::to_string(v)
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "?".into()),
    }
}

// === impl LoadWarning ===

impl fmt::Display for LoadWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}: {}",
            self.file, self.object, self.field, self.message
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(rfc3339("2024-03-01T00:00:00Z"), Some((1_709_251_200, 0)));
        assert_eq!(
            rfc3339("2024-03-01T01:00:00.5+01:00"),
            Some((1_709_251_200, 500_000_000))
        );
        for bad in [
            "",
            "2024-03-01",
            "2024-13-01T00:00:00Z",
            "2024-03-01T00:00:00",
            "x",
        ] {
            assert_eq!(rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn hostnames() {
        for ok in ["example.com", "a-b.example.com", "localhost", "x1"] {
            assert!(check_hostname(ok, false).is_ok(), "{ok}");
        }
        assert!(check_hostname("*.example.com", true).is_ok());
        for bad in [
            "*.example.com",
            "Example.com",
            "10.0.0.1",
            "-a.com",
            "a..com",
            "",
        ] {
            assert!(check_hostname(bad, false).is_err(), "{bad}");
        }
        assert!(check_hostname("*", true).is_err());
        assert!(check_hostname("foo.*.com", true).is_err());
    }

    #[test]
    fn match_paths() {
        for ok in ["/", "/foo", "/foo/", "/a%20b", "/~x/@y:z"] {
            assert!(check_match_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "foo", "//", "/a/./b", "/a/../b", "/a%2fb", "/a#b", "/a/..", "/a/.", "/a b", "/%zz",
        ] {
            assert!(check_match_path(bad).is_err(), "{bad}");
        }
    }
}
