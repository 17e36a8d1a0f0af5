//! The table as the waypoint uses it: traffic splitting statistics, concurrent rate limiting,
//! combining files, reloads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ambit_route::{Outcome, Rng, RouteTable, RouteTarget as Target, SplitMix64};
use http::{HeaderMap, Method};

const TARGET: Target<'static> = Target {
    service_namespace: "shop",
    service_name: "reviews",
    port: 9080,
    waypoint: Some(("shop", "waypoint")),
    authority: None,
    client_namespace: None,
};

fn table(yaml: &str) -> RouteTable {
    let loaded = RouteTable::parse(yaml, "test.yaml").expect("loads");
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    loaded.table
}

fn split(v1: u32, v2: u32) -> RouteTable {
    table(&format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: split, namespace: shop}}
spec:
  parentRefs: [{{group: "", kind: Service, name: reviews, port: 9080}}]
  rules:
  - backendRefs:
    - {{name: reviews-v1, port: 9080, weight: {v1}}}
    - {{name: reviews-v2, port: 9080, weight: {v2}}}
"#
    ))
}

/// How many of `n` requests go to reviews-v2.
fn count_v2(table: &RouteTable, n: usize, rng: &mut impl Rng) -> usize {
    let headers = HeaderMap::new();
    let now = Instant::now();
    (0..n)
        .filter(
            |_| match table.route(&TARGET, &Method::GET, "/", &headers, now, rng) {
                Outcome::Forward(f) => f.backend().name == "reviews-v2",
                other => panic!("{other:?}"),
            },
        )
        .count()
}

/// The 99.9% two-sided interval of a binomial(n, p) count, by the normal approximation:
/// mean ± 3.29 standard deviations.
fn binomial_bounds(n: usize, p: f64) -> (f64, f64) {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (mean - 3.29 * sd, mean + 3.29 * sd)
}

#[test]
fn a_90_10_split_is_within_the_binomial_bound() {
    let n = 10_000;
    // 1000 ± 3.29 × 30 → (901.3, 1098.7).
    let (low, high) = binomial_bounds(n, 0.1);
    assert!((low - 901.3).abs() < 0.01 && (high - 1098.7).abs() < 0.01);
    let table = split(90, 10);
    for seed in [1, 2, 3, 0xdead_beef] {
        let v2 = count_v2(&table, n, &mut SplitMix64::new(seed)) as f64;
        assert!(
            (low..=high).contains(&v2),
            "seed {seed}: {v2} of {n} to v2, outside [{low:.1}, {high:.1}]"
        );
    }
}

#[test]
fn the_split_bound_catches_a_wrong_split() {
    // The same check fails for weights that are merely close (85/15): it has power.
    let n = 10_000;
    let (low, high) = binomial_bounds(n, 0.1);
    let v2 = count_v2(&split(85, 15), n, &mut SplitMix64::new(1)) as f64;
    assert!(!(low..=high).contains(&v2), "{v2}");
}

#[test]
fn weights_are_proportional_for_uneven_totals() {
    // 1 : 2 over 30,000 draws; p = 2/3.
    let n = 30_000;
    let (low, high) = binomial_bounds(n, 2.0 / 3.0);
    let v2 = count_v2(&split(1, 2), n, &mut SplitMix64::new(9)) as f64;
    assert!(
        (low..=high).contains(&v2),
        "{v2} outside [{low:.1}, {high:.1}]"
    );
}

#[test]
fn randomness_is_drawn_only_for_a_real_choice() {
    let single = table(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: one, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules: [{backendRefs: [{name: reviews-v2, port: 9080}]}]
"#,
    );
    let mut draws = 0;
    let mut rng = || {
        draws += 1;
        0u64
    };
    assert_eq!(count_v2(&single, 10, &mut rng), 10);
    assert_eq!(draws, 0, "one backend needs no draw");

    // Two backendRefs: one draw per request, and a weight of 0 is never chosen, even for the
    // largest draw.
    let mut draws = 0;
    let mut top = || {
        draws += 1;
        u64::MAX
    };
    assert_eq!(count_v2(&split(5, 0), 10, &mut top), 0);
    assert_eq!(draws, 10);
}

const LIMITED: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: limited, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - filters: [{type: ExtensionRef, extensionRef: {group: ambit.dev, kind: LocalRateLimit, name: hundred}}]
    backendRefs: [{name: reviews-v1, port: 9080}]
---
apiVersion: ambit.dev/v1alpha1
kind: LocalRateLimit
metadata: {name: hundred, namespace: shop}
spec: {maxTokens: 100, tokensPerFill: 100, fillInterval: 1m}
"#;

