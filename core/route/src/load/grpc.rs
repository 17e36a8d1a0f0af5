//! `GRPCRoute` (v1): read into the HTTPRoute form, since a gRPC call is an HTTP/2 POST to
//! `/<service>/<method>`. A method match becomes a path match; headers match as in HTTPRoute.

use super::*;

/// Filters a GRPCRoute may use (the CRD's enum).
const GRPC_FILTERS: [&str; 4] = [
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestMirror",
    "ExtensionRef",
];

// === impl Loader ===

impl Loader {
    pub(super) fn grpc_route(
        &mut self,
        obj: &Object,
        ns: String,
        name: String,
        label: &str,
    ) -> Result<(), ConfigError> {
        let spec: wire::GrpcRouteSpec = self.report.decode(obj.spec.clone(), label, "spec")?;
        let mut rules = Vec::with_capacity(spec.rules.len());
        for (i, r) in spec.rules.into_iter().enumerate() {
            let at = format!("spec.rules[{i}]");
            let filters =
                |b: &[wire::Filter]| b.iter().position(|f| !GRPC_FILTERS.contains(&&*f.kind));
            let bad = filters(&r.filters)
                .map(|k| format!("{at}.filters[{k}]"))
                .or_else(|| {
                    r.backend_refs.iter().enumerate().find_map(|(j, b)| {
                        filters(&b.filters).map(|k| format!("{at}.backendRefs[{j}].filters[{k}]"))
                    })
                });
            if let Some(field) = bad {
                return Err(self.error(
                    label,
                    &format!("{field}.type"),
                    format!("a GRPCRoute filter is one of {}", GRPC_FILTERS.join(", ")),
                ));
            }
            let mut matches = Vec::with_capacity(r.matches.len());
            for (j, m) in r.matches.into_iter().enumerate() {
                let field = format!("{at}.matches[{j}].method");
                let path = match m.method {
                    None => None,
                    Some(method) => Some(self.grpc_method(method, &field, label)?),
                };
                matches.push(wire::Match {
                    path,
                    headers: m.headers,
                    query_params: Vec::new(),
                    method: None,
                });
            }
            rules.push(wire::Rule {
                name: r.name,
                matches,
                filters: r.filters,
                backend_refs: r.backend_refs,
                timeouts: None,
                retry: None,
                session_persistence: r.session_persistence,
            });
        }
        let spec = wire::RouteSpec {
            parent_refs: spec.parent_refs,
            hostnames: spec.hostnames,
            rules,
        };
        self.route(obj, RouteKind::Grpc, ns, name, label, spec)
    }

    /// A method match as a path match on `/<service>/<method>`: exact when both are given,
    /// a prefix for a service alone, a regular expression otherwise.
    fn grpc_method(
        &self,
        m: wire::GrpcMethod,
        at: &str,
        label: &str,
    ) -> Result<wire::PathMatch, ConfigError> {
        let service = m.service.filter(|s| !s.is_empty());
        let method = m.method.filter(|s| !s.is_empty());
        let (kind, value) = match m.kind.as_deref().unwrap_or("Exact") {
            "Exact" => {
                for (field, v) in [("service", &service), ("method", &method)] {
                    if let Some(v) = v
                        && !v
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
                    {
                        return Err(self.error(
                            label,
                            &format!("{at}.{field}"),
                            format!("{v:?} is not a gRPC {field} name"),
                        ));
                    }
                }
                match (service, method) {
                    (Some(s), Some(m)) => ("Exact", format!("/{s}/{m}")),
                    (Some(s), None) => ("PathPrefix", format!("/{s}")),
                    (None, Some(m)) => {
                        ("RegularExpression", format!("/[^/]+/{}", regex::escape(&m)))
                    }
                    (None, None) => {
                        return Err(self.error(
                            label,
                            at,
                            "an Exact method match needs a service, a method or both",
                        ));
                    }
                }
            }
            "RegularExpression" => {
                let part = |v: Option<String>| {
                    v.map_or_else(|| "[^/]+".to_owned(), |v| format!("(?:{v})"))
                };
                (
                    "RegularExpression",
                    format!("/{}/{}", part(service), part(method)),
                )
            }
            other => {
                return Err(self.error(
                    label,
                    &format!("{at}.type"),
                    format!("{other:?} is not Exact or RegularExpression"),
                ));
            }
        };
        Ok(wire::PathMatch {
            kind: Some(kind.to_owned()),
            value: Some(value),
        })
    }
}
