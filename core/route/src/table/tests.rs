use std::sync::Arc;

use http::{HeaderName, Method};

use super::*;
use crate::model::{Filters, HeaderMatch, PathMatch, QueryMatch, Timeouts, ValueMatch};

fn route(key: &str, created: Option<i64>) -> Arc<Route> {
    let (ns, _) = key.split_once('/').expect("ns/name");
    Arc::new(Route {
        key: key.into(),
        kind: RouteKind::Http,
        namespace: ns.into(),
        file: "test.yaml".into(),
        created: created.map(|s| (s, 0)),
        parents: Vec::new(),
        hostnames: Vec::new(),
        rules: Vec::new(),
    })
}

fn entry(
    label: &str,
    route: &Arc<Route>,
    rule: usize,
    match_index: usize,
    m: Match,
) -> (String, Entry) {
    let rule = Arc::new(Rule {
        index: rule,
        name: None,
        matches: vec![m.clone()],
        filters: Filters::default(),
        backends: Vec::new(),
        total_weight: 0,
        timeouts: Timeouts::default(),
        retry: None,
        extensions: Vec::new(),
        fail_closed: false,
    });
    let rule = Arc::new(RuleEntry {
        route: route.clone(),
        rule,
        fault: None,
        bucket: None,
        fail_closed: false,
        refused_backends: 0,
        refused_mirrors: Box::new([]),
    });
    (
        label.to_owned(),
        Entry {
            m,
            match_index,
            rule,
        },
    )
}

fn m(path: PathMatch, method: bool, headers: usize, query: usize) -> Match {
    let header = |i: usize| HeaderMatch {
        name: HeaderName::from_bytes(format!("h{i}").as_bytes()).expect("name"),
        value: ValueMatch::Exact("v".into()),
    };
    let param = |i: usize| QueryMatch {
        name: format!("q{i}").into(),
        value: ValueMatch::Exact("v".into()),
    };
    Match {
        path,
        method: method.then_some(Method::GET),
        headers: (0..headers).map(header).collect(),
        query: (0..query).map(param).collect(),
    }
}

fn prefix(p: &str) -> PathMatch {
    PathMatch::Prefix(p.into())
}

#[test]
fn precedence_orders_every_tie_breaker() {
    let r = route("ns/b", None);
    let old = route("ns/z-old", Some(100));
    let older = route("ns/z-older", Some(50));
    let a = route("ns/a", None);
    let regex = PathMatch::Regex(regex::Regex::new("^/.*$").expect("regex"));
    // In the expected order.
    let mut entries = vec![
        entry(
            "exact",
            &r,
            9,
            0,
            m(PathMatch::Exact("/x".into()), false, 0, 0),
        ),
        entry("long prefix", &r, 9, 0, m(prefix("/abcdef"), false, 0, 0)),
        entry("short prefix", &r, 9, 0, m(prefix("/abc"), false, 0, 0)),
        entry("root + method", &r, 9, 0, m(prefix(""), true, 0, 0)),
        entry("root + 2 headers", &r, 9, 0, m(prefix(""), false, 2, 0)),
        entry(
            "root + 1 header + 3 query",
            &r,
            9,
            0,
            m(prefix(""), false, 1, 3),
        ),
        entry(
            "root + 1 header + 1 query",
            &r,
            9,
            0,
            m(prefix(""), false, 1, 1),
        ),
        entry(
            "root, older route",
            &older,
            9,
            0,
            m(prefix(""), false, 0, 0),
        ),
        entry("root, old route", &old, 9, 0, m(prefix(""), false, 0, 0)),
        entry(
            "root, no timestamp, a",
            &a,
            9,
            0,
            m(prefix(""), false, 0, 0),
        ),
        entry("root, b, rule 0", &r, 0, 1, m(prefix(""), false, 0, 0)),
        entry(
            "root, b, rule 1, match 0",
            &r,
            1,
            0,
            m(prefix(""), false, 0, 0),
        ),
        entry(
            "root, b, rule 1, match 1",
            &r,
            1,
            1,
            m(prefix(""), false, 0, 0),
        ),
        entry("regex + method", &r, 0, 0, m(regex.clone(), true, 0, 0)),
        entry("regex", &r, 0, 0, m(regex, false, 0, 0)),
    ];
    let want: Vec<String> = entries.iter().map(|(l, _)| l.clone()).collect();
    // Several different starting orders all sort the same way.
    for rotation in 0..entries.len() {
        entries.rotate_left(1);
        if rotation % 2 == 1 {
            entries.reverse();
        }
        let mut sorted: Vec<&(String, Entry)> = entries.iter().collect();
        sorted.sort_by(|x, y| precedence(&x.1, &y.1));
        let got: Vec<String> = sorted.iter().map(|(l, _)| l.clone()).collect();
        assert_eq!(got, want);
    }
}

#[test]
fn prefix_length_counts_characters_not_bytes() {
    let r = route("ns/r", None);
    let (_, long_ascii) = entry("", &r, 0, 0, m(prefix("/abcd"), false, 0, 0));
    let (_, short_utf8) = entry("", &r, 1, 0, m(prefix("/äöü"), false, 0, 0));
    assert_eq!(precedence(&long_ascii, &short_utf8), Ordering::Less);
}

#[test]
fn lowercase_buffer() {
    let mut buf = [0u8; 253];
    assert_eq!(
        ascii_lowercase("Foo.Example.COM", &mut buf),
        Some("foo.example.com")
    );
    let long = "a".repeat(254);
    assert_eq!(ascii_lowercase(&long, &mut buf), None);
}

#[test]
fn tables_and_outcomes_are_send_and_sync() {
    // The waypoint shares the table across threads and holds a Forward across `.await`s.
    fn check<T: Send + Sync>() {}
    check::<RouteTable>();
    check::<crate::Outcome>();
    check::<crate::Forward>();
}
