//! Request path normalization (Istio's `pathNormalization`) and URI templates (`{*}`, `{**}`).

use std::borrow::Cow;

use crate::model::StringMatch;

/// How a request path is normalized before `paths` / `notPaths` are matched. This mirrors
/// Istio's mesh-wide `meshConfig.pathNormalization`; the same normalization should be applied
/// to the path that is routed and forwarded, or policy and backend can disagree (see
/// [`normalize_path`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum PathNormalization {
    /// Match the path as received (the query is still ignored). Not recommended.
    None,
    /// Istio's default: RFC 3986 normalization as Envoy's `normalize_path` does it.
    #[default]
    Base,
    /// [`Base`](Self::Base), then runs of `/` merged into one.
    MergeSlashes,
    /// `%2F`/`%2f` decoded to `/` and `%5C`/`%5c` to `\` first, then
    /// [`MergeSlashes`](Self::MergeSlashes). The strictest setting.
    DecodeAndMergeSlashes,
}

/// Normalizes a request path (without query; see [`path_without_query`]) as `mode` says. Only
/// allocates when something changes.
///
/// [`PathNormalization::Base`] does exactly this, in order:
/// 1. percent-encoded *unreserved* characters (`A-Z a-z 0-9 - . _ ~`) are decoded (`%41` → `A`,
///    `%2e` → `.`); every other escape is kept as written, and a `%` not followed by two hex
///    digits is kept as is;
/// 2. `\` becomes `/`;
/// 3. dot segments are removed per RFC 3986 §5.2.4 (`/a/./b` → `/a/b`, `/a/b/../c` → `/a/c`,
///    `/a/..` → `/`, `..` above the root is dropped, a trailing `.` or `..` leaves a trailing
///    `/`).
///
/// Empty segments (`//`) are kept unless the mode merges slashes. Other characters are not
/// re-escaped (the HTTP layer has already rejected those that are invalid in a path).
pub fn normalize_path(path: &str, mode: PathNormalization) -> Cow<'_, str> {
    let merge = matches!(
        mode,
        PathNormalization::MergeSlashes | PathNormalization::DecodeAndMergeSlashes
    );
    let clean = mode == PathNormalization::None
        || !(path.contains(['%', '\\'])
            || path.split('/').any(|s| s == "." || s == "..")
            || (merge && path.contains("//")));
    if clean {
        return Cow::Borrowed(path);
    }
    let decoded = decode(path, mode == PathNormalization::DecodeAndMergeSlashes);
    let mut out = remove_dot_segments(&decoded);
    if merge {
        let mut merged = String::with_capacity(out.len());
        for c in out.chars() {
            if !(c == '/' && merged.ends_with('/')) {
                merged.push(c);
            }
        }
        out = merged;
    }
    Cow::Owned(out)
}

