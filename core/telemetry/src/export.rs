//! What a proxy hands an exporter (OTLP or any other): finished spans and access-log records,
//! as plain data. The proxies depend on the [`Exporter`] trait only; the OTLP client lives
//! with the I/O (`ambit_proxy::otlp`), so a proxy built without it carries no gRPC stack.

use std::time::SystemTime;

/// The kind of a span, as OpenTelemetry names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Serves a caller: an inbound tunnel, a waypoint request.
    Server,
    /// Calls out: an outbound tunnel.
    Client,
}

/// A finished span (a plain record: build it with struct syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanRecord {
    /// The trace it belongs to.
    pub trace_id: [u8; 16],
    /// Its own id.
    pub span_id: [u8; 8],
    /// The span it is a child of, when one came in.
    pub parent_span_id: Option<[u8; 8]>,
    /// `GET reviews`, `inbound`, `outbound`, ...
    pub name: String,
    /// Server or client.
    pub kind: SpanKind,
    /// When it started.
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
    /// Attributes, OpenTelemetry's names where there is one (`http.request.method`, ...).
    pub attributes: Vec<(&'static str, String)>,
    /// Why it failed, if it did (the span's status is then an error).
    pub error: Option<String>,
}

/// One access-log record (a plain record: build it with struct syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// When it was written.
    pub time: SystemTime,
    /// The message: `connection complete`, `request complete`, ...
    pub body: &'static str,
    /// The record's fields, as the text and JSON logs name them.
    pub attributes: Vec<(&'static str, String)>,
    /// The trace and span it belongs to, when known.
    pub trace: Option<([u8; 16], [u8; 8])>,
}

/// Where finished spans and log records go. Implementations must never block or fail the
/// caller: they queue (bounded) and count what they drop.
pub trait Exporter: Send + Sync + std::fmt::Debug {
    /// Whether spans of `trace_id` are kept (every proxy on the path decides alike).
    fn sampled(&self, trace_id: &[u8; 16]) -> bool;
    /// Queues a span (dropped and counted when the queue is full).
    fn export_span(&self, span: SpanRecord);
    /// Queues a log record (dropped and counted when the queue is full).
    fn export_log(&self, log: LogRecord);
    /// The exporter's own metrics (what it dropped), for the proxy to serve with its own.
    fn families(&self) -> Vec<crate::LabeledFamily> {
        Vec::new()
    }
}

/// Whether a trace is sampled at `rate` (0 to 1), from its id alone, as OpenTelemetry's
/// `TraceIdRatioBased` sampler decides: the low 8 bytes as a number below `rate × 2⁶⁴`. Every
/// hop with the same rate keeps or drops the same traces, with no flag to propagate.
pub fn sampled_at(rate: f64, trace_id: &[u8; 16]) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 || rate.is_nan() {
        return false;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    let x = u64::from_be_bytes(low);
    (x as f64) < rate * (u64::MAX as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_by_trace_id_and_rate() {
        let id = |low: u64| {
            let mut t = [7u8; 16];
            t[8..].copy_from_slice(&low.to_be_bytes());
            t
        };
        assert!(sampled_at(1.0, &id(u64::MAX)));
        assert!(!sampled_at(0.0, &id(0)));
        assert!(sampled_at(0.5, &id(u64::MAX / 4)));
        assert!(!sampled_at(0.5, &id(u64::MAX / 4 * 3)));
        let kept = (0..10_000u64)
            .filter(|i| sampled_at(0.1, &id(i.wrapping_mul(0x9E37_79B9_7F4A_7C15))))
            .count();
        assert!((800..1200).contains(&kept), "{kept}");
    }
}
