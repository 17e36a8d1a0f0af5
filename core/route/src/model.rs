//! Compiled HTTPRoutes: everything validated and pre-parsed at load time, so that matching and
//! the filters do no parsing and (except for a rewritten path) no allocation per request.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use regex::Regex;

use crate::rng::Fraction;

/// A Kubernetes Service that a request is forwarded (or mirrored) to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Backend {
    /// The Service's namespace (the route's own when the `backendRef` names none).
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// The Service port. `None` only when the `backendRef` omitted it (Gateway API requires it
    /// for Services; a warning was issued): use the port the request was addressed to.
    pub port: Option<u16>,
}

impl Backend {
    /// A backend naming nothing (a placeholder that is never forwarded to).
    pub(crate) const fn empty() -> Self {
        Self {
            namespace: String::new(),
            name: String::new(),
            port: None,
        }
    }
}

/// `timeouts` of a rule. `None` means no timeout: the field was absent, or `"0s"`, which Gateway
/// API defines as disabled (Istio's HTTPRoute default is no route timeout either).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// `request`: the whole client transaction, retries included.
    pub request: Option<Duration>,
    /// `backendRequest`: one attempt to the backend (never longer than `request`).
    pub backend_request: Option<Duration>,
}

/// A rule's `retry` stanza.
///
/// Istio's mapping, which the waypoint should follow: retry on connection failure, refused
/// stream, `unavailable` and `cancelled`, plus the listed status codes; `attempts` is the number
/// of retries after the first try (2 when the stanza is present but `attempts` is not; 0 turns
/// retries off); `backoff` is the base interval of an exponential backoff.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retry {
    /// Retries after the first attempt.
    pub attempts: u32,
    /// Response codes that are retried (each in 400..=599).
    pub codes: Vec<StatusCode>,
    /// Base backoff interval; `None` leaves it to the caller's default.
    pub backoff: Option<Duration>,
}

impl Retry {
    /// Whether a response with `status` should be retried.
    pub fn retries_status(&self, status: StatusCode) -> bool {
        self.attempts > 0 && self.codes.contains(&status)
    }
}

/// One HTTPRoute object.
#[derive(Debug)]
pub(crate) struct Route {
    /// `namespace/name`.
    pub(crate) key: String,
    pub(crate) kind: RouteKind,
    pub(crate) namespace: String,
    /// The file it was loaded from, for warnings.
    pub(crate) file: String,
    /// `metadata.creationTimestamp` as (seconds, nanoseconds) since the Unix epoch.
    pub(crate) created: Option<(i64, u32)>,
    pub(crate) parents: Vec<Parent>,
    /// Lower-case; a wildcard is kept as `*.example.com`.
    pub(crate) hostnames: Vec<String>,
    pub(crate) rules: Vec<Arc<Rule>>,
}

