use std::borrow::Cow;

use super::path::PathPattern;
use super::{PathNormalization, normalize_path, path_without_query};

#[test]
fn base_normalization() {
    let cases = [
        ("/a/b", "/a/b"),
        ("/a/./b", "/a/b"),
        ("/a/b/../c", "/a/c"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/../../a", "/a"),
        ("/..", "/"),
        ("/%61%2Fb", "/a%2Fb"),
        ("/%2e%2E/admin", "/admin"),
        ("/a/%2e/b", "/a/b"),
        ("/public/..%2fadmin", "/public/..%2fadmin"),
        ("/a\\b\\..\\c", "/a/c"),
        ("/a//b", "/a//b"),
        ("/a/%zz", "/a/%zz"),
        ("/a/%4", "/a/%4"),
        ("/%7Euser", "/~user"),
        ("/é/./x", "/é/x"),
    ];
    for (input, want) in cases {
        assert_eq!(
            normalize_path(input, PathNormalization::Base),
            want,
            "input {input}"
        );
    }
}

#[test]
fn clean_paths_are_borrowed() {
    for p in ["/", "/a/b.c/d", "/a/..b/c.", "/.well-known/x"] {
        assert!(
            matches!(normalize_path(p, PathNormalization::Base), Cow::Borrowed(_)),
            "{p}"
        );
    }
}

#[test]
fn slash_modes() {
    assert_eq!(
        normalize_path("/a//b///c", PathNormalization::MergeSlashes),
        "/a/b/c"
    );
    assert_eq!(normalize_path("/a//b", PathNormalization::Base), "/a//b");
    assert_eq!(
        normalize_path(
            "/public/..%2fadmin",
            PathNormalization::DecodeAndMergeSlashes
        ),
        "/admin"
    );
    assert_eq!(
        normalize_path("/a%5Cb", PathNormalization::DecodeAndMergeSlashes),
        "/a/b"
    );
    assert_eq!(
        normalize_path("/a/../b", PathNormalization::None),
        "/a/../b"
    );
}

#[test]
fn query_is_not_part_of_the_path() {
    assert_eq!(path_without_query("/a?b=/c"), "/a");
    assert_eq!(path_without_query("/a#x"), "/a");
    assert_eq!(path_without_query("/a"), "/a");
}

#[test]
fn templates() {
    let yes = |t: &str, p: &str| {
        let pat = PathPattern::parse(t).expect(t);
        assert!(pat.matches(p), "{t} should match {p}");
    };
    let no = |t: &str, p: &str| {
        let pat = PathPattern::parse(t).expect(t);
        assert!(!pat.matches(p), "{t} should not match {p}");
    };
    yes("/foo/{*}", "/foo/bar");
    no("/foo/{*}", "/foo/bar/baz");
    no("/foo/{*}", "/foo/");
    no("/foo/{*}", "/foo");
    yes("/foo/{*}/bar/{**}", "/foo/buzz/bar/");
    yes("/foo/{*}/bar/{**}", "/foo/buzz/bar/baz/qux");
    no("/foo/{*}/bar/{**}", "/foo/buzz/bar");
    yes("/foo/{**}", "/foo/");
    yes("/foo/{**}", "/foo/a/b/c.txt");
    no("/foo/{**}", "/foo");
    yes("/foo/{**}/", "/foo/bar/");
    yes("/foo/{**}/", "/foo//");
    no("/foo/{**}/", "/foo/bar");
    no("/foo/{**}/", "/foo/bar/baz.txt");
    yes("/{**}/x", "/a/b/x");
    yes("/{**}/x", "//x");
    yes("/{*}", "/a");
    no("/{*}", "/a=b");
    no("/api/{*}", "/API/x");
    for bad in [
        "/{**}/foo/{*}",
        "/foo/{*}.txt",
        "/foo/{name}/{*}",
        "/*/baz/{*}",
        "foo/{*}",
        "/a//{*}",
    ] {
        assert!(PathPattern::parse(bad).is_err(), "{bad} should be refused");
    }
}
