//! What a lookup decides, and the request and response edits that go with forwarding.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HOST, ORIGIN};
use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};

use crate::cors::Cors;

use crate::model::{
    Backend, Mirror, PathMatch, Redirect, Request, Retry, Rule, Scheme, Timeouts, WeightedBackend,
};
use crate::rng::{Rng, below};
use crate::table::{Entry, RuleEntry};

/// The decision for one request. Policy outcomes are values, not errors: each non-forwarding
/// variant says which response the waypoint sends itself ([`Outcome::status`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// No HTTPRoute applies to this Service, port and host: forward to the original
    /// destination Service, as a waypoint does by default.
    Unrouted,
    /// Routes apply, but none of their rules matches: answer 404.
    NotFound,
    /// Forward to a backend.
    Forward(Forward),
    /// Answer with a redirect (`RequestRedirect`).
    Redirect {
        /// 301, 302 (the default), 303, 307 or 308.
        status: StatusCode,
        /// The complete `Location` value. When the request had no host and the filter sets
        /// none, only the path and query (a relative reference).
        location: String,
    },
    /// Fault injection (ambit extension): answer with `status`, after `delay` if the delay
    /// fault fired too (Envoy delays first, then aborts).
    Abort {
        /// The injected status.
        status: StatusCode,
        /// Wait this long before answering.
        delay: Option<Duration>,
    },
    /// The rule's local rate limit (ambit extension) is exhausted: answer 429.
    RateLimited,
    /// Nothing valid to send to: every weight is 0, the rule has no backendRefs and no
    /// redirect, the chosen backend is not a Service, or the rule uses a filter that cannot be
    /// applied or resolved. Answer 500, as Gateway API requires.
    NoBackend,
    /// The chosen backend is a Service in another namespace that no `ReferenceGrant` there
    /// permits this route to use: answer 500, as Gateway API requires for an invalid
    /// backendRef (its share of requests only, when the rule has several).
    BackendNotPermitted {
        /// The route, `namespace/name`.
        route: String,
        /// The refused backend.
        backend: Backend,
    },
    /// A CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) on a
    /// rule with a CORS filter: answer 200 with these headers, without forwarding.
    Preflight {
        /// `Access-Control-Allow-Origin`, `-Methods`, `-Headers`, `-Max-Age`, … to answer with;
        /// empty for an origin the filter does not allow (the browser then refuses).
        headers: HeaderMap,
    },
}

/// Forward the request: where to, with which limits, and the edits to make on the way.
///
/// It owns what it refers to (the matched rule, shared with the table by reference count), so
/// it can outlive the table's borrow: a caller may hold it across an `await`, hand it to
/// another thread or over an ABI, while the table is replaced underneath.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Forward {
    /// The index of the matching rule in `spec.rules`.
    pub rule: usize,
    /// The rule's timeouts.
    pub timeouts: Timeouts,
    /// Fault injection (ambit extension): hold the request this long before forwarding.
    pub delay: Option<Duration>,
    entry: Arc<RuleEntry>,
    match_index: usize,
    backend_index: usize,
    /// Bit i: mirror i was sampled.
    mirrors: u32,
    /// The request's `Origin`, when the rule's CORS filter allows it: the response gets the
    /// CORS headers.
    cors_origin: Option<HeaderValue>,
}

/// A request as the waypoint forwards it: the request target, authority and headers after the
/// matched rule's request edits (header modifiers, URL rewrite), or unchanged when no route
/// applied. The form an embedder that does the forwarding itself (C, Python) reads.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ForwardedRequest {
    /// Path and query.
    pub path_and_query: String,
    /// The authority (HTTP/2 `:authority`, or the absolute-form target), when the request had
    /// one; otherwise the `Host` header in `headers` carries it.
    pub authority: Option<String>,
    /// The headers.
    pub headers: HeaderMap,
}

/// The request target, authority or method an embedder passed is not valid HTTP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid request: {0}")]
pub struct InvalidRequest(String);