/// What a route attaches to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parent {
    Service {
        namespace: String,
        name: String,
        port: Option<u16>,
    },
    Gateway {
        namespace: String,
        name: String,
    },
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) index: usize,
    pub(crate) name: Option<String>,
    /// Never empty: an absent list is the default `PathPrefix /` match.
    pub(crate) matches: Vec<Match>,
    pub(crate) filters: Filters,
    pub(crate) backends: Vec<WeightedBackend>,
    pub(crate) total_weight: u64,
    pub(crate) timeouts: Timeouts,
    pub(crate) retry: Option<Retry>,
    /// `ambit.dev` extension filters, resolved when the table is built.
    pub(crate) extensions: Vec<ExtensionRef>,
    /// Set when the rule uses a filter ambit cannot apply and must not skip (an unknown
    /// `ExtensionRef`, `ExternalAuth`): such requests get a 500.
    pub(crate) fail_closed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExtensionRef {
    pub(crate) kind: ExtensionKind,
    pub(crate) name: String,
    /// Where it was referenced, for warnings.
    pub(crate) field: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExtensionKind {
    Fault,
    LocalRateLimit,
}

/// One `matches[]` entry: all of its conditions must hold.
#[derive(Debug, Clone)]
pub(crate) struct Match {
    pub(crate) path: PathMatch,
    pub(crate) method: Option<Method>,
    pub(crate) headers: Box<[HeaderMatch]>,
    pub(crate) query: Box<[QueryMatch]>,
}

#[derive(Debug, Clone)]
pub(crate) enum PathMatch {
    Exact(Box<str>),
    /// Without its trailing `/` (which Gateway API ignores); the root prefix is empty.
    Prefix(Box<str>),
    /// Anchored at both ends at compile time: a full match.
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub(crate) struct HeaderMatch {
    pub(crate) name: HeaderName,
    pub(crate) value: ValueMatch,
}

#[derive(Debug, Clone)]
pub(crate) struct QueryMatch {
    pub(crate) name: Box<str>,
    pub(crate) value: ValueMatch,
}

#[derive(Debug, Clone)]
pub(crate) enum ValueMatch {
    Exact(Box<str>),
    /// Anchored: a full match.
    Regex(Regex),
}

/// The parts of a request that matching looks at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'r> {
    pub(crate) method: &'r Method,
    pub(crate) path: &'r str,
    pub(crate) query: Option<&'r str>,
    pub(crate) headers: &'r HeaderMap,
}

#[derive(Debug, Default)]
pub(crate) struct Filters {
    pub(crate) request_headers: Option<HeaderModifier>,
    pub(crate) response_headers: Option<HeaderModifier>,
    pub(crate) redirect: Option<Redirect>,
    pub(crate) rewrite: Option<Rewrite>,
    pub(crate) mirrors: Vec<Mirror>,
    pub(crate) cors: Option<crate::cors::Cors>,
}

impl Filters {
    /// Whether a redirect or rewrite replaces the matched prefix (which then must be one
    /// PathPrefix match).
    pub(crate) fn uses_prefix_match(&self) -> bool {
        let prefix =
            |m: &Option<PathModifier>| matches!(m, Some(PathModifier::ReplacePrefixMatch(_)));
        self.redirect.as_ref().is_some_and(|r| prefix(&r.path))
            || self.rewrite.as_ref().is_some_and(|r| prefix(&r.path))
    }
}

/// `RequestHeaderModifier` / `ResponseHeaderModifier`. Gateway API allows one action per header
/// name (checked at load), so the order of remove, set and add cannot matter.
#[derive(Debug, Default)]
pub(crate) struct HeaderModifier {
    pub(crate) set: Vec<(HeaderName, HeaderValue)>,
    pub(crate) add: Vec<(HeaderName, HeaderValue)>,
    pub(crate) remove: Vec<HeaderName>,
}

#[derive(Debug)]
pub(crate) struct Redirect {
    pub(crate) scheme: Option<Scheme>,
    pub(crate) hostname: Option<String>,
    pub(crate) path: Option<PathModifier>,
    pub(crate) port: Option<u16>,
    pub(crate) status: StatusCode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Http,
    Https,
}

#[derive(Debug)]
pub(crate) enum PathModifier {
    ReplaceFullPath(String),
    /// The replacement, without a trailing `/`.
    ReplacePrefixMatch(String),
}

#[derive(Debug)]
pub(crate) struct Rewrite {
    pub(crate) hostname: Option<HeaderValue>,
    pub(crate) path: Option<PathModifier>,
}

#[derive(Debug)]
pub(crate) struct Mirror {
    pub(crate) backend: Backend,
    pub(crate) fraction: Fraction,
}

#[derive(Debug)]
pub(crate) struct WeightedBackend {
    /// `None` for a reference ambit cannot resolve (not a Service): its share of requests gets
    /// a 500, as Gateway API requires.
    pub(crate) backend: Option<Backend>,
    pub(crate) weight: u32,
    /// Applied only to requests sent to this backend, after the rule's.
    pub(crate) filters: Filters,
    /// A backend-level filter that ambit cannot apply and must not skip.
    pub(crate) fail_closed: bool,
}

/// A `ReferenceGrant` (v1beta1): lets objects of the listed kinds in the `from` namespaces
/// refer to objects of the `to` kinds in the grant's own namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    /// `(group, kind, namespace)`.
    pub(crate) from: Vec<(String, String, String)>,
    /// `(group, kind, name)`; no name means every object of the kind.
    pub(crate) to: Vec<(String, String, Option<String>)>,
}

