//! A proxy's Istio metrics: TCP counters and HTTP statistics by label set, rendered as
//! Prometheus text.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::histogram::{DURATION_BUCKETS_MS, Histogram, SIZE_BUCKETS};
use crate::labels::{HttpLabels, TcpLabels, render_labels};

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
    // foldhash, not SipHash: every request and connection looks its label set up here, and
    // SipHash over its strings was ~2.2k of the waypoint's 101.5k instructions per request.
    tcp: Mutex<HashMap<TcpLabels, Arc<TcpCounters>, foldhash::fast::RandomState>>,
    http: Mutex<HashMap<HttpLabels, Arc<HttpStats>, foldhash::fast::RandomState>>,
    /// (reporter, would-be decision, deciding policy) → count.
    dry_run: Mutex<HashMap<(&'static str, &'static str, String), u64>>,
    /// Families registered with [`Metrics::counter`] and [`Metrics::gauge`], by name.
    families: Mutex<Vec<LabeledFamily>>,
}

/// A counter or gauge family with its own label names: ambit's operational metrics (accept
/// errors, the DNS proxy, the in-pod workload manager) beside Istio's fixed label sets.
/// Cheap to clone; clones share the values.
#[derive(Debug, Clone)]
pub struct LabeledFamily {
    inner: Arc<FamilyInner>,
}

#[derive(Debug)]
struct FamilyInner {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    gauge: bool,
    values: Mutex<std::collections::BTreeMap<Vec<String>, u64>>,
}

/// The statistics of one HTTP label set.
#[derive(Debug)]
pub struct HttpStats {
    requests: AtomicU64,
    pub(crate) duration: Histogram,
    pub(crate) request_bytes: Histogram,
    pub(crate) response_bytes: Histogram,
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

    /// Counts a connection or request the `reporter` saw whose outcome dry-run policies would
    /// change: to `allowed` (or not), decided by `policy` (empty when no policy would decide).
    /// Dry-run policies are never enforced; this is how their effect is seen.
    pub fn dry_run(&self, reporter: &'static str, allowed: bool, policy: &str) {
        let decision = if allowed { "allow" } else { "deny" };
        let mut m = self.dry_run.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((reporter, decision, policy.to_owned()))
            .or_default() += 1;
    }

    /// The counter family `name` with `labels` (registered on first use; later calls with the
    /// same name return the same family).
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> LabeledFamily {
        self.family(name, help, labels, false)
    }

    /// The gauge family `name` with `labels`, as [`Metrics::counter`].
    pub fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> LabeledFamily {
        self.family(name, help, labels, true)
    }

    fn family(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        gauge: bool,
    ) -> LabeledFamily {
        let mut all = self.families.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = all.iter().find(|f| f.inner.name == name) {
            return f.clone();
        }
        let f = LabeledFamily::new(name, help, labels, gauge);
        all.push(f.clone());
        f
    }

    /// Renders `family` (made elsewhere, e.g. by an exporter) with these metrics; a family of
    /// the same name already here wins.
    pub fn register(&self, family: &LabeledFamily) {
        let mut all = self.families.lock().unwrap_or_else(|p| p.into_inner());
        if !all.iter().any(|f| f.inner.name == family.inner.name) {
            all.push(family.clone());
        }
    }

    /// Everything in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = self.render_tcp();
        self.render_http(&mut out);
        self.render_dry_run(&mut out);
        let families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        for f in families.iter() {
            f.render(&mut out);
        }
        out
    }

    fn render_dry_run(&self, out: &mut String) {
        let m = self.dry_run.lock().unwrap_or_else(|p| p.into_inner());
        if m.is_empty() {
            return;
        }
        let mut series: Vec<_> = m.iter().collect();
        series.sort();
        let name = "ambit_dry_run_decisions_total";
        let _ = writeln!(
            out,
            "# HELP {name} Connections and requests whose outcome dry-run authorization policies would change (not enforced)."
        );
        let _ = writeln!(out, "# TYPE {name} counter");
        for ((reporter, decision, policy), n) in series {
            let _ = writeln!(
                out,
                "{name}{{reporter=\"{reporter}\",decision=\"{decision}\",policy=\"{}\"}} {n}",
                crate::labels::escape_label(policy)
            );
        }
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

// === impl LabeledFamily ===

impl LabeledFamily {
    /// A family of its own, rendered by whichever [`Metrics`] it is
    /// [registered](Metrics::register) with; `gauge` for a gauge, else a counter.
    pub fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        gauge: bool,
    ) -> Self {
        Self {
            inner: Arc::new(FamilyInner {
                name,
                help,
                labels,
                gauge,
                values: Mutex::new(Default::default()),
            }),
        }
    }

    /// Adds one to the series with label `values` (in the family's label order).
    pub fn inc(&self, values: &[&str]) {
        self.add(values, 1);
    }

    /// Adds `n` to the series with label `values`.
    pub fn add(&self, values: &[&str], n: u64) {
        let mut m = self.lock();
        let key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        *m.entry(key).or_default() += n;
    }

    /// Sets the series with label `values` to `n` (gauges).
    pub fn set(&self, values: &[&str], n: u64) {
        let key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        self.lock().insert(key, n);
    }

    /// The value of the series with label `values` (0 when it was never touched).
    pub fn get(&self, values: &[&str]) -> u64 {
        let key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        self.lock().get(&key).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<Vec<String>, u64>> {
        self.inner.values.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn render(&self, out: &mut String) {
        let m = self.lock();
        if m.is_empty() {
            return;
        }
        let FamilyInner {
            name, help, labels, ..
        } = &*self.inner;
        let kind = if self.inner.gauge { "gauge" } else { "counter" };
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (values, n) in m.iter() {
            let rendered: Vec<String> = labels
                .iter()
                .zip(values)
                .map(|(l, v)| format!("{l}=\"{}\"", crate::labels::escape_label(v)))
                .collect();
            if rendered.is_empty() {
                let _ = writeln!(out, "{name} {n}");
            } else {
                let _ = writeln!(out, "{name}{{{}}} {n}", rendered.join(","));
            }
        }
    }
}

impl TcpCounters {
    /// A connection opened.
    pub fn opened(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` more bytes sent to the peer (reporter's view), counted as they move.
    pub fn sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` more bytes received from the peer (reporter's view), counted as they move.
    pub fn received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
    }

    /// A connection closed; `failed` when it ended on an error. Its bytes were counted as
    /// they moved ([`TcpCounters::sent`], [`ConnBytes`]).
    pub fn closed(&self, failed: bool) {
        self.closed.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One connection's bytes: added to its label set's counters as they move (so a long-lived
/// connection shows in the metrics while open), and kept for its access-log record (so one
/// that ends in a reset or a revocation is logged with what crossed it).
#[derive(Debug)]
pub struct ConnBytes {
    counters: Arc<TcpCounters>,
    sent: AtomicU64,
    received: AtomicU64,
}

impl ConnBytes {
    /// A connection counted in `counters`, opening it there.
    pub fn open(counters: Arc<TcpCounters>) -> Self {
        counters.opened();
        Self {
            counters,
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
        }
    }

    /// `n` more bytes sent to the peer.
    pub fn sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
        self.counters.sent(n);
    }

    /// `n` more bytes received from the peer.
    pub fn received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
        self.counters.received(n);
    }

    /// `(sent, received)` so far.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
        )
    }

    /// Closes the connection in its counters; returns `(sent, received)`.
    pub fn close(&self, failed: bool) -> (u64, u64) {
        self.counters.closed(failed);
        self.totals()
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
