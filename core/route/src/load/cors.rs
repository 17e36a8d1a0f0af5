//! The `CORS` filter's stanza, checked as the CRD does (origin syntax, `*` alone among origins
//! and among methods, at most 64 entries and 9 methods, `maxAge` at least 1) and compiled into the header values it answers with.

use http::HeaderValue;

use crate::cors::{Cors, OriginPattern};

use super::*;

/// At most this many entries in each list, as the CRD allows.
const MAX_CORS_ENTRIES: usize = 64;
/// At most this many `allowMethods` (the nine methods).
const MAX_CORS_METHODS: usize = 9;
/// `maxAge` when unset, in seconds (the CRD's default).
const DEFAULT_MAX_AGE: i64 = 5;

// === impl Loader ===

impl Loader {
    pub(super) fn cors(
        &mut self,
        c: wire::Cors,
        at: &str,
        label: &str,
    ) -> Result<Cors, ConfigError> {
        let lists = [
            ("allowOrigins", &c.allow_origins),
            ("allowMethods", &c.allow_methods),
            ("allowHeaders", &c.allow_headers),
            ("exposeHeaders", &c.expose_headers),
        ];
        for (field, list) in lists {
            if list.len() > MAX_CORS_ENTRIES {
                return Err(self.error(
                    label,
                    &format!("{at}.{field}"),
                    too_many(MAX_CORS_ENTRIES),
                ));
            }
            let alone = matches!(field, "allowOrigins" | "allowMethods");
            if alone && list.len() > 1 && list.iter().any(|v| v == "*") {
                return Err(self.error(
                    label,
                    &format!("{at}.{field}"),
                    "\"*\" must be the only entry when it is used",
                ));
            }
        }
        if c.allow_methods.len() > MAX_CORS_METHODS {
            return Err(self.error(
                label,
                &format!("{at}.allowMethods"),
                too_many(MAX_CORS_METHODS),
            ));
        }
        let mut origins = Vec::with_capacity(c.allow_origins.len());
        for (i, o) in c.allow_origins.iter().enumerate() {
            let p = OriginPattern::parse(o).ok_or_else(|| {
                self.error(
                    label,
                    &format!("{at}.allowOrigins[{i}]"),
                    format!("{o:?} is not \"*\" or scheme://host[:port] (the host may start with \"*.\")"),
                )
            })?;
            origins.push(p);
        }
        for (i, m) in c.allow_methods.iter().enumerate() {
            if m != "*" {
                method(m).map_err(|e| self.error(label, &format!("{at}.allowMethods[{i}]"), e))?;
            }
        }
        for (field, list) in [
            ("allowHeaders", &c.allow_headers),
            ("exposeHeaders", &c.expose_headers),
        ] {
            for (i, h) in list.iter().enumerate() {
                if h != "*" && HeaderName::from_bytes(h.as_bytes()).is_err() {
                    return Err(self.error(
                        label,
                        &format!("{at}.{field}[{i}]"),
                        format!("{h:?} is not a header name"),
                    ));
                }
            }
        }
        let max_age = c.max_age.unwrap_or(DEFAULT_MAX_AGE);
        if max_age < 1 {
            return Err(self.error(
                label,
                &format!("{at}.maxAge"),
                format!("{max_age} is below 1"),
            ));
        }
        let joined = |list: &[String]| -> Option<HeaderValue> {
            (!list.is_empty() && list.iter().all(|v| v != "*"))
                .then(|| HeaderValue::from_str(&list.join(", ")).ok())
                .flatten()
        };
        let wildcard = |list: &[String]| list.iter().any(|v| v == "*");
        let credentials = c.allow_credentials.unwrap_or(false);
        let expose = if wildcard(&c.expose_headers) {
            if credentials {
                self.warn(
                    label,
                    &format!("{at}.exposeHeaders"),
                    "browsers read \"*\" literally when credentials are allowed; only the named \
                     headers are exposed",
                );
                let named: Vec<String> = c
                    .expose_headers
                    .iter()
                    .filter(|h| *h != "*")
                    .cloned()
                    .collect();
                joined(&named)
            } else {
                Some(HeaderValue::from_static("*"))
            }
        } else {
            joined(&c.expose_headers)
        };
        Ok(Cors {
            origins,
            methods: joined(&c.allow_methods),
            any_method: wildcard(&c.allow_methods),
            headers: joined(&c.allow_headers),
            allow_headers: !c.allow_headers.is_empty(),
            expose,
            max_age: HeaderValue::from(max_age),
            credentials,
        })
    }
}
