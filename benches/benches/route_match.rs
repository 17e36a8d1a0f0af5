//! HTTPRoute lookup in a realistic waypoint table: 50 routes on one Service (each with an Exact
//! health-check rule and a PathPrefix rule needing a header and a query parameter, split 90/10
//! over two backends) plus a catch-all route, 101 sorted matches in all.

use std::hint::black_box;
use std::time::Instant;

use ambit_route::{Outcome, RouteTable, RouteTarget as Target, SplitMix64};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};

fn routes() -> String {
    let mut yaml = String::new();
    for i in 0..50 {
        yaml.push_str(&format!(
            r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: svc-{i:02}, namespace: shop}}
spec:
  parentRefs: [{{group: "", kind: Service, name: api, port: 8080}}]
  rules:
  - matches: [{{path: {{type: Exact, value: /svc{i}/health}}, method: GET}}]
    backendRefs: [{{name: health, port: 8080}}]
  - matches:
    - path: {{type: PathPrefix, value: /svc{i}}}
      headers: [{{name: x-tenant, value: t{i}}}]
      queryParams: [{{name: id, type: RegularExpression, value: "[0-9]+"}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {{set: [{{name: x-route, value: svc-{i}}}]}}
    backendRefs:
    - {{name: svc-{i}-v1, port: 8080, weight: 90}}
    - {{name: svc-{i}-v2, port: 8080, weight: 10}}
    timeouts: {{request: 10s}}
"#
        ));
    }
    yaml.push_str(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: zz-default, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: api, port: 8080}]
  rules: [{backendRefs: [{name: api, port: 8080}]}]
"#,
    );
    yaml
}

fn bench(c: &mut Criterion) {
    let loaded = RouteTable::parse(&routes(), "bench.yaml").expect("routes load");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let table = loaded.table;
    assert_eq!(table.len(), 51);
    let target = Target {
        service_namespace: "shop",
        service_name: "api",
        port: 8080,
        waypoint: Some(("shop", "waypoint")),
        authority: None,
        client_namespace: None,
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        "host",
        HeaderValue::from_static("api.shop.svc.cluster.local"),
    );
    headers.insert("user-agent", HeaderValue::from_static("curl/8.5.0"));
    headers.insert("accept", HeaderValue::from_static("*/*"));
    headers.insert("x-tenant", HeaderValue::from_static("t49"));
    let now = Instant::now();
    let mut rng = SplitMix64::new(1);

    // /svc49 sorts 91st of 101: after 50 Exact matches and 40 longer-or-equal prefixes.
    let near_end = "/svc49/items?id=7";
    match table.route(&target, &Method::GET, near_end, &headers, now, &mut rng) {
        Outcome::Forward(f) => assert_eq!(f.route(), "shop/svc-49"),
        other => panic!("{other:?}"),
    }
    c.bench_function("route_match/prefix_header_query_near_end", |b| {
        b.iter(|| {
            table.route(
                black_box(&target),
                &Method::GET,
                black_box(near_end),
                black_box(&headers),
                now,
                &mut rng,
            )
        })
    });

    // Misses every specific match and falls to the catch-all: a scan of all 101.
    match table.route(&target, &Method::GET, "/other", &headers, now, &mut rng) {
        Outcome::Forward(f) => assert_eq!(f.route(), "shop/zz-default"),
        other => panic!("{other:?}"),
    }
    c.bench_function("route_match/catch_all_last", |b| {
        b.iter(|| {
            table.route(
                black_box(&target),
                &Method::GET,
                black_box("/other"),
                black_box(&headers),
                now,
                &mut rng,
            )
        })
    });

    // The first entry: an Exact match.
    c.bench_function("route_match/exact_first", |b| {
        b.iter(|| {
            table.route(
                black_box(&target),
                &Method::GET,
                black_box("/svc0/health"),
                black_box(&headers),
                now,
                &mut rng,
            )
        })
    });

    // Decide and apply the request edits, as the waypoint does per request.
    let request = http::Request::builder()
        .uri(near_end)
        .header("x-tenant", "t49")
        .body(())
        .expect("request");
    let (parts, ()) = request.into_parts();
    c.bench_function("route_match/decide_and_apply_request", |b| {
        b.iter(|| {
            let mut parts = parts.clone();
            if let Outcome::Forward(f) = table.route(
                &target,
                &Method::GET,
                near_end,
                &parts.headers,
                now,
                &mut rng,
            ) {
                f.apply_request(&mut parts);
            }
            parts
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