#[test]
fn the_rate_limit_never_over_admits_under_contention() {
    let table = table(LIMITED);
    let now = Instant::now();
    let admitted = AtomicUsize::new(0);
    let limited = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for seed in 0..4 {
            let (table, admitted, limited) = (&table, &admitted, &limited);
            s.spawn(move || {
                let headers = HeaderMap::new();
                let mut rng = SplitMix64::new(seed);
                for _ in 0..1000 {
                    match table.route(&TARGET, &Method::GET, "/", &headers, now, &mut rng) {
                        Outcome::Forward(_) => admitted.fetch_add(1, Ordering::Relaxed),
                        Outcome::RateLimited => limited.fetch_add(1, Ordering::Relaxed),
                        other => panic!("{other:?}"),
                    };
                }
            });
        }
    });
    assert_eq!(admitted.into_inner(), 100);
    assert_eq!(limited.into_inner(), 3900);
}

#[test]
fn rate_limit_state_survives_unrelated_reloads() {
    let mut table = table(LIMITED);
    let headers = HeaderMap::new();
    let now = Instant::now();
    let mut rng = SplitMix64::new(1);
    let mut route = |t: &RouteTable| {
        matches!(
            t.route(&TARGET, &Method::GET, "/", &headers, now, &mut rng),
            Outcome::Forward(_)
        )
    };
    assert_eq!((0..150).filter(|_| route(&table)).count(), 100);
    let warnings = table
        .insert(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: other, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: ratings, port: 9080}]
  rules: [{backendRefs: [{name: ratings, port: 9080}]}]
"#,
            "other.yaml",
        )
        .expect("loads");
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert!(
        !route(&table),
        "the bucket was reset by an unrelated insert"
    );
    // Changing the limit itself starts a new bucket.
    table
        .insert(
            &LIMITED.replace("maxTokens: 100", "maxTokens: 5"),
            "test.yaml",
        )
        .expect("loads");
    assert_eq!((0..10).filter(|_| route(&table)).count(), 5);
}

const USES_FAULT: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - filters: [{type: ExtensionRef, extensionRef: {group: ambit.dev, kind: Fault, name: down}}]
    backendRefs: [{name: reviews-v1, port: 9080}]
"#;

const FAULT: &str = r#"
apiVersion: ambit.dev/v1alpha1
kind: Fault
metadata: {name: down, namespace: shop}
spec: {abort: {httpStatus: 418, percentage: {value: 100}}}
"#;

fn status(table: &RouteTable) -> Option<u16> {
    let outcome = table.route(
        &TARGET,
        &Method::GET,
        "/",
        &HeaderMap::new(),
        Instant::now(),
        &mut SplitMix64::new(0),
    );
    outcome.status().map(|s| s.as_u16())
}

#[test]
fn references_resolve_across_files() {
    let routes = RouteTable::parse(USES_FAULT, "routes.yaml").expect("loads");
    assert_eq!(routes.warnings.len(), 1, "{:#?}", routes.warnings);
    assert!(
        routes.warnings[0]
            .message
            .contains("Fault shop/down is not loaded")
    );
    let mut table = routes.table;
    assert_eq!(status(&table), Some(500));

    let faults = RouteTable::parse(FAULT, "faults.yaml").expect("loads");
    assert!(faults.warnings.is_empty());
    let warnings = table.merge(&faults.table);
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert_eq!(status(&table), Some(418));

    let warnings = table.remove_file("faults.yaml");
    assert_eq!(warnings.len(), 1);
    assert_eq!(status(&table), Some(500));

    // insert resolves in one step, without a warning about the reference.
    let mut table = RouteTable::new();
    assert!(
        table
            .insert(FAULT, "faults.yaml")
            .expect("loads")
            .is_empty()
    );
    assert!(
        table
            .insert(USES_FAULT, "routes.yaml")
            .expect("loads")
            .is_empty()
    );
    assert_eq!(status(&table), Some(418));
}

#[test]
fn a_later_definition_replaces_an_earlier_one() {
    let mut table = RouteTable::new();
    table.insert(USES_FAULT, "a.yaml").expect("loads");
    let plain = USES_FAULT.replace(
        "  - filters: [{type: ExtensionRef, extensionRef: {group: ambit.dev, kind: Fault, name: down}}]\n    backendRefs",
        "  - backendRefs",
    );
    let warnings = table.insert(&plain, "b.yaml").expect("loads");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!(warnings[0].object, "HTTPRoute shop/r");
    assert!(
        warnings[0].message.contains("from a.yaml"),
        "{}",
        warnings[0]
    );
    assert_eq!(status(&table), None);
    assert_eq!(table.len(), 1);
    assert_eq!(table.route_names().collect::<Vec<_>>(), ["shop/r"]);
}

