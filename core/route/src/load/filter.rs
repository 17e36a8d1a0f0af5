//! `filters[]` on a rule or a backendRef: header modifiers, redirects, rewrites, mirrors and
//! extension references.

use super::*;

// === impl Loader ===

impl Loader {
    pub(super) fn filters(
        &mut self,
        list: Vec<wire::Filter>,
        at: &str,
        ns: &str,
        label: &str,
        level: Level,
    ) -> Result<FilterSet, ConfigError> {
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
            if let Some(c) = f.cors {
                let field = format!("{fat}.cors");
                let cors = self.cors(c, &field, label)?;
                match level {
                    Level::Rule => out.filters.cors = Some(cors),
                    Level::Backend => self.warn(
                        label,
                        &field,
                        "CORS answers preflights before a backend is chosen, so it applies on \
                         rules; on a backendRef it is ignored",
                    ),
                }
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
        Ok(out)
    }

    pub(super) fn header_modifier(
        &mut self,
        h: wire::HeaderFilter,
        at: &str,
        label: &str,
    ) -> Result<HeaderModifier, ConfigError> {
        let mut out = HeaderModifier::default();
        let mut names: Vec<HeaderName> = Vec::new();
        let mut claim = |this: &Self, name: &str, field: &str| -> Result<HeaderName, ConfigError> {
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

    pub(super) fn redirect(
        &mut self,
        r: wire::Redirect,
        at: &str,
        label: &str,
    ) -> Result<Redirect, ConfigError> {
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

    pub(super) fn rewrite(
        &mut self,
        r: wire::Rewrite,
        at: &str,
        label: &str,
    ) -> Result<Rewrite, ConfigError> {
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

    pub(super) fn path_modifier(
        &mut self,
        p: wire::PathModifier,
        at: &str,
        label: &str,
    ) -> Result<PathModifier, ConfigError> {
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

    pub(super) fn mirror(
        &mut self,
        m: wire::Mirror,
        at: &str,
        ns: &str,
        label: &str,
    ) -> Result<Option<Mirror>, ConfigError> {
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
}
