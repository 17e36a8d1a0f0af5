//! The service graph, drawn from Istio's standard metrics: workloads by service and version as
//! nodes, who-talks-to-whom as edges with rates, errors, latency, bytes, mTLS and denials.
//!
//! The input is samples ([`parse_exposition`] of the proxies' `/metrics`, or the same series
//! from Prometheus' API); two snapshots some seconds apart give rates. HTTP edges come from
//! `istio_requests_total` and `istio_request_duration_milliseconds` (reporter `waypoint`, else
//! `destination`, else `source`); TCP edges from `istio_tcp_*` (reporter `destination`, else
//! `source`). Traffic through a waypoint is drawn from client to backend: the waypoint's own
//! hops (known from `ambit_waypoint_info`) are left out, as Kiali does.
//!
//! ```
//! use ambit_telemetry::graph::{Graph, parse_exposition};
//!
//! let text = r#"istio_requests_total{reporter="waypoint",source_workload="web",source_workload_namespace="shop",destination_workload="api-v1",destination_workload_namespace="shop",destination_canonical_service="api",destination_canonical_revision="v1",response_code="200",connection_security_policy="mutual_tls"} 9
//! istio_requests_total{reporter="waypoint",source_workload="web",source_workload_namespace="shop",destination_workload="api-v2",destination_workload_namespace="shop",destination_canonical_service="api",destination_canonical_revision="v2",response_code="200",connection_security_policy="mutual_tls"} 1
//! "#;
//! let graph = Graph::build(&parse_exposition(text)?, None);
//! let v1 = graph.edges.iter().find(|e| e.target == "shop/api-v1").expect("edge");
//! assert_eq!((v1.share, v1.mtls), (0.9, true));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod exposition;

use std::collections::{BTreeMap, BTreeSet};

pub use exposition::{ExpositionError, Sample, parse_exposition};

/// The graph at one moment, ready to serialise for the page.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Graph {
    /// Workloads (and services answered without a workload), sorted by id.
    pub nodes: Vec<GraphNode>,
    /// Traffic between them, sorted by source, target and protocol.
    pub edges: Vec<GraphEdge>,
    /// The seconds between the two snapshots rates come from; `None` when built from one
    /// (edges then carry totals and no rates).
    pub window_secs: Option<f64>,
}

/// A workload, or a service when the answer came from no workload (a waypoint's 403).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GraphNode {
    /// `namespace/workload` (or `namespace/service` for a service node).
    pub id: String,
    /// The workload's name (or the service's).
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The service it is grouped under: its canonical service.
    pub service: String,
    /// Its version: the canonical revision (`""` when unknown).
    pub version: String,
    /// `workload` or `service`.
    pub kind: &'static str,
}

/// Traffic from one node to another over one protocol.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GraphEdge {
    /// The source node's id.
    pub source: String,
    /// The target node's id.
    pub target: String,
    /// `http` (requests through a waypoint) or `tcp` (connections).
    pub protocol: &'static str,
    /// Requests (HTTP) or connections opened (TCP), in total.
    pub total: f64,
    /// Per second over the window, when there is one.
    pub rate: Option<f64>,
    /// This edge's part of the source's traffic to the target's service, 0 to 1 (the split of
    /// a canary); by rate when there is one, else by total.
    pub share: f64,
    /// The fraction of requests answered 5xx (or of connections that failed).
    pub error_rate: f64,
    /// Requests or connections refused by policy (HTTP 401/403, TCP `DENY`).
    pub denied: f64,
    /// Whether every series of the edge was mutual TLS.
    pub mtls: bool,
    /// Median request duration in milliseconds (HTTP), from the histogram.
    pub p50_ms: Option<f64>,
    /// 99th percentile request duration in milliseconds (HTTP).
    pub p99_ms: Option<f64>,
    /// Bytes from source to target (TCP), in total.
    pub bytes_sent: f64,
    /// Bytes from target back to source (TCP), in total.
    pub bytes_received: f64,
    /// `ok`, `errors` (some 5xx or failures) or `denied` (all refused by policy).
    pub state: &'static str,
}

/// What one edge gathers from the series (totals, and cumulative histogram buckets).
#[derive(Debug, Clone, Default)]
struct Tally {
    total: f64,
    errors: f64,
    denied: f64,
    plaintext: bool,
    sent: f64,
    received: f64,
    /// Upper bound (ms) → cumulative count.
    buckets: BTreeMap<OrdF64, f64>,
}

