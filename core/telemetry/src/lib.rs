//! Istio-standard telemetry, so existing dashboards work unchanged.
//!
//! - [`Metrics`] ([`metrics`]): the ztunnel TCP metrics (`istio_tcp_connections_opened_total`,
//!   `istio_tcp_connections_closed_total`, `istio_tcp_connections_failed_total`,
//!   `istio_tcp_sent_bytes_total`, `istio_tcp_received_bytes_total`) keyed by Istio's label set
//!   ([`TcpLabels`], every label `unknown` when not known), rendered as Prometheus text; and
//!   the waypoint's HTTP metrics ([`Metrics::http`]): `istio_requests_total` and the
//!   `istio_request_duration_milliseconds`, `istio_request_bytes`, `istio_response_bytes`
//!   histograms ([`histogram`]), with the TCP label set plus `response_code` ([`HttpLabels`]).
//! - [`ResponseFlag`]: the `response_flags` label, typed (ztunnel's TCP flags, Envoy's HTTP
//!   flags); nowhere else is a flag a string.
//! - [`AccessLog`]: the "connection complete" record with ztunnel's field names, as text or
//!   JSON; [`RequestLog`]: one line per HTTP request at a waypoint.
//!
//! No global registry: a proxy owns its `Metrics` and serves [`Metrics::render`].
//!
//! ```
//! use ambit_telemetry::{Metrics, Reporter, ResponseFlag, TcpLabels};
//!
//! let metrics = Metrics::new();
//! let mut labels = TcpLabels::default();
//! labels.reporter = Some(Reporter::Destination);
//! labels.response_flags = ResponseFlag::Deny;
//! let c = metrics.tcp(&labels);
//! c.opened();
//! c.closed(labels.response_flags.is_failure());
//! let text = metrics.render();
//! assert!(text.contains("istio_tcp_connections_failed_total{reporter=\"destination\""));
//! assert!(text.contains("response_flags=\"DENY\""));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod access_log;
mod export;
mod flag;
pub mod graph;
pub mod histogram;
mod labels;
pub mod metrics;

pub use access_log::{AccessLog, RequestLog, json_escape, socket_addr_text};
pub use export::{Exporter, LogRecord, SpanKind, SpanRecord, sampled_at};
pub use flag::ResponseFlag;
pub use histogram::Histogram;
pub use labels::{HttpLabels, Reporter, TcpLabels};
pub use metrics::{ConnBytes, HttpStats, LabeledFamily, Metrics, TcpCounters};

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
        let conn = ConnBytes::open(c.clone());
        conn.sent(10);
        conn.received(20);
        assert_eq!(conn.close(false), (10, 20));
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
    fn flags_render_as_istio_spells_them() {
        assert_eq!(ResponseFlag::default().to_string(), "-");
        assert_eq!(ResponseFlag::NetworkPolicy.to_string(), "NETWORK_POLICY");
        assert_eq!(ResponseFlag::UpstreamRetryLimitExceeded.to_string(), "URX");
        assert!(!ResponseFlag::None.is_failure() && ResponseFlag::Deny.is_failure());
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
