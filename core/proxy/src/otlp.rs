//! OTLP export of spans and access-log records over gRPC, with the message and client types of
//! the `opentelemetry-proto` crate (the OpenTelemetry project's own generated code, kept in
//! step with the spec; no hand-written protobuf).
//!
//! The data path never waits for it: [`OtlpExporter`] implements
//! [`ambit_telemetry::Exporter`] with a bounded queue per signal that it never blocks on. A
//! record that finds the queue full is dropped and counted in
//! `ambit_otlp_dropped_total{signal,reason="queue_full"}`; a batch the collector does not take
//! in time is dropped and counted with `reason="export_failed"`. Batches go out when full or
//! every `interval`, each export bounded by `timeout`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ambit_telemetry::{Exporter, LabeledFamily, LogRecord, SpanKind, SpanRecord};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1 as logs;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1 as trace;
use tokio::sync::mpsc;
use tracing::warn;

/// Where and how to export.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OtlpConfig {
    /// The collector's gRPC endpoint, e.g. `http://127.0.0.1:4317`.
    pub endpoint: String,
    /// Resource attributes (`service.name`, `k8s.pod.name`, ...), on every batch.
    pub resource: Vec<(String, String)>,
    /// The fraction of traces whose spans are exported (0 to 1), decided by trace id.
    pub sample_rate: f64,
    /// Export spans.
    pub traces: bool,
    /// Export access-log records.
    pub logs: bool,
    /// Records queued per signal at most; beyond it they are dropped (and counted).
    pub queue: usize,
    /// Records per export at most.
    pub batch: usize,
    /// How long a record may wait for a full batch.
    pub interval: Duration,
    /// How long one export may take.
    pub timeout: Duration,
}

impl OtlpConfig {
    /// Traces and logs to `endpoint` for `service_name`, every trace sampled, 2,048 queued,
    /// batches of 512 at least once a second, 5 s per export.
    pub fn new(endpoint: &str, service_name: &str) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            resource: vec![("service.name".to_owned(), service_name.to_owned())],
            sample_rate: 1.0,
            traces: true,
            logs: true,
            queue: 2048,
            batch: 512,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
        }
    }
}

/// Why an exporter could not be made.
#[derive(Debug, thiserror::Error)]
#[error("OTLP endpoint {endpoint:?}: {message}")]
pub struct OtlpError {
    endpoint: String,
    message: String,
}

/// The OTLP exporter; see the module docs. Start it inside a tokio runtime.
#[derive(Debug)]
pub struct OtlpExporter {
    sample_rate: f64,
    spans: Option<mpsc::Sender<SpanRecord>>,
    logs: Option<mpsc::Sender<LogRecord>>,
    dropped: LabeledFamily,
}

impl OtlpExporter {
    /// Starts the export tasks on the current tokio runtime. The collector is connected to
    /// lazily: an unreachable one costs dropped records, never a failed start or a blocked
    /// caller. The drop counts are in [`Exporter::families`].
    pub fn start(config: OtlpConfig) -> Result<Arc<Self>, OtlpError> {
        let err = |message: String| OtlpError {
            endpoint: config.endpoint.clone(),
            message,
        };
        let channel = tonic::transport::Endpoint::from_shared(config.endpoint.clone())
            .map_err(|e| err(e.to_string()))?
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .connect_lazy();
        let dropped = LabeledFamily::new(
            "ambit_otlp_dropped_total",
            "OTLP records dropped, by signal and reason (queue_full, export_failed); the data path never waits for export.",
            &["signal", "reason"],
            false,
        );
        let resource = Resource {
            attributes: config
                .resource
                .iter()
                .map(|(k, v)| attribute(k, v))
                .collect(),
            ..Default::default()
        };
        let batching = Batching {
            batch: config.batch.max(1),
            interval: config.interval,
            dropped: dropped.clone(),
        };
        let queue = config.queue.max(1);
        let spans = config.traces.then(|| {
            let (tx, rx) = mpsc::channel(queue);
            let (client, resource) = (TraceServiceClient::new(channel.clone()), resource.clone());
            tokio::spawn(export_loop(rx, batching.clone(), "traces", move |batch| {
                let (mut client, req) = (client.clone(), spans_request(&resource, batch));
                async move { client.export(req).await.map(drop) }
            }));
            tx
        });
        let logs = config.logs.then(|| {
            let (tx, rx) = mpsc::channel(queue);
            let (client, resource) = (LogsServiceClient::new(channel.clone()), resource.clone());
            tokio::spawn(export_loop(rx, batching.clone(), "logs", move |batch| {
                let (mut client, req) = (client.clone(), logs_request(&resource, batch));
                async move { client.export(req).await.map(drop) }
            }));
            tx
        });
        Ok(Arc::new(Self {
            sample_rate: config.sample_rate,
            spans,
            logs,
            dropped,
        }))
    }
}

