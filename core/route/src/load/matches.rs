//! `matches[]`: path, header, query parameter and method matches.

use super::*;

// === impl Loader ===

impl Loader {
    pub(super) fn route_match(
        &mut self,
        m: wire::Match,
        at: &str,
        label: &str,
    ) -> Result<Match, ConfigError> {
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

    pub(super) fn path_match(
        &mut self,
        p: wire::PathMatch,
        at: &str,
        label: &str,
    ) -> Result<PathMatch, ConfigError> {
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

    pub(super) fn value_match(
        &mut self,
        kind: Option<&str>,
        value: String,
        at: &str,
        label: &str,
    ) -> Result<ValueMatch, ConfigError> {
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
}
