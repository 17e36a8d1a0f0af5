//! Finding tokens in a request, and removing them before forwarding.

use std::borrow::Cow;

use http::{HeaderMap, HeaderValue};

use super::Location;

/// Every token in `loc` (a header may repeat, a parameter or cookie may appear twice).
pub(super) fn find<'h>(
    loc: &Location,
    headers: &'h HeaderMap,
    query: Option<&'h str>,
) -> Vec<&'h str> {
    let mut out = Vec::new();
    match loc {
        Location::Header {
            name,
            prefix,
            ignore_case,
        } => {
            for v in headers.get_all(name) {
                let Ok(v) = v.to_str() else { continue };
                let rest = if *ignore_case {
                    (v.len() >= prefix.len()
                        && v.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes()))
                    .then(|| &v[prefix.len()..])
                } else {
                    v.strip_prefix(prefix.as_str())
                };
                if let Some(token) = rest.map(str::trim).filter(|t| !t.is_empty()) {
                    out.push(token);
                }
            }
        }
        Location::Param(name) => {
            for (k, v) in query.into_iter().flat_map(pairs) {
                if k == name && !v.is_empty() {
                    out.push(v);
                }
            }
        }
        Location::Cookie(name) => {
            for v in headers.get_all(http::header::COOKIE) {
                let Ok(v) = v.to_str() else { continue };
                for c in v.split(';') {
                    if let Some((k, val)) = c.trim().split_once('=')
                        && k.trim() == name
                        && !val.trim().is_empty()
                    {
                        out.push(val.trim());
                    }
                }
            }
        }
    }
    out
}

/// `a=1&b=2` → `(a, 1), (b, 2)`; a bare `a` is `(a, "")`.
fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// The request target without the named query parameters.
pub(super) fn remove_params<'p>(path_and_query: &'p str, names: &[String]) -> Cow<'p, str> {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return Cow::Borrowed(path_and_query);
    };
    let drop = |p: &str| {
        let k = p.split_once('=').map_or(p, |(k, _)| k);
        names.iter().any(|n| n == k)
    };
    if names.is_empty() || !query.split('&').any(drop) {
        return Cow::Borrowed(path_and_query);
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !drop(p))
        .collect();
    if kept.is_empty() {
        Cow::Owned(path.to_owned())
    } else {
        Cow::Owned(format!("{path}?{}", kept.join("&")))
    }
}

/// Removes the named cookies from every `Cookie` header (dropping headers left empty).
pub(super) fn remove_cookies(headers: &mut HeaderMap, names: &[String]) {
    let mut rebuilt = Vec::new();
    let mut changed = false;
    for v in headers.get_all(http::header::COOKIE) {
        let Ok(text) = v.to_str() else {
            rebuilt.push(v.clone());
            continue;
        };
        let kept: Vec<&str> = text
            .split(';')
            .map(str::trim)
            .filter(|c| {
                let name = c.split_once('=').map_or(*c, |(k, _)| k).trim();
                let drop = names.iter().any(|n| n == name);
                changed |= drop;
                !c.is_empty() && !drop
            })
            .collect();
        if kept.is_empty() {
            continue;
        }
        match HeaderValue::from_str(&kept.join("; ")) {
            Ok(v) => rebuilt.push(v),
            Err(_) => changed = true,
        }
    }
    if changed {
        headers.remove(http::header::COOKIE);
        for v in rebuilt {
            headers.append(http::header::COOKIE, v);
        }
    }
}
