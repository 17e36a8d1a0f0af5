//! Istio-standard telemetry, so existing dashboards work unchanged.
//!
//! - [`Metrics`]: the ztunnel TCP metrics (`istio_tcp_connections_opened_total`,
//!   `istio_tcp_connections_closed_total`, `istio_tcp_connections_failed_total`,
//!   `istio_tcp_sent_bytes_total`, `istio_tcp_received_bytes_total`) keyed by Istio's label set
//!   ([`TcpLabels`], every label `unknown` when not known), rendered as Prometheus text.
//! - HTTP metrics for waypoints ([`Metrics::http`]): `istio_requests_total` and the
//!   `istio_request_duration_milliseconds`, `istio_request_bytes`, `istio_response_bytes`
//!   histograms, with the TCP label set plus `response_code` ([`HttpLabels`]).
//! - [`AccessLog`]: the "connection complete" record with ztunnel's field names, as text or JSON;
//!   [`RequestLog`]: one line per HTTP request at a waypoint.
//!
//! No global registry: a proxy owns its `Metrics` and serves [`Metrics::render`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Who reports a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reporter {
    /// The client side (outbound node proxy).
    Source,
    /// The server side (inbound node proxy).
    Destination,
    /// A waypoint.
    Waypoint,
}

/// Istio's TCP label set. Empty values render as `unknown`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TcpLabels {
    /// `reporter`.
    pub reporter: Option<Reporter>,
    /// `source_workload`.
    pub source_workload: String,
    /// `source_canonical_service` (also `source_app`).
    pub source_canonical_service: String,
    /// `source_canonical_revision` (also `source_version`).
    pub source_canonical_revision: String,
    /// `source_workload_namespace`.
    pub source_workload_namespace: String,
    /// `source_principal` (only from a verified certificate).
    pub source_principal: String,
    /// `source_cluster`.
    pub source_cluster: String,
    /// `destination_service` (hostname).
    pub destination_service: String,
    /// `destination_service_namespace`.
    pub destination_service_namespace: String,
    /// `destination_service_name`.
    pub destination_service_name: String,
    /// `destination_workload`.
    pub destination_workload: String,
    /// `destination_canonical_service` (also `destination_app`).
    pub destination_canonical_service: String,
    /// `destination_canonical_revision` (also `destination_version`).
    pub destination_canonical_revision: String,
    /// `destination_workload_namespace`.
    pub destination_workload_namespace: String,
    /// `destination_principal`.
    pub destination_principal: String,
    /// `destination_cluster`.
    pub destination_cluster: String,
    /// `response_flags`: `-` on success, else `DENY`, `CONNECT`, ...
    pub response_flags: String,
    /// `connection_security_policy`: `mutual_tls` or `unknown`.
    pub mutual_tls: bool,
}

/// The counters of one label set.
#[derive(Debug, Default)]
pub struct TcpCounters {
    opened: AtomicU64,
    closed: AtomicU64,
    failed: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
}

/// A metric family: name, help text, and how to read it from a label set's counters.
type Family = (&'static str, &'static str, fn(&TcpCounters) -> u64);

/// A histogram family: name, help text, and which histogram of a label set's stats.
type HistogramFamily = (&'static str, &'static str, fn(&HttpStats) -> &Histogram);

/// A proxy's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    tcp: Mutex<HashMap<TcpLabels, Arc<TcpCounters>>>,
    http: Mutex<HashMap<HttpLabels, Arc<HttpStats>>>,
}

/// Istio's HTTP label set: the TCP labels plus the response code and protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct HttpLabels {
    /// Everything the TCP metrics carry (`response_flags` included).
    pub peer: TcpLabels,
    /// `response_code`.
    pub response_code: u16,
    /// `request_protocol`: `grpc` when true, else `http`.
    pub grpc: bool,
}

/// Request duration buckets in milliseconds (Istio's defaults).
pub const DURATION_BUCKETS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Request and response size buckets in bytes (Istio's defaults: powers of ten).
pub const SIZE_BUCKETS: [f64; 10] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// A cumulative Prometheus histogram with fixed bounds and atomic counts.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Box<[AtomicU64]>,
    count: AtomicU64,
    /// Sum in millionths of the unit, so it stays an integer.
    sum_micros: AtomicU64,
}

/// The statistics of one HTTP label set.
#[derive(Debug)]
pub struct HttpStats {
    requests: AtomicU64,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
}

