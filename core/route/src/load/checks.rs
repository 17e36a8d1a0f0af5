//! What the API server's validation checks on values: hostnames, paths, methods, regular
//! expressions, list lengths.

use http::Method;
use http::uri::PathAndQuery;
use regex::{Regex, RegexBuilder};

use super::MAX_VALUE_LEN;
use crate::model::{Match, PathMatch};

pub(super) fn default_match() -> Match {
    Match {
        path: PathMatch::Prefix("".into()),
        method: None,
        headers: Box::new([]),
        query: Box::new([]),
    }
}

pub(super) fn too_many(max: usize) -> String {
    format!("at most {max} entries are allowed")
}

pub(super) fn method(s: &str) -> Result<Method, String> {
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
pub(super) fn full_match_regex(pattern: &str) -> Result<Regex, String> {
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
pub(super) fn check_match_path(value: &str) -> Result<(), String> {
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
pub(super) fn check_replacement_path(value: &str) -> Result<(), String> {
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
pub(super) fn check_hostname(h: &str, wildcard: bool) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