/// An f64 that sorts (bucket bounds are never NaN).
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrdF64(f64);
impl Eq for OrdF64 {}
impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for OrdF64 {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

type EdgeKey = (String, String, &'static str);

impl Graph {
    /// The graph from `now`; with `before` (an earlier snapshot and the seconds since it),
    /// rates, shares and latency describe that window.
    pub fn build(now: &[Sample], before: Option<(&[Sample], f64)>) -> Self {
        let waypoints = waypoints(now);
        let (nodes, current) = tally(now, &waypoints);
        let earlier = before.map(|(s, secs)| (tally(s, &waypoints).1, secs));
        // Per edge, the best reporter present now; its window is against the same reporter's
        // earlier counters (another reporter's are other counters, not a reset).
        let mut best: BTreeMap<&EdgeKey, (u8, &Tally)> = BTreeMap::new();
        for ((key, rank), t) in &current {
            best.entry(key).or_insert((*rank, t));
        }
        let mut edges: Vec<GraphEdge> = best
            .into_iter()
            .map(|(key, (rank, t))| {
                let window = earlier
                    .as_ref()
                    .map(|(e, secs)| (e.get(&(key.clone(), rank)), *secs));
                edge(key, t, window)
            })
            .collect();
        shares(&mut edges, &nodes);
        Self {
            nodes: nodes.into_values().collect(),
            edges,
            window_secs: earlier.map(|(_, s)| s),
        }
    }
}

/// `namespace/name` of every waypoint that says what it is.
fn waypoints(samples: &[Sample]) -> BTreeSet<String> {
    samples
        .iter()
        .filter(|s| s.name == "ambit_waypoint_info")
        .map(|s| format!("{}/{}", s.label("namespace"), s.label("name")))
        .collect()
}

/// The node on `side` (`source` or `destination`) of a series.
fn node_of(s: &Sample, side: &str) -> Option<GraphNode> {
    let get = |k: &str| {
        let v = s.label(&format!("{side}_{k}"));
        if v == "unknown" { "" } else { v }
    };
    let (name, namespace, kind) = match (get("workload"), get("workload_namespace")) {
        ("", _) | (_, "") if side == "destination" => {
            (get("service_name"), get("service_namespace"), "service")
        }
        (w, ns) => (w, ns, "workload"),
    };
    if name.is_empty() {
        return None;
    }
    let service = match get("canonical_service") {
        "" => name,
        svc => svc,
    };
    Some(GraphNode {
        id: format!("{namespace}/{name}"),
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        service: service.to_owned(),
        version: get("canonical_revision").to_owned(),
        kind,
    })
}

/// Reporter preference for a protocol: lower is better.
fn rank(protocol: &str, reporter: &str) -> Option<u8> {
    match (protocol, reporter) {
        ("http", "waypoint") => Some(0),
        (_, "destination") => Some(1),
        (_, "source") => Some(2),
        _ => None,
    }
}

/// Nodes, and the tally of every edge as each reporter (by rank) saw it.
fn tally(
    samples: &[Sample],
    waypoints: &BTreeSet<String>,
) -> (BTreeMap<String, GraphNode>, BTreeMap<(EdgeKey, u8), Tally>) {
    let mut nodes = BTreeMap::new();
    let mut by_reporter: BTreeMap<(EdgeKey, u8), Tally> = BTreeMap::new();
    for s in samples {
        let protocol = match s.name.as_str() {
            "istio_requests_total" | "istio_request_duration_milliseconds_bucket" => "http",
            "istio_tcp_connections_opened_total"
            | "istio_tcp_connections_failed_total"
            | "istio_tcp_sent_bytes_total"
            | "istio_tcp_received_bytes_total" => "tcp",
            _ => continue,
        };
        let Some(rank) = rank(protocol, s.label("reporter")) else {
            continue;
        };
        let (Some(src), Some(dst)) = (node_of(s, "source"), node_of(s, "destination")) else {
            continue;
        };
        if waypoints.contains(&src.id) || waypoints.contains(&dst.id) {
            continue;
        }
        let key = (src.id.clone(), dst.id.clone(), protocol);
        nodes.entry(src.id.clone()).or_insert(src);
        nodes.entry(dst.id.clone()).or_insert(dst);
        let t = by_reporter.entry((key, rank)).or_default();
        if s.label("connection_security_policy") != "mutual_tls" {
            t.plaintext = true;
        }
        let code = s.label("response_code");
        match s.name.as_str() {
            "istio_requests_total" => {
                t.total += s.value;
                if code.starts_with('5') {
                    t.errors += s.value;
                }
                if code == "401" || code == "403" {
                    t.denied += s.value;
                }
            }
            "istio_request_duration_milliseconds_bucket" => {
                if let Ok(le) = s.label("le").parse::<f64>().or_else(|e| {
                    if s.label("le") == "+Inf" {
                        Ok(f64::INFINITY)
                    } else {
                        Err(e)
                    }
                }) {
                    *t.buckets.entry(OrdF64(le)).or_default() += s.value;
                }
            }
            "istio_tcp_connections_opened_total" => {
                t.total += s.value;
                if s.label("response_flags") == "DENY" {
                    t.denied += s.value;
                }
            }
            "istio_tcp_connections_failed_total" if s.label("response_flags") != "DENY" => {
                t.errors += s.value;
            }
            // A proxy counts bytes from its own side: "sent" is what it sent its peer. The
            // edge's `bytes_sent` is the source's, so the destination's are swapped.
            "istio_tcp_sent_bytes_total" if rank == 1 => t.received += s.value,
            "istio_tcp_received_bytes_total" if rank == 1 => t.sent += s.value,
            "istio_tcp_sent_bytes_total" => t.sent += s.value,
            "istio_tcp_received_bytes_total" => t.received += s.value,
            _ => {}
        }
    }
    (nodes, by_reporter)
}

/// One edge: totals now, and over the window when there is an earlier tally.
fn edge(key: &EdgeKey, now: &Tally, earlier: Option<(Option<&Tally>, f64)>) -> GraphEdge {
    let window = earlier.map(|(t, secs)| (delta(now, t), secs));
    // What the state, errors, denials and latency describe: the window when it saw traffic,
    // else everything so far (an edge quiet lately keeps showing what it was).
    let basis = window
        .as_ref()
        .map(|(d, _)| d)
        .filter(|d| d.total > 0.0)
        .unwrap_or(now);
    let rate = window.as_ref().map(|(d, secs)| d.total / secs.max(1e-9));
    let frac = |x: f64| {
        if basis.total > 0.0 {
            x / basis.total
        } else {
            0.0
        }
    };
    let state = if basis.total > 0.0 && basis.denied >= basis.total {
        "denied"
    } else if basis.errors > 0.0 {
        "errors"
    } else {
        "ok"
    };
    GraphEdge {
        source: key.0.clone(),
        target: key.1.clone(),
        protocol: key.2,
        total: now.total,
        rate,
        share: 0.0,
        error_rate: frac(basis.errors),
        denied: basis.denied,
        mtls: !now.plaintext,
        p50_ms: quantile(&basis.buckets, 0.5),
        p99_ms: quantile(&basis.buckets, 0.99),
        bytes_sent: now.sent,
        bytes_received: now.received,
        state,
    }
}

/// `now - earlier`, each counter on its own; a counter that went down was reset and counts
/// from zero.
fn delta(now: &Tally, earlier: Option<&Tally>) -> Tally {
    let Some(e) = earlier else {
        return now.clone();
    };
    let d = |a: f64, b: f64| if a >= b { a - b } else { a };
    Tally {
        total: d(now.total, e.total),
        errors: d(now.errors, e.errors),
        denied: d(now.denied, e.denied),
        plaintext: now.plaintext,
        sent: d(now.sent, e.sent),
        received: d(now.received, e.received),
        buckets: now
            .buckets
            .iter()
            .map(|(le, n)| (*le, d(*n, e.buckets.get(le).copied().unwrap_or(0.0))))
            .collect(),
    }
}

/// The `q` quantile from cumulative buckets, as Prometheus' `histogram_quantile` computes it:
/// the count is the `+Inf` bucket's, counts are made non-decreasing (a reset between two
/// snapshots can break that), and the rank is interpolated linearly within its bucket. `None`
/// without a `+Inf` bucket, with fewer than two buckets, or without observations.
fn quantile(buckets: &BTreeMap<OrdF64, f64>, q: f64) -> Option<f64> {
    let (last, count) = buckets.iter().next_back()?;
    if !last.0.is_infinite() || buckets.len() < 2 || *count <= 0.0 {
        return None;
    }
    let mut running = 0.0f64;
    let monotonic: Vec<(f64, f64)> = buckets
        .iter()
        .map(|(le, n)| {
            running = running.max(*n);
            (le.0, running)
        })
        .collect();
    let count = running;
    let rank = q * count;
    let mut lower = (0.0, 0.0);
    for (i, (le, n)) in monotonic.iter().enumerate() {
        if *n >= rank {
            if le.is_infinite() {
                // Past the last finite bound: that bound.
                return Some(monotonic.get(i.wrapping_sub(1)).map_or(0.0, |b| b.0));
            }
            if i == 0 && *le <= 0.0 {
                return Some(*le);
            }
            let within = if *n > lower.1 {
                (rank - lower.1) / (n - lower.1)
            } else {
                0.0
            };
            return Some(lower.0 + (le - lower.0) * within);
        }
        lower = (*le, *n);
    }
    None
}

/// Each edge's part of its source's traffic to the target's service (by rate, else total).
/// Edges refused outright take no part: a denied client does not shift a canary's split.
fn shares(edges: &mut [GraphEdge], nodes: &BTreeMap<String, GraphNode>) {
    let group = |e: &GraphEdge| {
        let svc = nodes
            .get(&e.target)
            .map(|n| (n.namespace.clone(), n.service.clone()));
        (e.source.clone(), svc, e.protocol)
    };
    let amount = |e: &GraphEdge| {
        if e.state == "denied" {
            0.0
        } else {
            e.rate.unwrap_or(e.total)
        }
    };
    let mut sums: BTreeMap<_, f64> = BTreeMap::new();
    for e in edges.iter() {
        *sums.entry(group(e)).or_default() += amount(e);
    }
    for e in edges.iter_mut() {
        let sum = sums.get(&group(e)).copied().unwrap_or(0.0);
        e.share = if sum > 0.0 { amount(e) / sum } else { 0.0 };
    }
}

#[cfg(test)]
mod tests;