impl ForwardedRequest {
    /// The request (`method`, `path_and_query`, optional `authority`, `headers`) as forwarded
    /// after `forward` (the edits of a FORWARD decision; `None` for an unrouted request, which
    /// goes on unchanged).
    pub fn new(
        forward: Option<&Forward>,
        method: &http::Method,
        path_and_query: &str,
        authority: Option<&str>,
        headers: HeaderMap,
    ) -> Result<Self, InvalidRequest> {
        let uri = match authority {
            Some(a) => Uri::builder()
                .scheme("http")
                .authority(a)
                .path_and_query(path_and_query)
                .build(),
            None => Uri::builder().path_and_query(path_and_query).build(),
        }
        .map_err(|e| InvalidRequest(format!("request target {path_and_query:?}: {e}")))?;
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.method = method.clone();
        parts.uri = uri;
        parts.headers = headers;
        if let Some(f) = forward {
            f.apply_request(&mut parts);
        }
        Ok(Self {
            path_and_query: parts
                .uri
                .path_and_query()
                .map_or_else(|| path_and_query.to_owned(), |p| p.as_str().to_owned()),
            authority: parts.uri.authority().map(|a| a.as_str().to_owned()),
            headers: parts.headers,
        })
    }
}

// === impl Outcome ===

impl Outcome {
    /// The status of the response the waypoint sends itself; `None` for [`Outcome::Forward`]
    /// and [`Outcome::Unrouted`].
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Outcome::Unrouted | Outcome::Forward(_) => None,
            Outcome::NotFound => Some(StatusCode::NOT_FOUND),
            Outcome::Redirect { status, .. } | Outcome::Abort { status, .. } => Some(*status),
            Outcome::RateLimited => Some(StatusCode::TOO_MANY_REQUESTS),
            Outcome::Preflight { .. } => Some(StatusCode::OK),
            Outcome::NoBackend | Outcome::BackendNotPermitted { .. } => {
                Some(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}

// === impl Forward ===

impl Forward {
    /// The matching HTTPRoute, `namespace/name`.
    pub fn route(&self) -> &str {
        &self.entry.route.key
    }

    /// The rule's `name`, if it has one.
    pub fn rule_name(&self) -> Option<&str> {
        self.entry.rule.name.as_deref()
    }

    /// The chosen backend (by weight).
    pub fn backend(&self) -> &Backend {
        self.weighted()
            .and_then(|w| w.backend.as_ref())
            .unwrap_or(&FALLBACK_BACKEND)
    }

    /// The rule's retry policy; `None` when it has no `retry` stanza.
    pub fn retry(&self) -> Option<&Retry> {
        self.entry.rule.retry.as_ref()
    }

    /// The `RequestMirror` backends this request was sampled for (the rule's, then the chosen
    /// backendRef's): send each a copy and ignore the responses.
    pub fn mirrors(&self) -> impl Iterator<Item = &Backend> + '_ {
        let mask = self.mirrors;
        mirror_list(&self.entry.rule, self.backend_index)
            .enumerate()
            .filter(move |(i, _)| *i < 32 && mask & (1 << i) != 0)
            .map(|(_, m)| &m.backend)
    }

    /// Edits the request before forwarding: the rule's `RequestHeaderModifier`, then the chosen
    /// backendRef's, then `URLRewrite` (host and path; `ReplacePrefixMatch` replaces the prefix
    /// that matched, and the query string is kept). A backendRef's `URLRewrite` takes the place
    /// of the rule's, part by part (hostname, path).
    ///
    /// A rewritten host replaces the URI's authority when it has one (HTTP/2), and the `Host`
    /// header when the URI has none or the header is present.
    pub fn apply_request(&self, parts: &mut http::request::Parts) {
        let rule = &self.entry.rule;
        let backend = self.weighted().map(|b| &b.filters);
        if let Some(m) = &rule.filters.request_headers {
            m.apply(&mut parts.headers);
        }
        if let Some(m) = backend.and_then(|f| f.request_headers.as_ref()) {
            m.apply(&mut parts.headers);
        }
        let ours = backend.and_then(|f| f.rewrite.as_ref());
        let theirs = rule.filters.rewrite.as_ref();
        let path = ours
            .and_then(|r| r.path.as_ref())
            .or(theirs.and_then(|r| r.path.as_ref()));
        let hostname = ours
            .and_then(|r| r.hostname.as_ref())
            .or(theirs.and_then(|r| r.hostname.as_ref()));
        if let Some(modifier) = path {
            let path = modifier.apply(parts.uri.path(), self.matched_prefix());
            let pq = match parts.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.into_owned(),
            };
            if let Some(uri) = with_path_and_query(&parts.uri, &pq) {
                parts.uri = uri;
            }
        }
        if let Some(host) = hostname {
            let had_authority = parts.uri.authority().is_some();
            if had_authority
                && let Ok(h) = host.to_str()
                && let Some(uri) = with_authority(&parts.uri, h)
            {
                parts.uri = uri;
            }
            if !had_authority || parts.headers.contains_key(HOST) {
                parts.headers.insert(HOST, host.clone());
            }
        }
    }