impl Exporter for OtlpExporter {
    fn sampled(&self, trace_id: &[u8; 16]) -> bool {
        self.spans.is_some() && ambit_telemetry::sampled_at(self.sample_rate, trace_id)
    }

    fn export_span(&self, span: SpanRecord) {
        if let Some(tx) = &self.spans
            && tx.try_send(span).is_err()
        {
            self.dropped.inc(&["traces", "queue_full"]);
        }
    }

    fn export_log(&self, log: LogRecord) {
        if let Some(tx) = &self.logs
            && tx.try_send(log).is_err()
        {
            self.dropped.inc(&["logs", "queue_full"]);
        }
    }

    fn families(&self) -> Vec<LabeledFamily> {
        vec![self.dropped.clone()]
    }
}

/// How records are gathered into exports.
#[derive(Debug, Clone)]
struct Batching {
    batch: usize,
    interval: Duration,
    dropped: LabeledFamily,
}

impl Batching {
    /// The next batch: waits for one record, then gathers up to `batch` for at most
    /// `interval`. `None` when every sender is gone.
    async fn next<T>(&self, rx: &mut mpsc::Receiver<T>) -> Option<Vec<T>> {
        let first = rx.recv().await?;
        let mut out = vec![first];
        let deadline = tokio::time::Instant::now() + self.interval;
        while out.len() < self.batch {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => out.push(r),
                Ok(None) | Err(_) => break,
            }
        }
        Some(out)
    }

    fn failed(&self, signal: &str, n: usize, e: &tonic::Status) {
        if self.dropped.get(&[signal, "export_failed"]) == 0 {
            warn!(signal, error = %e.message(), code = ?e.code(), "OTLP export failed; dropping (logged once, counted in ambit_otlp_dropped_total)");
        }
        self.dropped.add(&[signal, "export_failed"], n as u64);
    }
}

/// Sends batches from `rx` with `send` until every sender is gone; a batch that fails is
/// dropped and counted under `signal`.
async fn export_loop<T, Fut>(
    mut rx: mpsc::Receiver<T>,
    batching: Batching,
    signal: &'static str,
    mut send: impl FnMut(Vec<T>) -> Fut,
) where
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    while let Some(batch) = batching.next(&mut rx).await {
        let n = batch.len();
        if let Err(e) = send(batch).await {
            batching.failed(signal, n, &e);
        }
    }
}

