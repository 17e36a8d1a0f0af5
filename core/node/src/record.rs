//! What a connection's access-log line is made of, held for the connection's life as shared
//! handles and addresses: the line's strings are made once, when it is written.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::time::SystemTime;

use ambit_hbone::{Authority, TraceParent};
use ambit_identity::SpiffeId;
use ambit_state::{Service, Workload};
use ambit_telemetry::{AccessLog, ConnBytes, Exporter, SpanKind, SpanRecord, TcpCounters};

/// A connection's access-log record. Ten owned strings held by each of 10,000 idle tunnels
/// were ~700 bytes apiece; this is a few pointers and two addresses.
#[derive(Debug)]
pub(crate) struct ConnLog {
    pub(crate) direction: &'static str,
    pub(crate) src_addr: SocketAddr,
    pub(crate) src: Option<Arc<Workload>>,
    /// Name and namespace from the peer's baggage, when its address is not a known workload.
    pub(crate) src_named: Option<Box<(String, String)>>,
    pub(crate) src_identity: Option<SpiffeId>,
    pub(crate) dst_addr: Option<SocketAddr>,
    pub(crate) dst_hbone_addr: Option<Authority>,
    pub(crate) dst: Option<Arc<Workload>>,
    pub(crate) service: Option<Arc<Service>>,
    pub(crate) dst_identity: Option<SpiffeId>,
    /// Its bytes, from when it carries any (counted in its label set's series as they move).
    pub(crate) bytes: Option<ConnBytes>,
    /// Which way of its copy the reporter sends in (`a → b`, else `b → a`).
    pub(crate) a_to_b_is_sent: bool,
    pub(crate) duration: Duration,
    pub(crate) error: Option<String>,
    /// The connection's span, when spans are exported and it is part of a trace (an HBONE
    /// tunnel); boxed, so that a proxy without an exporter holds one pointer for it.
    pub(crate) span: Option<Box<SpanIds>>,
    /// The HTTP version of its HBONE tunnel, if it has one.
    pub(crate) transport: Option<ambit_hbone::Transport>,
    /// A UDP flow (else TCP): a flag, not a string, as every idle tunnel holds the record.
    pub(crate) udp: bool,
}

/// A connection's place in a trace.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpanIds {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    pub(crate) parent: Option<[u8; 8]>,
    pub(crate) kind: SpanKind,
}

impl SpanIds {
    /// The span of an outbound tunnel, whose `traceparent` names it (a new trace).
    pub(crate) fn outbound(sent: &TraceParent) -> Self {
        Self {
            trace_id: sent.trace_id,
            span_id: sent.parent_id,
            parent: None,
            kind: SpanKind::Client,
        }
    }

    /// The span of an inbound tunnel: a child of the `traceparent` that came with it, or the
    /// root of a new trace when the peer sent none (`from_peer` false).
    pub(crate) fn inbound(received: &TraceParent, from_peer: bool) -> Self {
        Self {
            trace_id: received.trace_id,
            span_id: TraceParent::random().parent_id,
            parent: from_peer.then_some(received.parent_id),
            kind: SpanKind::Server,
        }
    }
}

impl ConnLog {
    /// A record for a connection from `src_addr`, the rest filled in as it is learnt.
    pub(crate) fn new(direction: &'static str, src_addr: SocketAddr) -> Self {
        Self {
            direction,
            src_addr,
            src: None,
            src_named: None,
            src_identity: None,
            dst_addr: None,
            dst_hbone_addr: None,
            dst: None,
            service: None,
            dst_identity: None,
            bytes: None,
            a_to_b_is_sent: false,
            duration: Duration::ZERO,
            error: None,
            span: None,
            transport: None,
            udp: false,
        }
    }

    /// Opens the connection in `counters`; its copy's `a → b` is what the reporter sends when
    /// `a_to_b_is_sent` (the record is the copy's [`ambit_hbone::Meter`]).
    pub(crate) fn count(&mut self, counters: Arc<TcpCounters>, a_to_b_is_sent: bool) {
        self.bytes = Some(ConnBytes::open(counters));
        self.a_to_b_is_sent = a_to_b_is_sent;
    }

