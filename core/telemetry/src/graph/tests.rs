use super::*;

/// Label sets as a proxy writes them, from short arguments.
fn http(src: &str, dst: &str, version: &str, code: u16, n: f64) -> String {
    format!(
        "istio_requests_total{{reporter=\"waypoint\",source_workload=\"{src}\",source_workload_namespace=\"shop\",source_canonical_service=\"{src}\",destination_service_name=\"reviews\",destination_service_namespace=\"shop\",destination_workload=\"{dst}\",destination_workload_namespace=\"{ns}\",destination_canonical_service=\"{svc}\",destination_canonical_revision=\"{version}\",response_code=\"{code}\",connection_security_policy=\"mutual_tls\"}} {n}\n",
        ns = if dst == "unknown" { "unknown" } else { "shop" },
        svc = if dst == "unknown" {
            "unknown"
        } else {
            "reviews"
        },
    )
}

fn tcp(reporter: &str, src: &str, dst: &str, flags: &str, opened: f64, mtls: bool) -> String {
    let labels = format!(
        "reporter=\"{reporter}\",source_workload=\"{src}\",source_workload_namespace=\"shop\",destination_workload=\"{dst}\",destination_workload_namespace=\"shop\",destination_canonical_service=\"{dst}\",destination_canonical_revision=\"v1\",response_flags=\"{flags}\",connection_security_policy=\"{}\"",
        if mtls { "mutual_tls" } else { "none" }
    );
    let mut out = format!("istio_tcp_connections_opened_total{{{labels}}} {opened}\n");
    if flags == "DENY" {
        out += &format!("istio_tcp_connections_failed_total{{{labels}}} {opened}\n");
    } else {
        // Each connection: 100 bytes from the source, 7 back; a reporter counts its own side.
        let (sent, received) = if reporter == "destination" {
            (7.0, 100.0)
        } else {
            (100.0, 7.0)
        };
        out += &format!("istio_tcp_sent_bytes_total{{{labels}}} {}\n", opened * sent);
        out += &format!(
            "istio_tcp_received_bytes_total{{{labels}}} {}\n",
            opened * received
        );
    }
    out
}

fn bucket(dst: &str, le: &str, n: f64) -> String {
    format!(
        "istio_request_duration_milliseconds_bucket{{reporter=\"waypoint\",source_workload=\"frontend\",source_workload_namespace=\"shop\",destination_workload=\"{dst}\",destination_workload_namespace=\"shop\",destination_canonical_service=\"reviews\",connection_security_policy=\"mutual_tls\",le=\"{le}\"}} {n}\n"
    )
}

fn graph(text: &str) -> Graph {
    Graph::build(&parse_exposition(text).expect("parses"), None)
}

fn edge<'a>(g: &'a Graph, source: &str, target: &str) -> &'a GraphEdge {
    g.edges
        .iter()
        .find(|e| e.source == source && e.target == target)
        .unwrap_or_else(|| panic!("no edge {source} -> {target} in {g:#?}"))
}

#[test]
fn a_canary_split_is_two_edges_with_their_shares_and_versions() {
    let text = http("frontend", "reviews-v1", "v1", 200, 900.0)
        + &http("frontend", "reviews-v2", "v2", 200, 95.0)
        + &http("frontend", "reviews-v2", "v2", 503, 5.0);
    let g = graph(&text);
    let (v1, v2) = (
        edge(&g, "shop/frontend", "shop/reviews-v1"),
        edge(&g, "shop/frontend", "shop/reviews-v2"),
    );
    assert_eq!((v1.share, v2.share), (0.9, 0.1));
    assert_eq!((v1.state, v2.state), ("ok", "errors"));
    assert_eq!(v2.error_rate, 0.05);
    assert_eq!(v2.total, 100.0);
    let node = |id: &str| g.nodes.iter().find(|n| n.id == id).expect("node");
    assert_eq!(node("shop/reviews-v2").version, "v2");
    assert_eq!(node("shop/reviews-v1").service, "reviews");
    assert_eq!(g.window_secs, None);
    assert!(v1.rate.is_none());
}

#[test]
fn rates_and_latency_describe_the_window_between_two_snapshots() {
    let before = http("frontend", "reviews-v1", "v1", 200, 100.0)
        + &bucket("reviews-v1", "10", 100.0)
        + &bucket("reviews-v1", "50", 100.0)
        + &bucket("reviews-v1", "+Inf", 100.0);
    // 40 more requests in 4 s: 20 under 10 ms, 20 between 10 and 50 ms.
    let now = http("frontend", "reviews-v1", "v1", 200, 140.0)
        + &bucket("reviews-v1", "10", 120.0)
        + &bucket("reviews-v1", "50", 140.0)
        + &bucket("reviews-v1", "+Inf", 140.0);
    let (before, now) = (
        parse_exposition(&before).expect("before"),
        parse_exposition(&now).expect("now"),
    );
    let g = Graph::build(&now, Some((&before, 4.0)));
    let e = edge(&g, "shop/frontend", "shop/reviews-v1");
    assert_eq!(e.rate, Some(10.0));
    assert_eq!(e.total, 140.0);
    assert_eq!(e.p50_ms, Some(10.0));
    let p99 = e.p99_ms.expect("p99");
    assert!((p99 - 49.2).abs() < 1e-9, "{p99}");
    assert_eq!(g.window_secs, Some(4.0));
    // An edge quiet in the window keeps its state from the totals: denied stays denied.
    let refused = tcp("destination", "batch", "cart", "DENY", 2.0, true);
    let refused = parse_exposition(&refused).expect("parses");
    let quiet = Graph::build(&refused, Some((&refused, 4.0)));
    let e = edge(&quiet, "shop/batch", "shop/cart");
    assert_eq!((e.rate, e.state, e.denied), (Some(0.0), "denied", 2.0));
    // Counters that went down were reset (a restarted proxy): they count from zero.
    let reset = Graph::build(&before, Some((&now, 4.0)));
    assert_eq!(
        edge(&reset, "shop/frontend", "shop/reviews-v1").rate,
        Some(25.0)
    );
}