fn spans_request(resource: &Resource, batch: Vec<SpanRecord>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![trace::ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![trace::ScopeSpans {
                scope: Some(scope()),
                spans: batch.into_iter().map(span).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn logs_request(resource: &Resource, batch: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![logs::ResourceLogs {
            resource: Some(resource.clone()),
            scope_logs: vec![logs::ScopeLogs {
                scope: Some(scope()),
                log_records: batch.into_iter().map(log_record).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "ambit".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    }
}

fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A span as OTLP carries it.
fn span(s: SpanRecord) -> trace::Span {
    let kind = match s.kind {
        SpanKind::Server => trace::span::SpanKind::Server,
        SpanKind::Client => trace::span::SpanKind::Client,
    };
    let status = match &s.error {
        Some(e) => trace::Status {
            message: e.clone(),
            code: trace::status::StatusCode::Error as i32,
        },
        None => trace::Status::default(),
    };
    trace::Span {
        trace_id: s.trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        parent_span_id: s.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        name: s.name,
        kind: kind as i32,
        start_time_unix_nano: nanos(s.start),
        end_time_unix_nano: nanos(s.end),
        attributes: s.attributes.iter().map(|(k, v)| attribute(k, v)).collect(),
        status: Some(status),
        // Sampled (it is exported), with whether the parent is remote known (0x100): a
        // parent is always another proxy or the application (0x200).
        flags: 0x101 | if s.parent_span_id.is_some() { 0x200 } else { 0 },
        ..Default::default()
    }
}

/// An access-log record as an OTLP log record (INFO; fields as attributes).
fn log_record(r: LogRecord) -> logs::LogRecord {
    let (trace_id, span_id) = r
        .trace
        .map(|(t, s)| (t.to_vec(), s.to_vec()))
        .unwrap_or_default();
    logs::LogRecord {
        time_unix_nano: nanos(r.time),
        observed_time_unix_nano: nanos(r.time),
        severity_number: logs::SeverityNumber::Info as i32,
        severity_text: "INFO".to_owned(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(r.body.to_owned())),
        }),
        attributes: r.attributes.iter().map(|(k, v)| attribute(k, v)).collect(),
        trace_id,
        span_id,
        event_name: "access".to_owned(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_records_carry_ids_times_and_attributes() {
        let start = UNIX_EPOCH + Duration::from_secs(10);
        let s = span(SpanRecord {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: Some([3; 8]),
            name: "GET reviews".into(),
            kind: SpanKind::Server,
            start,
            end: start + Duration::from_millis(5),
            attributes: vec![("http.request.method", "GET".into())],
            error: Some("upstream reset".into()),
        });
        assert_eq!((s.trace_id, s.parent_span_id), (vec![1; 16], vec![3; 8]));
        assert_eq!(s.end_time_unix_nano - s.start_time_unix_nano, 5_000_000);
        assert_eq!(s.kind, trace::span::SpanKind::Server as i32);
        assert_eq!(s.status.map(|s| s.code), Some(2));
        assert_eq!(s.attributes[0].key, "http.request.method");
        let r = log_record(LogRecord {
            time: start,
            body: "connection complete",
            attributes: vec![("src.addr", "10.0.0.1:5000".into())],
            trace: None,
        });
        assert!(r.trace_id.is_empty() && r.span_id.is_empty());
        assert_eq!(r.severity_number, 9);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        let mut config = OtlpConfig::new("http://127.0.0.1:9", "test");
        config.queue = 1;
        config.interval = Duration::from_secs(3600);
        config.batch = 1000;
        let x = OtlpExporter::start(config).expect("exporter");
        let record = || LogRecord {
            time: SystemTime::now(),
            body: "request complete",
            attributes: Vec::new(),
            trace: None,
        };
        // The export task cannot run between these calls (one thread, no await): the first
        // fills the queue of one, the other nine are dropped at once.
        for _ in 0..10 {
            x.export_log(record());
        }
        assert_eq!(x.dropped.get(&["logs", "queue_full"]), 9);
        let metrics = ambit_telemetry::Metrics::new();
        for f in x.families() {
            metrics.register(&f);
        }
        assert!(
            metrics
                .render()
                .contains("ambit_otlp_dropped_total{signal=\"logs\",reason=\"queue_full\"} 9")
        );
        assert!(OtlpExporter::start(OtlpConfig::new("not a uri", "t")).is_err());
    }
}
