//! Istio-standard telemetry, so existing dashboards work unchanged.
//!
//! - [`Metrics`]: the ztunnel TCP metrics (`istio_tcp_connections_opened_total`,
//!   `istio_tcp_connections_closed_total`, `istio_tcp_connections_failed_total`,
//!   `istio_tcp_sent_bytes_total`, `istio_tcp_received_bytes_total`) keyed by Istio's label set
//!   ([`TcpLabels`], every label `unknown` when not known), rendered as Prometheus text.
//! - [`AccessLog`]: the "connection complete" record with ztunnel's field names, as text or JSON.
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

/// A proxy's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    tcp: Mutex<HashMap<TcpLabels, Arc<TcpCounters>>>,
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

    /// Everything in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let m = self.tcp.lock().unwrap_or_else(|p| p.into_inner());
        let mut series: Vec<(String, &TcpCounters)> =
            m.iter().map(|(l, c)| (render_labels(l), &**c)).collect();
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

fn render_labels(l: &TcpLabels) -> String {
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
        ("request_protocol", "tcp"),
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