#[test]
fn denials_are_drawn_and_take_no_share() {
    let text = http("frontend", "reviews-v1", "v1", 200, 10.0)
        + &http("frontend", "unknown", "", 403, 3.0)
        + &tcp("destination", "batch", "cart", "DENY", 2.0, true)
        + &tcp("destination", "frontend", "cart", "-", 4.0, true);
    let g = graph(&text);
    let refused = edge(&g, "shop/frontend", "shop/reviews");
    assert_eq!(
        (refused.state, refused.denied, refused.share),
        ("denied", 3.0, 0.0)
    );
    assert_eq!(edge(&g, "shop/frontend", "shop/reviews-v1").share, 1.0);
    let service = g
        .nodes
        .iter()
        .find(|n| n.id == "shop/reviews")
        .expect("node");
    assert_eq!(service.kind, "service");
    let batch = edge(&g, "shop/batch", "shop/cart");
    assert_eq!(
        (batch.state, batch.protocol, batch.error_rate),
        ("denied", "tcp", 0.0)
    );
    let ok = edge(&g, "shop/frontend", "shop/cart");
    assert_eq!((ok.state, ok.mtls), ("ok", true));
    assert_eq!(
        (ok.bytes_sent, ok.bytes_received),
        (400.0, 28.0),
        "source to target first"
    );
}

#[test]
fn tcp_prefers_the_destination_and_waypoint_hops_are_left_out() {
    let text = tcp("source", "frontend", "cart", "-", 5.0, false)
        + &tcp("destination", "frontend", "cart", "-", 4.0, true)
        + &tcp("source", "frontend", "db", "-", 2.0, false)
        + &tcp("source", "frontend", "waypoint", "-", 7.0, true)
        + &tcp("destination", "waypoint", "reviews-v1", "-", 7.0, true)
        + "ambit_waypoint_info{name=\"waypoint\",namespace=\"shop\"} 1\n";
    let g = graph(&text);
    let cart = edge(&g, "shop/frontend", "shop/cart");
    assert_eq!((cart.total, cart.mtls), (4.0, true));
    let db = edge(&g, "shop/frontend", "shop/db");
    assert_eq!(
        (db.total, db.mtls),
        (2.0, false),
        "source-only edges are kept"
    );
    assert_eq!((db.bytes_sent, db.bytes_received), (200.0, 14.0));
    assert_eq!((cart.bytes_sent, cart.bytes_received), (400.0, 28.0));
    assert!(
        !g.edges
            .iter()
            .any(|e| e.source.ends_with("waypoint") || e.target.ends_with("waypoint")),
        "{g:#?}"
    );
    assert!(!g.nodes.iter().any(|n| n.name == "waypoint"), "{g:#?}");
}

fn buckets(b: &[(f64, f64)]) -> BTreeMap<OrdF64, f64> {
    b.iter().map(|(le, n)| (OrdF64(*le), *n)).collect()
}

#[test]
fn quantiles_follow_histogram_quantile() {
    let b = buckets(&[(1.0, 0.0), (5.0, 10.0), (f64::INFINITY, 20.0)]);
    assert_eq!(quantile(&b, 0.25), Some(3.0));
    // Past the last finite bound: that bound, as Prometheus answers.
    assert_eq!(quantile(&b, 0.99), Some(5.0));
    assert_eq!(quantile(&BTreeMap::new(), 0.5), None);
    // No +Inf bucket, or +Inf alone: no answer, as Prometheus gives NaN.
    assert_eq!(quantile(&buckets(&[(1.0, 3.0), (5.0, 4.0)]), 0.5), None);
    assert_eq!(quantile(&buckets(&[(f64::INFINITY, 4.0)]), 0.5), None);
    // Counts that went down (a reset between snapshots) are made non-decreasing.
    let b = buckets(&[(10.0, 20.0), (50.0, 5.0), (f64::INFINITY, 40.0)]);
    assert_eq!(quantile(&b, 0.5), Some(10.0));
}

#[test]
fn a_reporter_appearing_later_is_not_taken_for_a_reset() {
    // The source reported first; then the destination's series appear (its proxy was just
    // scraped for the first time). The window compares the destination with itself: 2 new
    // connections, not its lifetime total of 50.
    let before = tcp("source", "frontend", "cart", "-", 48.0, true);
    let now = tcp("source", "frontend", "cart", "-", 50.0, true)
        + &tcp("destination", "frontend", "cart", "-", 50.0, true);
    let later = tcp("source", "frontend", "cart", "-", 52.0, true)
        + &tcp("destination", "frontend", "cart", "-", 52.0, true);
    let parse = |t: &str| parse_exposition(t).expect("parses");
    let (before, now, later) = (parse(&before), parse(&now), parse(&later));
    let g = Graph::build(&later, Some((&now, 1.0)));
    assert_eq!(edge(&g, "shop/frontend", "shop/cart").rate, Some(2.0));
    // With no earlier destination counters, its window is everything so far.
    let g = Graph::build(&now, Some((&before, 1.0)));
    assert_eq!(edge(&g, "shop/frontend", "shop/cart").rate, Some(50.0));
}