#[test]
fn a_failed_insert_leaves_the_table_unchanged() {
    let mut table = RouteTable::new();
    table.insert(USES_FAULT, "a.yaml").expect("loads");
    let before = table.clone();
    let err = table
        .insert("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: x}\nspec: {rules: 7}\n", "bad.yaml")
        .expect_err("bad");
    assert_eq!(err.file, "bad.yaml");
    assert_eq!(err.object, "HTTPRoute default/x");
    assert_eq!(table.len(), before.len());
    assert_eq!(status(&table), Some(500));
}

#[test]
fn an_empty_table_routes_nothing() {
    let table = RouteTable::new();
    assert!(table.is_empty());
    let outcome = table.route(
        &TARGET,
        &Method::GET,
        "/",
        &HeaderMap::new(),
        Instant::now(),
        &mut SplitMix64::new(0),
    );
    assert!(matches!(outcome, Outcome::Unrouted));
    assert_eq!(outcome.status(), None);
}

#[test]
fn deeply_nested_yaml_is_an_error_not_a_crash() {
    let yaml = format!("spec: {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
    assert!(RouteTable::parse(&yaml, "deep.yaml").is_err());
}

#[test]
fn a_delay_is_reported_with_the_forward() {
    let yaml = format!(
        "{}---\n{}",
        USES_FAULT.replace("name: down", "name: slow"),
        "apiVersion: ambit.dev/v1alpha1\nkind: Fault\nmetadata: {name: slow, namespace: shop}\n\
         spec: {delay: {fixedDelay: 250ms, percentage: {value: 100}}}\n"
    );
    let table = table(&yaml);
    let outcome = table.route(
        &TARGET,
        &Method::GET,
        "/",
        &HeaderMap::new(),
        Instant::now(),
        &mut SplitMix64::new(0),
    );
    let Outcome::Forward(f) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(f.delay, Some(Duration::from_millis(250)));
}

#[test]
fn many_exact_paths_keep_their_precedence() {
    // Enough Exact matches for the table to look them up by path instead of scanning them.
    let mut yaml = String::new();
    for i in 0..12 {
        yaml.push_str(&format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
             metadata: {{name: exact-{i:02}, namespace: shop}}\nspec:\n\
             \x20 parentRefs: [{{group: \"\", kind: Service, name: reviews, port: 9080}}]\n\
             \x20 rules:\n\
             \x20 - matches: [{{path: {{type: Exact, value: /e{i}}}}}]\n\
             \x20   backendRefs: [{{name: plain-{i}, port: 9080}}]\n\
             \x20 - matches: [{{path: {{type: Exact, value: /e{i}}}, headers: [{{name: x-beta, value: \"1\"}}]}}]\n\
             \x20   backendRefs: [{{name: beta-{i}, port: 9080}}]\n\
             \x20 - matches: [{{path: {{type: Exact, value: /only-beta{i}}}, headers: [{{name: x-beta, value: \"1\"}}]}}]\n\
             \x20   backendRefs: [{{name: only-beta-{i}, port: 9080}}]\n"
        ));
    }
    yaml.push_str(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {name: prefixes, namespace: shop}\nspec:\n\
         \x20 parentRefs: [{group: \"\", kind: Service, name: reviews, port: 9080}]\n\
         \x20 rules:\n\
         \x20 - matches: [{path: {value: /only-beta7}}]\n\
         \x20   backendRefs: [{name: prefix-only-beta7, port: 9080}]\n\
         \x20 - backendRefs: [{name: root, port: 9080}]\n",
    );
    let table = table(&yaml);
    let route = |path: &str, beta: bool| {
        let mut headers = HeaderMap::new();
        if beta {
            headers.insert("x-beta", http::HeaderValue::from_static("1"));
        }
        let outcome = table.route(
            &TARGET,
            &Method::GET,
            path,
            &headers,
            Instant::now(),
            &mut SplitMix64::new(0),
        );
        match outcome {
            Outcome::Forward(f) => f.backend().name.clone(),
            other => panic!("{path}: {other:?}"),
        }
    };
    // Same path: the match with a header ranks first, despite coming later in the route.
    assert_eq!(route("/e3", true), "beta-3");
    assert_eq!(route("/e3", false), "plain-3");
    assert_eq!(route("/e11?x=1", false), "plain-11");
    // An Exact match that fails on its header falls through to the prefixes.
    assert_eq!(route("/only-beta7", true), "only-beta-7");
    assert_eq!(route("/only-beta7", false), "prefix-only-beta7");
    assert_eq!(route("/only-beta5", false), "root");
    // Not an exact path at all.
    assert_eq!(route("/e3/sub", true), "root");
    assert_eq!(route("/E3", false), "root");
}