    /// Edits the response before returning it: the rule's `ResponseHeaderModifier`, then the
    /// chosen backendRef's, then the CORS headers for an origin the rule's CORS filter allows.
    pub fn apply_response(&self, headers: &mut HeaderMap) {
        if let (Some(origin), Some(cors)) = (&self.cors_origin, &self.entry.rule.filters.cors) {
            cors.apply_response(origin, headers);
        }
        if let Some(m) = &self.entry.rule.filters.response_headers {
            m.apply(headers);
        }
        if let Some(m) = self
            .weighted()
            .and_then(|b| b.filters.response_headers.as_ref())
        {
            m.apply(headers);
        }
    }

    fn weighted(&self) -> Option<&WeightedBackend> {
        self.entry.rule.backends.get(self.backend_index)
    }

    fn matched_prefix(&self) -> Option<&str> {
        self.entry
            .rule
            .matches
            .get(self.match_index)
            .and_then(|m| prefix_of(&m.path))
    }
}

/// Never returned: a Forward is only made for a backend that exists (`decide` checks). It
/// keeps [`Forward::backend`] infallible without a panic path.
static FALLBACK_BACKEND: Backend = Backend::empty();

/// A rule's mirrors, then those of its backendRef `backend_index`.
pub(crate) fn mirror_list(rule: &Rule, backend_index: usize) -> impl Iterator<Item = &Mirror> {
    let backend = rule
        .backends
        .get(backend_index)
        .map(|b| b.filters.mirrors.iter());
    rule.filters
        .mirrors
        .iter()
        .chain(backend.into_iter().flatten())
}

fn prefix_of(path: &PathMatch) -> Option<&str> {
    match path {
        PathMatch::Prefix(p) => Some(p),
        _ => None,
    }
}

fn with_path_and_query(uri: &Uri, pq: &str) -> Option<Uri> {
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::from_str(pq).ok()?);
    Uri::from_parts(parts).ok()
}

fn with_authority(uri: &Uri, host: &str) -> Option<Uri> {
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(Authority::from_str(host).ok()?);
    Uri::from_parts(parts).ok()
}

/// The request's host without port or trailing dot: `authority` if given, else the `Host`
/// header.
pub(crate) fn request_host<'a>(
    authority: Option<&'a str>,
    headers: &'a HeaderMap,
) -> Option<&'a str> {
    let raw = match authority {
        Some(a) => a,
        None => headers.get(HOST)?.to_str().ok()?,
    };
    let raw = raw.rsplit_once('@').map_or(raw, |(_, h)| h);
    let host = if raw.starts_with('[') {
        raw.find(']').map_or(raw, |i| &raw[..=i])
    } else {
        match raw.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    (!host.is_empty()).then_some(host)
}