/// The "connection complete" access-log record (a plain record: build it with struct syntax).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessLog {
    /// `src.addr`.
    pub src_addr: String,
    /// `src.workload`.
    pub src_workload: String,
    /// `src.namespace`.
    pub src_namespace: String,
    /// `src.identity` (mTLS only).
    pub src_identity: String,
    /// `dst.addr`: the actual TCP destination.
    pub dst_addr: String,
    /// `dst.hbone_addr`: the CONNECT authority.
    pub dst_hbone_addr: String,
    /// `dst.service`.
    pub dst_service: String,
    /// `dst.workload`.
    pub dst_workload: String,
    /// `dst.namespace`.
    pub dst_namespace: String,
    /// `dst.identity`.
    pub dst_identity: String,
    /// `direction`: `inbound` or `outbound`.
    pub direction: &'static str,
    /// Bytes sent to the source.
    pub bytes_sent: u64,
    /// Bytes received from the source.
    pub bytes_recv: u64,
    /// How long the connection lasted.
    pub duration: Duration,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// One HTTP request handled by a waypoint (a plain record: build it with struct syntax).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestLog {
    /// `src.addr`: the connection's peer.
    pub src_addr: String,
    /// `src.identity`: the peer's SPIFFE id.
    pub src_identity: String,
    /// `request.principal`: `<iss>/<sub>` of a validated JWT.
    pub request_principal: String,
    /// `method`.
    pub method: String,
    /// `path` (with query).
    pub path: String,
    /// `authority` (Host).
    pub authority: String,
    /// `protocol`: `HTTP/1.1` or `HTTP/2`.
    pub protocol: String,
    /// `route`: `namespace/name` of the HTTPRoute that matched, if any.
    pub route: String,
    /// `dst.service`.
    pub dst_service: String,
    /// `upstream`: the endpoint the request went to.
    pub upstream: String,
    /// `response_code`.
    pub response_code: u16,
    /// `response_flags`, `-` when none.
    pub response_flags: String,
    /// `attempts` made upstream (retries + 1).
    pub attempts: u32,
    /// `bytes_recv`: request body bytes.
    pub bytes_recv: u64,
    /// `bytes_sent`: response body bytes.
    pub bytes_sent: u64,
    /// `duration`.
    pub duration: Duration,
    /// `trace_id` of the W3C trace context.
    pub trace_id: String,
    /// `reason`: why the proxy answered itself (deny, no route, ...).
    pub reason: String,
}

// === impl Metrics ===

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters for `labels` (created at zero on first use).
    pub fn tcp(&self, labels: &TcpLabels) -> Arc<TcpCounters> {
        let mut m = self.tcp.lock().unwrap_or_else(|p| p.into_inner());
        // Look up first: cloning the ~20 label strings is only needed for a new series.
        if let Some(c) = m.get(labels) {
            return c.clone();
        }
        m.entry(labels.clone()).or_default().clone()
    }

    /// The HTTP statistics for `labels` (created empty on first use).
    pub fn http(&self, labels: &HttpLabels) -> Arc<HttpStats> {
        let mut m = self.http.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = m.get(labels) {
            return c.clone();
        }
        m.entry(labels.clone())
            .or_insert_with(|| Arc::new(HttpStats::new()))
            .clone()
    }

    /// Everything in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = self.render_tcp();
        self.render_http(&mut out);
        out
    }

    fn render_http(&self, out: &mut String) {
        let m = self.http.lock().unwrap_or_else(|p| p.into_inner());
        if m.is_empty() {
            return;
        }
        let mut series: Vec<(String, &HttpStats)> = m
            .iter()
            .map(|(l, s)| {
                let mut labels = render_labels(&l.peer, if l.grpc { "grpc" } else { "http" });
                let _ = write!(labels, ",response_code=\"{}\"", l.response_code);
                (labels, &**s)
            })
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        let _ = writeln!(out, "# HELP istio_requests_total Total requests.");
        let _ = writeln!(out, "# TYPE istio_requests_total counter");
        for (labels, s) in &series {
            let v = s.requests.load(Ordering::Relaxed);
            let _ = writeln!(out, "istio_requests_total{{{labels}}} {v}");
        }
        let histograms: [HistogramFamily; 3] = [
            (
                "istio_request_duration_milliseconds",
                "Request duration in milliseconds",
                |s| &s.duration,
            ),
            ("istio_request_bytes", "Request body sizes in bytes", |s| {
                &s.request_bytes
            }),
            (
                "istio_response_bytes",
                "Response body sizes in bytes",
                |s| &s.response_bytes,
            ),
        ];
        for (name, help, get) in histograms {
            let _ = writeln!(out, "# HELP {name} {help}.");
            let _ = writeln!(out, "# TYPE {name} histogram");
            for (labels, s) in &series {
                get(s).render(out, name, labels);
            }
        }
    }

    fn render_tcp(&self) -> String {
        let m = self.tcp.lock().unwrap_or_else(|p| p.into_inner());
        let mut series: Vec<(String, &TcpCounters)> = m
            .iter()
            .map(|(l, c)| (render_labels(l, "tcp"), &**c))
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = String::new();
        let families: [Family; 5] = [
            (
                "istio_tcp_connections_opened_total",
                "Total TCP connections opened",
                |c| c.opened.load(Ordering::Relaxed),
            ),
            (
                "istio_tcp_connections_closed_total",
                "Total TCP connections closed",
                |c| c.closed.load(Ordering::Relaxed),
            ),
            (
                "istio_tcp_connections_failed_total",
                "Total TCP connections that failed",
                |c| c.failed.load(Ordering::Relaxed),
            ),
            (
                "istio_tcp_sent_bytes_total",
                "Bytes sent during TCP connections",
                |c| c.sent.load(Ordering::Relaxed),
            ),
            (
                "istio_tcp_received_bytes_total",
                "Bytes received during TCP connections",
                |c| c.received.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, get) in families {
            let _ = writeln!(out, "# HELP {name} {help}.");
            let _ = writeln!(out, "# TYPE {name} counter");
            for (labels, c) in &series {
                let v = get(c);
                if v > 0 || name.ends_with("opened_total") {
                    let _ = writeln!(out, "{name}{{{labels}}} {v}");
                }
            }
        }
        out
    }
}