    /// Bytes so far `(toward the source, toward the destination)`, whichever proxy reports:
    /// the access line's `bytes_sent` and `bytes_recv`.
    pub(crate) fn by_end(&self) -> (u64, u64) {
        let (sent, received) = self.bytes.as_ref().map_or((0, 0), ConnBytes::totals);
        if self.direction == "outbound" {
            (received, sent)
        } else {
            (sent, received)
        }
    }

    /// Closes the connection in its counters (`failed` when it ended on an error).
    pub(crate) fn close(&self, failed: bool) {
        if let Some(b) = &self.bytes {
            b.close(failed);
        }
    }

    /// Hands the record, and its span when sampled, to `exporter`.
    pub(crate) fn export(&self, record: &AccessLog, exporter: &dyn Exporter) {
        let trace = self.span.as_ref().map(|s| (s.trace_id, s.span_id));
        let log = record.to_record(trace);
        if let Some(ids) = self
            .span
            .as_deref()
            .filter(|s| exporter.sampled(&s.trace_id))
        {
            let end = SystemTime::now();
            exporter.export_span(SpanRecord {
                trace_id: ids.trace_id,
                span_id: ids.span_id,
                parent_span_id: ids.parent,
                name: self.direction.to_owned(),
                kind: ids.kind,
                start: end.checked_sub(self.duration).unwrap_or(end),
                end,
                attributes: log.attributes.clone(),
                error: self.error.clone(),
            });
        }
        exporter.export_log(log);
    }

    /// The line's fields, as the telemetry crate writes them.
    pub(crate) fn to_access_log(&self) -> AccessLog {
        let text = |v: Option<&dyn std::fmt::Display>| v.map(|v| v.to_string()).unwrap_or_default();
        // The counters are the reporter's view; the record's are the source's side of the
        // connection ("unflipped", as ztunnel's access log does): the outbound reporter sends
        // what the source sent.
        let (bytes_sent, bytes_recv) = self.by_end();
        let (src_workload, src_namespace) = match (&self.src, &self.src_named) {
            (Some(w), _) => (w.name.clone(), w.namespace.clone()),
            (None, Some(n)) => (n.0.clone(), n.1.clone()),
            (None, None) => Default::default(),
        };
        AccessLog {
            src_addr: ambit_telemetry::socket_addr_text(&self.src_addr),
            src_workload,
            src_namespace,
            src_identity: text(self.src_identity.as_ref().map(|i| i as _)),
            dst_addr: self
                .dst_addr
                .as_ref()
                .map(ambit_telemetry::socket_addr_text)
                .unwrap_or_default(),
            dst_hbone_addr: match &self.dst_hbone_addr {
                Some(Authority::Addr(a)) => ambit_telemetry::socket_addr_text(a),
                other => text(other.as_ref().map(|a| a as _)),
            },
            dst_service: self
                .service
                .as_ref()
                .map(|s| s.hostname.clone())
                .unwrap_or_default(),
            dst_workload: self
                .dst
                .as_ref()
                .map(|w| w.name.clone())
                .unwrap_or_default(),
            dst_namespace: self
                .dst
                .as_ref()
                .map(|w| w.namespace.clone())
                .unwrap_or_default(),
            dst_identity: text(self.dst_identity.as_ref().map(|i| i as _)),
            direction: self.direction,
            bytes_sent,
            bytes_recv,
            duration: self.duration,
            error: self.error.clone(),
            hbone_transport: self.transport.map(|t| t.as_str()).unwrap_or_default(),
            protocol: if self.udp { "udp" } else { "" },
        }
    }
}

/// The record counts its copy's bytes as they move (see [`ConnLog::count`]).
impl ambit_hbone::Meter for ConnLog {
    fn a_to_b(&self, n: u64) {
        match &self.bytes {
            Some(b) if self.a_to_b_is_sent => b.sent(n),
            Some(b) => b.received(n),
            None => {}
        }
    }

    fn b_to_a(&self, n: u64) {
        match &self.bytes {
            Some(b) if self.a_to_b_is_sent => b.received(n),
            Some(b) => b.sent(n),
            None => {}
        }
    }
}