/// The path part of a request target: everything before the first `?` or `#`.
pub fn path_without_query(path_and_query: &str) -> &str {
    path_and_query
        .split_once(['?', '#'])
        .map_or(path_and_query, |(p, _)| p)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Steps 1 and 2 (and slash decoding when asked).
fn decode(path: &str, decode_slashes: bool) -> String {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let decoded = b
                    .get(i + 1)
                    .and_then(|h| hex(*h))
                    .zip(b.get(i + 2).and_then(|l| hex(*l)))
                    .map(|(h, l)| h * 16 + l);
                match decoded {
                    Some(v) if is_unreserved(v) => {
                        out.push(v);
                        i += 3;
                    }
                    Some(b'/') if decode_slashes => {
                        out.push(b'/');
                        i += 3;
                    }
                    Some(b'\\') if decode_slashes => {
                        out.push(b'/');
                        i += 3;
                    }
                    Some(_) => {
                        out.extend_from_slice(&b[i..i + 3]);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'\\' => {
                out.push(b'/');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    // Only ASCII sequences were replaced by ASCII bytes, so this is still UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// RFC 3986 §5.2.4 over `/`-separated segments.
fn remove_dot_segments(path: &str) -> String {
    let (absolute, body) = match path.strip_prefix('/') {
        Some(rest) => (true, rest),
        None => (false, path),
    };
    let mut out: Vec<&str> = Vec::new();
    let mut segments = body.split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        match seg {
            "." => {}
            ".." => {
                out.pop();
            }
            s => {
                out.push(s);
                continue;
            }
        }
        if last {
            out.push("");
        }
    }
    let mut s = String::with_capacity(path.len());
    if absolute {
        s.push('/');
    }
    s.push_str(&out.join("/"));
    s
}

// === paths: string matches and URI templates ===

/// One `paths` / `notPaths` value, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathPattern {
    /// Istio's wildcard form (`*` matches any non-empty path).
    Str(StringMatch),
    /// A URI template with `{*}` / `{**}`.
    Template(Template),
}

/// A URI template, as Envoy's `uri_template` matcher reads it after Istio turns `{*}` into
/// `*` and `{**}` into `**`: `/` + segments joined by `/`, the whole path must match.
/// `{*}` matches one non-empty segment of `[A-Za-z0-9-._~%!$&'()+,;:@]`; `{**}` matches
/// zero or more characters of that set plus `/`. So `/foo/{**}` matches `/foo/` and `/foo/a/b`
/// (not `/foo`), and `/foo/{**}/` matches `/foo/bar/` and `/foo//` but not `/foo/bar/baz.txt`
/// (Istio's reference text claims otherwise; this follows Envoy's implementation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    before: Vec<Segment>,
    /// `Some(after)` when the template has `{**}`; `after` are the segments following it.
    any: Option<Vec<Segment>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One,
}

impl PathPattern {
    /// Parses one Istio `paths` value.
    pub(crate) fn parse(value: &str) -> Result<Self, String> {
        if !(value.contains("{*}") || value.contains("{**}")) {
            return Ok(PathPattern::Str(StringMatch::from_istio(value)));
        }
        let Some(body) = value.strip_prefix('/') else {
            return Err(format!("path template {value:?} must start with /"));
        };
        let pieces: Vec<&str> = body.split('/').collect();
        let mut before = Vec::new();
        let mut after: Option<Vec<Segment>> = None;
        for (i, piece) in pieces.iter().enumerate() {
            let seg = match *piece {
                "{**}" => {
                    if after.is_some() {
                        return Err(format!(
                            "path template {value:?}: {{**}} may appear once, as the last operator"
                        ));
                    }
                    after = Some(Vec::new());
                    continue;
                }
                "{*}" => Segment::One,
                lit => {
                    let last = i + 1 == pieces.len();
                    if lit.is_empty() && !last {
                        return Err(format!("path template {value:?} has an empty segment"));
                    }
                    if !lit.bytes().all(is_template_char) {
                        return Err(format!(
                            "path template {value:?}: segment {lit:?} must be exactly {{*}}, {{**}} \
                             or literal text without *, {{, }} or ="
                        ));
                    }
                    Segment::Literal(lit.to_owned())
                }
            };
            match &mut after {
                Some(after) => {
                    if seg == Segment::One {
                        return Err(format!(
                            "path template {value:?}: {{**}} must be the last operator"
                        ));
                    }
                    after.push(seg);
                }
                None => before.push(seg),
            }
        }
        Ok(PathPattern::Template(Template { before, any: after }))
    }

    /// Whether the normalized, query-less `path` matches.
    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Str(m) => m.matches(path),
            PathPattern::Template(t) => t.matches(path),
        }
    }
}

/// The characters Envoy's template operators match (RFC 3986 pchar minus `*` and `=`).
fn is_template_char(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'%' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'+' | b',' | b';' | b':' | b'@'
        )
}

impl Segment {
    fn matches(&self, piece: &str) -> bool {
        match self {
            Segment::Literal(l) => piece == l,
            Segment::One => !piece.is_empty() && piece.bytes().all(is_template_char),
        }
    }
}

impl Template {
    fn matches(&self, path: &str) -> bool {
        let Some(mut rest) = path.strip_prefix('/') else {
            return false;
        };
        let Some(after) = &self.any else {
            // No `{**}`: exactly as many segments as the template.
            let mut pieces = rest.split('/');
            return self
                .before
                .iter()
                .all(|seg| pieces.next().is_some_and(|p| seg.matches(p)))
                && pieces.next().is_none();
        };
        // `/` + before[0] + `/` + … + before[k-1] + `/` + ANY [+ `/` + after joined by `/`].
        for seg in &self.before {
            let Some((piece, tail)) = rest.split_once('/') else {
                return false;
            };
            if !seg.matches(piece) {
                return false;
            }
            rest = tail;
        }
        // The segments after `{**}` contain no `/`, so they are the last ones of the path.
        let mut any = rest;
        for seg in after.iter().rev() {
            let Some((head, piece)) = any.rsplit_once('/') else {
                return false;
            };
            if !seg.matches(piece) {
                return false;
            }
            any = head;
        }
        any.bytes().all(|b| b == b'/' || is_template_char(b))
    }
}