impl TcpCounters {
    /// A connection opened.
    pub fn opened(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection closed, after moving `sent` bytes to and `received` bytes from the peer
    /// (reporter's view); `failed` when it ended on an error.
    pub fn closed(&self, sent: u64, received: u64, failed: bool) {
        self.closed.fetch_add(1, Ordering::Relaxed);
        self.sent.fetch_add(sent, Ordering::Relaxed);
        self.received.fetch_add(received, Ordering::Relaxed);
        if failed {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// === impl HttpStats ===

impl HttpStats {
    fn new() -> Self {
        Self {
            requests: AtomicU64::new(0),
            duration: Histogram::new(&DURATION_BUCKETS_MS),
            request_bytes: Histogram::new(&SIZE_BUCKETS),
            response_bytes: Histogram::new(&SIZE_BUCKETS),
        }
    }

    /// One request completed: how long it took and the body bytes each way.
    pub fn record(&self, duration: Duration, request_bytes: u64, response_bytes: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.duration.observe(duration.as_secs_f64() * 1000.0);
        self.request_bytes.observe(request_bytes as f64);
        self.response_bytes.observe(response_bytes as f64);
    }

    /// Requests recorded so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

// === impl Histogram ===

impl Histogram {
    /// An empty histogram with upper bounds `bounds` (ascending; `+Inf` is implicit).
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one value.
    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = (v.max(0.0) * 1e6).min(u64::MAX as f64) as u64;
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// How many values fell at or below `bound` (cumulative), if `bound` is one of the bounds.
    pub fn cumulative(&self, bound: f64) -> Option<u64> {
        let i = self.bounds.iter().position(|b| *b == bound)?;
        Some(
            self.counts[..=i]
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum(),
        )
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut acc = 0;
        for (b, c) in self.bounds.iter().zip(self.counts.iter()) {
            acc += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {acc}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

fn render_labels(l: &TcpLabels, protocol: &str) -> String {
    let reporter = match l.reporter {
        Some(Reporter::Source) => "source",
        Some(Reporter::Destination) => "destination",
        Some(Reporter::Waypoint) => "waypoint",
        None => "unknown",
    };
    let flags = if l.response_flags.is_empty() {
        "-"
    } else {
        &l.response_flags
    };
    let security = if l.mutual_tls {
        "mutual_tls"
    } else {
        "unknown"
    };
    let pairs: [(&str, &str); 23] = [
        ("reporter", reporter),
        ("source_workload", &l.source_workload),
        ("source_canonical_service", &l.source_canonical_service),
        ("source_canonical_revision", &l.source_canonical_revision),
        ("source_workload_namespace", &l.source_workload_namespace),
        ("source_principal", &l.source_principal),
        ("source_app", &l.source_canonical_service),
        ("source_version", &l.source_canonical_revision),
        ("source_cluster", &l.source_cluster),
        ("destination_service", &l.destination_service),
        (
            "destination_service_namespace",
            &l.destination_service_namespace,
        ),
        ("destination_service_name", &l.destination_service_name),
        ("destination_workload", &l.destination_workload),
        (
            "destination_canonical_service",
            &l.destination_canonical_service,
        ),
        (
            "destination_canonical_revision",
            &l.destination_canonical_revision,
        ),
        (
            "destination_workload_namespace",
            &l.destination_workload_namespace,
        ),
        ("destination_principal", &l.destination_principal),
        ("destination_app", &l.destination_canonical_service),
        ("destination_version", &l.destination_canonical_revision),
        ("destination_cluster", &l.destination_cluster),
        ("request_protocol", protocol),
        ("response_flags", flags),
        ("connection_security_policy", security),
    ];
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let v = if v.is_empty() { "unknown" } else { v };
        let _ = write!(out, "{k}=\"");
        for ch in v.chars() {
            match ch {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out
}

// === impl AccessLog ===

impl AccessLog {
    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("src.addr", self.src_addr.clone()),
            ("src.workload", self.src_workload.clone()),
            ("src.namespace", self.src_namespace.clone()),
            ("src.identity", self.src_identity.clone()),
            ("dst.addr", self.dst_addr.clone()),
            ("dst.hbone_addr", self.dst_hbone_addr.clone()),
            ("dst.service", self.dst_service.clone()),
            ("dst.workload", self.dst_workload.clone()),
            ("dst.namespace", self.dst_namespace.clone()),
            ("dst.identity", self.dst_identity.clone()),
            ("direction", self.direction.to_owned()),
            ("bytes_sent", self.bytes_sent.to_string()),
            ("bytes_recv", self.bytes_recv.to_string()),
            ("duration", format!("{}ms", self.duration.as_millis())),
        ];
        if let Some(e) = &self.error {
            f.push(("error", e.clone()));
        }
        f.retain(|(_, v)| !v.is_empty());
        f
    }

    /// `connection complete src.addr=... dst.addr=...` (values with spaces are quoted).
    pub fn to_text(&self) -> String {
        let mut out = String::from(if self.error.is_some() {
            "connection failed"
        } else {
            "connection complete"
        });
        for (k, v) in self.fields() {
            if v.contains(' ') || v.contains('"') {
                let _ = write!(out, " {k}={v:?}");
            } else {
                let _ = write!(out, " {k}={v}");
            }
        }
        out
    }

    /// One JSON object per line.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\"message\":\"");
        out.push_str(if self.error.is_some() {
            "connection failed"
        } else {
            "connection complete"
        });
        out.push('"');
        for (k, v) in self.fields() {
            let _ = write!(out, ",\"{k}\":\"{}\"", json_escape(&v));
        }
        out.push('}');
        out
    }
}

// === impl RequestLog ===

impl RequestLog {
    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("src.addr", self.src_addr.clone()),
            ("src.identity", self.src_identity.clone()),
            ("request.principal", self.request_principal.clone()),
            ("method", self.method.clone()),
            ("path", self.path.clone()),
            ("authority", self.authority.clone()),
            ("protocol", self.protocol.clone()),
            ("route", self.route.clone()),
            ("dst.service", self.dst_service.clone()),
            ("upstream", self.upstream.clone()),
            ("response_code", self.response_code.to_string()),
            ("response_flags", self.response_flags.clone()),
            ("attempts", self.attempts.to_string()),
            ("bytes_recv", self.bytes_recv.to_string()),
            ("bytes_sent", self.bytes_sent.to_string()),
            ("duration", format!("{}ms", self.duration.as_millis())),
            ("trace_id", self.trace_id.clone()),
            ("reason", self.reason.clone()),
        ];
        f.retain(|(_, v)| !v.is_empty());
        f
    }

    /// `request complete method=GET path=/ ...` (values with spaces are quoted).
    pub fn to_text(&self) -> String {
        let mut out = String::from("request complete");
        for (k, v) in self.fields() {
            if v.contains(' ') || v.contains('"') {
                let _ = write!(out, " {k}={v:?}");
            } else {
                let _ = write!(out, " {k}={v}");
            }
        }
        out
    }

    /// One JSON object per line.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\"message\":\"request complete\"");
        for (k, v) in self.fields() {
            let _ = write!(out, ",\"{k}\":\"{}\"", json_escape(&v));
        }
        out.push('}');
        out
    }
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_istio_names_and_labels() {
        let m = Metrics::new();
        let l = TcpLabels {
            reporter: Some(Reporter::Destination),
            source_workload: "app-b".into(),
            destination_principal: "spiffe://cluster.local/ns/a/sa/\"x\"".into(),
            mutual_tls: true,
            ..TcpLabels::default()
        };
        let c = m.tcp(&l);
        c.opened();
        c.closed(10, 20, false);
        let text = m.render();
        assert!(
            text.contains("# TYPE istio_tcp_connections_opened_total counter"),
            "{text}"
        );
        assert!(
            text.contains(
                "istio_tcp_sent_bytes_total{reporter=\"destination\",source_workload=\"app-b\""
            ),
            "{text}"
        );
        assert!(
            text.contains("destination_principal=\"spiffe://cluster.local/ns/a/sa/\\\"x\\\"\""),
            "{text}"
        );
        assert!(text.contains("source_cluster=\"unknown\""), "{text}");
        assert!(
            text.contains("connection_security_policy=\"mutual_tls\"} 10"),
            "{text}"
        );
        assert!(
            text.contains("istio_tcp_received_bytes_total{") && text.contains("} 20"),
            "{text}"
        );
        assert!(
            !text.contains("istio_tcp_connections_failed_total{"),
            "zero failures are omitted: {text}"
        );
    }

    #[test]
    fn http_metrics_and_histogram_buckets() {
        let m = Metrics::new();
        let mut l = HttpLabels {
            response_code: 200,
            ..HttpLabels::default()
        };
        l.peer.reporter = Some(Reporter::Waypoint);
        let s = m.http(&l);
        s.record(Duration::from_micros(700), 1024, 5);
        s.record(Duration::from_millis(30), 0, 0);
        assert_eq!(s.requests(), 2);
        assert_eq!(s.duration.cumulative(0.5), Some(0));
        assert_eq!(s.duration.cumulative(1.0), Some(1));
        assert_eq!(s.duration.cumulative(25.0), Some(1));
        assert_eq!(s.duration.cumulative(50.0), Some(2));
        assert_eq!(
            s.request_bytes.cumulative(1.0),
            Some(1),
            "0 bytes fall in le=1"
        );
        assert_eq!(s.request_bytes.cumulative(1000.0), Some(1));
        assert_eq!(s.request_bytes.cumulative(1e4), Some(2));
        let text = m.render();
        assert!(
            text.contains("# TYPE istio_requests_total counter"),
            "{text}"
        );
        assert!(
            text.contains("istio_requests_total{reporter=\"waypoint\""),
            "{text}"
        );
        assert!(
            text.contains("request_protocol=\"http\"") && text.contains("response_code=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("response_code=\"200\",le=\"0.5\"} 0")
                && text.contains("response_code=\"200\",le=\"1\"} 1")
                && text.contains("response_code=\"200\",le=\"+Inf\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("istio_request_duration_milliseconds_sum{") && text.contains("} 30.7"),
            "{text}"
        );
    }

    #[test]
    fn request_log_fields() {
        let r = RequestLog {
            method: "GET".into(),
            path: "/a b".into(),
            response_code: 403,
            reason: "RBAC: access denied".into(),
            ..RequestLog::default()
        };
        let t = r.to_text();
        assert!(
            t.starts_with("request complete method=GET path=\"/a b\" response_code=403"),
            "{t}"
        );
        assert!(r.to_json().contains("\"reason\":\"RBAC: access denied\""));
    }

    #[test]
    fn access_log_text_and_json() {
        let a = AccessLog {
            src_addr: "127.0.0.1:5000".into(),
            direction: "inbound",
            bytes_sent: 3,
            duration: Duration::from_millis(13),
            error: Some("policy \"x\" denied".into()),
            ..AccessLog::default()
        };
        assert_eq!(
            a.to_text(),
            "connection failed src.addr=127.0.0.1:5000 direction=inbound bytes_sent=3 bytes_recv=0 \
             duration=13ms error=\"policy \\\"x\\\" denied\""
        );
        assert!(
            a.to_json()
                .starts_with("{\"message\":\"connection failed\",\"src.addr\":\"127.0.0.1:5000\"")
        );
        assert!(
            a.to_json()
                .contains("\"error\":\"policy \\\"x\\\" denied\"")
        );
    }
}