/// Applies a matched rule. Order, as in Envoy's filter chain: fault injection (delay and abort
/// sampled independently), local rate limit, redirect, then the weighted backend choice and
/// mirror sampling.
pub(crate) fn decide<R: Rng + ?Sized>(
    entry: &Entry,
    req: &Request<'_>,
    host: Option<&str>,
    port: u16,
    now: Instant,
    rng: &mut R,
) -> Outcome {
    let resolved = &*entry.rule;
    let rule = &*resolved.rule;
    if resolved.fail_closed {
        return Outcome::NoBackend;
    }
    let mut cors_origin = None;
    if let Some(cors) = &rule.filters.cors
        && let Some(origin) = req.headers.get(ORIGIN)
    {
        let allowed = cors.allows(origin);
        // A preflight is the filter's to answer: with the CORS headers for an allowed
        // origin, without them (so the browser refuses) for any other.
        if Cors::is_preflight(req.method, req.headers) {
            return Outcome::Preflight {
                headers: if allowed {
                    cors.preflight(origin, req.headers)
                } else {
                    HeaderMap::new()
                },
            };
        }
        if allowed {
            cors_origin = Some(origin.clone());
        }
    }
    let mut delay = None;
    if let Some(fault) = &resolved.fault {
        if let Some((d, f)) = fault.delay
            && f.sample(rng)
        {
            delay = Some(d);
        }
        if let Some((status, f)) = fault.abort
            && f.sample(rng)
        {
            return Outcome::Abort { status, delay };
        }
    }
    if let Some(bucket) = &resolved.bucket
        && !bucket.try_acquire(now)
    {
        return Outcome::RateLimited;
    }
    if let Some(redirect) = &rule.filters.redirect {
        return Outcome::Redirect {
            status: redirect.status,
            location: location(redirect, prefix_of(&entry.m.path), req, host, port),
        };
    }
    if rule.total_weight == 0 {
        return Outcome::NoBackend;
    }
    let backend_index = if rule.backends.len() == 1 {
        0
    } else {
        let mut r = below(rng, rule.total_weight);
        rule.backends
            .iter()
            .position(|b| {
                let w = u64::from(b.weight);
                if r < w {
                    return true;
                }
                r -= w;
                false
            })
            .unwrap_or(0)
    };
    let Some(weighted) = rule.backends.get(backend_index) else {
        return Outcome::NoBackend;
    };
    let Some(backend) = &weighted.backend else {
        return Outcome::NoBackend;
    };
    if weighted.fail_closed {
        return Outcome::NoBackend;
    }
    if resolved.refused_backends & (1 << backend_index.min(31)) != 0 {
        return Outcome::BackendNotPermitted {
            route: resolved.route.key.clone(),
            backend: backend.clone(),
        };
    }
    if let Some(redirect) = &weighted.filters.redirect {
        return Outcome::Redirect {
            status: redirect.status,
            location: location(redirect, prefix_of(&entry.m.path), req, host, port),
        };
    }
    let mut mirrors = 0u32;
    let refused = resolved.refused_mirrors(backend_index);
    for (i, m) in mirror_list(rule, backend_index).enumerate().take(32) {
        if refused & (1 << i) == 0 && m.fraction.sample(rng) {
            mirrors |= 1 << i;
        }
    }
    Outcome::Forward(Forward {
        rule: rule.index,
        timeouts: rule.timeouts,
        delay,
        entry: entry.rule.clone(),
        match_index: entry.match_index,
        backend_index,
        mirrors,
        cors_origin,
    })
}

/// The `Location` of a `RequestRedirect`, per Gateway API: scheme from the filter or the
/// request's (`http`: a waypoint sees plaintext HTTP inside HBONE); host from the filter or the
/// request; port from the filter, else the scheme's well-known port when the filter sets a
/// scheme, else the port the request was sent to (the "listener" port), omitted when it is the
/// scheme's default; path from the filter's modifier or the request's; the query kept.
fn location(
    redirect: &Redirect,
    prefix: Option<&str>,
    req: &Request<'_>,
    host: Option<&str>,
    port: u16,
) -> String {
    let path = match &redirect.path {
        Some(m) => m.apply(req.path, prefix),
        None => Cow::Borrowed(req.path),
    };
    let mut out = String::with_capacity(64);
    if let Some(host) = redirect.hostname.as_deref().or(host) {
        let scheme = redirect.scheme.unwrap_or(Scheme::Http);
        let port = redirect.port.unwrap_or(match redirect.scheme {
            Some(Scheme::Http) => 80,
            Some(Scheme::Https) => 443,
            None => port,
        });
        let (name, default) = match scheme {
            Scheme::Http => ("http", 80),
            Scheme::Https => ("https", 443),
        };
        // Writing to a String cannot fail.
        let _ = write!(out, "{name}://{host}");
        if port != default {
            let _ = write!(out, ":{port}");
        }
    }
    out.push_str(&path);
    if let Some(q) = req.query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_host_drops_port_and_dot() {
        let h = HeaderMap::new();
        let cases = [
            ("example.com", Some("example.com")),
            ("example.com:8080", Some("example.com")),
            ("Example.COM.", Some("Example.COM")),
            ("[::1]:80", Some("[::1]")),
            ("[::1]", Some("[::1]")),
            ("user@host:1", Some("host")),
            ("", None),
            (":80", None),
        ];
        for (authority, want) in cases {
            assert_eq!(request_host(Some(authority), &h), want, "{authority}");
        }
        let mut h = HeaderMap::new();
        h.insert(HOST, "from-header:9080".parse().expect("header"));
        assert_eq!(request_host(None, &h), Some("from-header"));
        assert_eq!(request_host(Some("authority"), &h), Some("authority"));
    }
}