impl Grant {
    /// Whether a `from_kind` route in `from_ns` may use the Service `name` in this grant's
    /// namespace.
    pub(crate) fn permits_service(&self, from_kind: RouteKind, from_ns: &str, name: &str) -> bool {
        let from = self.from.iter().any(|(g, k, ns)| {
            g == crate::load::GATEWAY_GROUP && k == from_kind.as_str() && ns == from_ns
        });
        from && self.to.iter().any(|(g, k, n)| {
            g.is_empty() && k == "Service" && n.as_deref().is_none_or(|n| n == name)
        })
    }
}

/// Which route kind an object was loaded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RouteKind {
    Http,
    Grpc,
}

impl RouteKind {
    /// The Kubernetes kind.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RouteKind::Http => "HTTPRoute",
            RouteKind::Grpc => "GRPCRoute",
        }
    }
}

/// An `ambit.dev/v1alpha1` `Fault` object: Istio VirtualService fault-injection semantics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    pub(crate) delay: Option<(Duration, Fraction)>,
    pub(crate) abort: Option<(StatusCode, Fraction)>,
}

// === impl Match ===

impl Match {
    /// Path first: it is the most selective and the cheapest to check.
    pub(crate) fn matches(&self, req: &Request<'_>) -> bool {
        self.path.matches(req.path)
            && self.method.as_ref().is_none_or(|m| m == req.method)
            && self.headers.iter().all(|h| h.matches(req.headers))
            && self.query.iter().all(|q| q.matches(req.query))
    }
}

// === impl PathMatch ===

impl PathMatch {
    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == &**p,
            PathMatch::Prefix(p) => prefix_matches(p, path),
            PathMatch::Regex(r) => r.is_match(path),
        }
    }

    /// 0 for Exact, 1 for PathPrefix, 2 for RegularExpression: the first precedence criterion.
    pub(crate) fn rank(&self) -> u8 {
        match self {
            PathMatch::Exact(_) => 0,
            PathMatch::Prefix(_) => 1,
            PathMatch::Regex(_) => 2,
        }
    }

    /// The prefix's length in characters (trailing `/` excluded), 0 for other kinds.
    pub(crate) fn prefix_len(&self) -> usize {
        match self {
            PathMatch::Prefix(p) => p.chars().count(),
            _ => 0,
        }
    }
}

/// Gateway API `PathPrefix`: element by element, so `/foo` matches `/foo`, `/foo/` and
/// `/foo/bar` but not `/foobar`. `prefix` has no trailing `/`; empty is the root, which matches
/// every path.
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.is_empty() || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

// === impl HeaderMatch ===

impl HeaderMatch {
    /// A header sent several times matches when any one of its values does (Envoy instead
    /// matches the values joined by commas; the two differ only for repeated headers, which
    /// Gateway API leaves to the implementation).
    fn matches(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(&self.name)
            .iter()
            .any(|v| match &self.value {
                ValueMatch::Exact(want) => v.as_bytes() == want.as_bytes(),
                ValueMatch::Regex(r) => {
                    std::str::from_utf8(v.as_bytes()).is_ok_and(|s| r.is_match(s))
                }
            })
    }
}

// === impl QueryMatch ===

impl QueryMatch {
    /// Names compare exactly as sent; values are percent-decoded first. Only the first
    /// occurrence of a repeated parameter counts, as Gateway API recommends.
    fn matches(&self, query: Option<&str>) -> bool {
        let Some(raw) = query.and_then(|q| query_value(q, &self.name)) else {
            return false;
        };
        match &self.value {
            ValueMatch::Exact(want) => decoded_eq(raw, want),
            ValueMatch::Regex(r) => r.is_match(&percent_decode(raw)),
        }
    }
}

/// The raw value of the first `name=value` pair named `name` (a bare `name` has value "").
pub(crate) fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decoded bytes of a percent-encoded string, one at a time; a `%` not followed by two hex
/// digits stands for itself.
fn decoded_bytes(raw: &str) -> impl Iterator<Item = u8> + '_ {
    let b = raw.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        let c = *b.get(i)?;
        if c == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            i += 3;
            return Some(h << 4 | l);
        }
        i += 1;
        Some(c)
    })
}

