//! The `CORS` filter (Gateway API `HTTPCORSFilter`): which origins may use a route from a
//! browser, the answer to their preflight requests, and the headers added to their responses.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD,
};
use http::{HeaderMap, HeaderValue, Method};

/// A compiled `cors` stanza.
#[derive(Debug)]
pub(crate) struct Cors {
    pub(crate) origins: Vec<OriginPattern>,
    /// `allowMethods` joined with `, `; `None` when empty or `*`.
    pub(crate) methods: Option<HeaderValue>,
    /// `allowMethods` is `*`: the requested method is echoed. (Empty allows only the methods
    /// browsers never preflight, so no `Access-Control-Allow-Methods` is sent.)
    pub(crate) any_method: bool,
    /// `allowHeaders` joined; `None` for `*` (the requested headers are echoed), or when the
    /// list is empty (`allow_headers` false).
    pub(crate) headers: Option<HeaderValue>,
    pub(crate) allow_headers: bool,
    pub(crate) expose: Option<HeaderValue>,
    pub(crate) max_age: HeaderValue,
    pub(crate) credentials: bool,
}

/// One `allowOrigins` entry: `*`, or `scheme://host[:port]` where the host may start with `*.`
/// (any number of labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OriginPattern {
    Any,
    Origin {
        scheme: String,
        /// Lower-case; without the `*` of a wildcard (so `.bar.com` for `*.bar.com`).
        host: String,
        wildcard: bool,
        port: Option<u16>,
    },
}

impl OriginPattern {
    /// Parses an `allowOrigins` entry; `None` if it is not one.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        if s == "*" {
            return Some(Self::Any);
        }
        let (scheme, host, port) = split_origin(s)?;
        let (host, wildcard) = match host.strip_prefix('*') {
            // `scheme://*`: every host of that scheme.
            Some("") => (String::new(), true),
            Some(rest) if rest.starts_with('.') && rest.len() > 1 => (rest.to_owned(), true),
            Some(_) => return None,
            None => (host, false),
        };
        if host.contains('*') {
            return None;
        }
        Some(Self::Origin {
            scheme,
            host,
            wildcard,
            port,
        })
    }

    fn matches(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        match self {
            Self::Any => true,
            Self::Origin {
                scheme: s,
                host: h,
                wildcard,
                port: p,
            } => {
                let host_ok = if *wildcard {
                    host.len() > h.len() && host.ends_with(h.as_str())
                } else {
                    host == h
                };
                s == scheme && host_ok && *p == port
            }
        }
    }
}

/// `scheme://host[:port]`, lower-cased; the port `None` when absent or the scheme's default.
fn split_origin(s: &str) -> Option<(String, String, Option<u16>)> {
    let (scheme, rest) = s.split_once("://")?;
    if scheme.is_empty() || rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return None;
    }
    let scheme = scheme.to_ascii_lowercase();
    let (host, port) = if rest.starts_with('[') {
        let end = rest.find(']')?;
        let (h, after) = rest.split_at(end + 1);
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p.parse::<u16>().ok()?)),
            None if after.is_empty() => (h, None),
            None => return None,
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().ok()?)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let default = match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    let port = port.filter(|p| Some(*p) != default);
    Some((scheme, host.to_ascii_lowercase(), port))
}

impl Cors {
    /// Whether requests from `origin` (an `Origin` header) may use the route.
    pub(crate) fn allows(&self, origin: &HeaderValue) -> bool {
        if self.origins.contains(&OriginPattern::Any) {
            return true;
        }
        let Some((scheme, host, port)) = origin.to_str().ok().and_then(split_origin) else {
            return false;
        };
        self.origins.iter().any(|o| o.matches(&scheme, &host, port))
    }

    /// Whether `headers` of a `method` request make it a CORS preflight.
    pub(crate) fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The headers of the answer to an allowed origin's preflight.
    pub(crate) fn preflight(&self, origin: &HeaderValue, request: &HeaderMap) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        let method = match &self.methods {
            Some(m) => Some(m.clone()),
            None if self.any_method => request.get(ACCESS_CONTROL_REQUEST_METHOD).cloned(),
            None => None,
        };
        if let Some(m) = method {
            h.insert(ACCESS_CONTROL_ALLOW_METHODS, m);
        }
        if self.allow_headers {
            let headers = match &self.headers {
                Some(v) => Some(v.clone()),
                None => request.get(ACCESS_CONTROL_REQUEST_HEADERS).cloned(),
            };
            if let Some(v) = headers {
                h.insert(ACCESS_CONTROL_ALLOW_HEADERS, v);
            }
        }
        if let Some(e) = &self.expose {
            h.insert(ACCESS_CONTROL_EXPOSE_HEADERS, e.clone());
        }
        h.insert(ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        if self.credentials {
            h.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        h
    }

    /// Adds the CORS headers to the response of an allowed origin's request.
    pub(crate) fn apply_response(&self, origin: &HeaderValue, headers: &mut HeaderMap) {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if let Some(e) = &self.expose {
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, e.clone());
        }
        if self.credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}