/// Compares the decoded form of `raw` with `want` without allocating.
fn decoded_eq(raw: &str, want: &str) -> bool {
    decoded_bytes(raw).eq(want.bytes())
}

/// Decodes only when there is something to decode.
fn percent_decode(raw: &str) -> Cow<'_, str> {
    if !raw.contains('%') {
        return Cow::Borrowed(raw);
    }
    let bytes: Vec<u8> = decoded_bytes(raw).collect();
    match String::from_utf8(bytes) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

// === impl HeaderModifier ===

impl HeaderModifier {
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

// === impl PathModifier ===

impl PathModifier {
    /// The new path for `path`, which matched the (trailing-slash-free) `prefix`.
    pub(crate) fn apply<'p>(&self, path: &'p str, prefix: Option<&str>) -> Cow<'p, str> {
        match self {
            PathModifier::ReplaceFullPath(full) => Cow::Owned(full.clone()),
            PathModifier::ReplacePrefixMatch(replacement) => match prefix {
                Some(prefix) => Cow::Owned(replace_prefix(path, prefix, replacement)),
                // Load-time validation makes this unreachable: ReplacePrefixMatch needs a
                // PathPrefix match. Leave the path alone rather than guess.
                None => Cow::Borrowed(path),
            },
        }
    }
}

/// Gateway API's `ReplacePrefixMatch` table: the matched prefix (whole path elements, trailing
/// `/` ignored) is replaced; what follows it, including a trailing `/`, is kept; an empty result
/// is `/`.
pub(crate) fn replace_prefix(path: &str, prefix: &str, replacement: &str) -> String {
    let Some(rest) = path.strip_prefix(prefix) else {
        return path.to_owned();
    };
    let replacement = replacement.trim_end_matches('/');
    let mut out = String::with_capacity(replacement.len() + rest.len() + 1);
    out.push_str(replacement);
    out.push_str(rest);
    if out.is_empty() {
        out.push('/');
    } else if !out.starts_with('/') {
        out.insert(0, '/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_matches_whole_segments() {
        let cases = [
            ("/foo", "/foo", true),
            ("/foo", "/foo/", true),
            ("/foo", "/foo/bar", true),
            ("/foo", "/foobar", false),
            ("/foo", "/fo", false),
            ("/foo", "/", false),
            ("/foo/bar", "/foo/bar/baz", true),
            ("/foo/bar", "/foo/barbaz", false),
            ("/foo/bar", "/foo", false),
            ("", "/", true),
            ("", "/anything/at/all", true),
            ("", "*", true),
        ];
        for (prefix, path, want) in cases {
            assert_eq!(prefix_matches(prefix, path), want, "{prefix:?} vs {path:?}");
        }
    }

    #[test]
    fn replace_prefix_follows_the_spec_table() {
        // httproute_types.go, HTTPPathModifier.ReplacePrefixMatch (prefix stored without its
        // trailing slash).
        let table = [
            ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
            ("/foo", "/foo", "/xyz", "/xyz"),
            ("/foo/", "/foo", "/xyz", "/xyz/"),
            ("/foo/bar", "/foo", "", "/bar"),
            ("/foo/", "/foo", "", "/"),
            ("/foo", "/foo", "", "/"),
            ("/foo/", "/foo", "/", "/"),
            ("/foo", "/foo", "/", "/"),
            ("/a/b/c", "", "/x", "/x/a/b/c"),
        ];
        for (path, prefix, replacement, want) in table {
            assert_eq!(
                replace_prefix(path, prefix, replacement),
                want,
                "{path} {prefix} {replacement}"
            );
        }
    }

    #[test]
    fn query_values_are_decoded_and_first_wins() {
        assert_eq!(query_value("a=1&b=2&a=3", "a"), Some("1"));
        assert_eq!(query_value("flag&b=2", "flag"), Some(""));
        assert_eq!(query_value("ab=1", "a"), None);
        assert!(decoded_eq("hello%20world", "hello world"));
        assert!(decoded_eq("100%", "100%"));
        assert!(decoded_eq("%zz", "%zz"));
        assert!(!decoded_eq("a%2", "a"));
        assert_eq!(percent_decode("x%2Fy"), "x/y");
    }
}
