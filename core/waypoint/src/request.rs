//! One HTTP request through the waypoint: the steps (authenticate, authorize, route, forward,
//! upgrade) run in order, and what came of them is recorded once, in metrics and the log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ambit_hbone::headers::TraceParent;
use ambit_hbone::{Baggage, ConnectRequest};
use ambit_identity::SpiffeId;
use ambit_state::Service;
use ambit_telemetry::{HttpLabels, Reporter, RequestLog, ResponseFlag, TcpLabels};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::body::Finish;
use crate::forward::{Answered, Attempted, forward, is_grpc};
use crate::refusal::{Refusal, Reply};
use crate::steps::{self, Cx, Routed};
use crate::upgrade::{Splice, Upgrade};
use crate::{BoundTarget, Inner};

/// What every request on one tunnel shares: who sent it and what it targets.
#[derive(Debug)]
pub(crate) struct Downstream {
    pub(crate) peer_id: SpiffeId,
    pub(crate) peer_addr: SocketAddr,
    pub(crate) local_addr: SocketAddr,
    baggage: Baggage,
    /// The tunnel's `traceparent`, when its peer sent one: the parent of its requests' spans
    /// when they bring none.
    traceparent: Option<TraceParent>,
    pub(crate) target: BoundTarget,
}

impl Downstream {
    pub(crate) fn new(req: &ConnectRequest, target: BoundTarget) -> Self {
        Self {
            peer_id: req.peer_id.clone(),
            peer_addr: req.peer_addr,
            local_addr: req.local_addr,
            baggage: req.baggage.clone(),
            traceparent: req.traceparent_from_peer.then_some(req.traceparent),
            target,
        }
    }
}

/// Headers that describe one hop and are never forwarded (RFC 9110 §7.6.1).
pub(crate) const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// What came of a request: the reply, and what the metrics and the log say about it.
struct Handled {
    response: Reply,
    flag: ResponseFlag,
    reason: String,
    known: Known,
    attempted: Attempted,
    upgraded: Option<Splice>,
}

/// What the decisions learnt about a request, kept for the log even when one refuses it.
#[derive(Default)]
struct Known {
    principal: String,
    route: String,
    service: Option<Arc<Service>>,
}

pub(crate) async fn handle(
    inner: Arc<Inner>,
    conn: Arc<Downstream>,
    req: Request<Incoming>,
) -> Reply {
    let start = Instant::now();
    let state = inner.state.load_full();
    let l7 = inner.l7.load_full();
    let (mut parts, incoming) = req.into_parts();
    let mut log = request_log(&conn, &parts);
    let span = child_span(
        &parts.headers,
        conn.traceparent.as_ref(),
        inner.config.exporter.as_deref(),
    );
    let trace = span.ours.to_string();
    log.trace_id = trace.get(3..35).unwrap_or_default().to_owned();
    if let Ok(v) = HeaderValue::try_from(trace) {
        parts.headers.insert("traceparent", v);
    }
    let grpc = is_grpc(&parts);
    let req_bytes = Arc::new(AtomicU64::new(0));
    let cx = Cx {
        inner: &inner,
        state: &state,
        l7: &l7,
        conn: &conn,
    };
    let version = parts.version;
    let handled = crate::upstream::TRACE
        .scope(span.ours, run(&cx, parts, incoming, req_bytes.clone()))
        .await;
    let mut reply = record(&cx, handled, log, grpc, start, req_bytes, span);
    // The waypoint answers in the client's HTTP version, whatever the upstream spoke.
    *reply.version_mut() = version;
    reply
}

/// The steps, in order. The first refusal ends the request; everything learnt up to there is
/// kept for the log.
async fn run(
    cx: &Cx<'_>,
    mut parts: Parts,
    incoming: Incoming,
    req_bytes: Arc<AtomicU64>,
) -> Handled {
    let (known, decided) = decide(cx, &mut parts).await;
    let (attempted, answered) = match decided {
        Ok(Routed::Answer(response)) => (Attempted::default(), Ok((response, None))),
        Ok(Routed::Forward(plan)) => {
            let (attempted, answered) = forward(cx, &plan, parts, incoming, req_bytes).await;
            let answered = answered.map(|Answered { response, upgraded }| (response, upgraded));
            return finished(known, attempted, answered, plan.delayed);
        }
        Err(r) => (Attempted::default(), Err(r)),
    };
    finished(known, attempted, answered, false)
}

/// The request's outcome: the reply with its flag, or the refusal made into a reply.
fn finished(
    known: Known,
    attempted: Attempted,
    answered: Result<(Reply, Option<Splice>), Refusal>,
    delayed: bool,
) -> Handled {
    match answered {
        Ok((response, upgraded)) => Handled {
            response,
            flag: if delayed {
                ResponseFlag::DelayInjected
            } else {
                ResponseFlag::None
            },
            reason: String::new(),
            known,
            attempted,
            upgraded,
        },
        Err(r) => Handled {
            response: r.reply(),
            flag: r.flag,
            reason: r.reason,
            known,
            attempted,
            upgraded: None,
        },
    }
}

/// Authenticate, authorize and route: where the request goes (or the local answer), or the
/// refusal; and what was learnt on the way.
async fn decide(cx: &Cx<'_>, parts: &mut Parts) -> (Known, Result<Routed, Refusal>) {
    let mut known = Known {
        service: cx.service().0.cloned(),
        ..Known::default()
    };
    let decided = async {
        steps::check_method(parts)?;
        let authn = steps::authenticate(cx, parts)?;
        if let Some(a) = &authn.auth {
            known.principal = a.principal();
        }
        steps::authorize(cx, parts, authn.auth.as_ref())?;
        authn.edits.apply_to_request(parts);
        let routed = steps::route(cx, parts).await?;
        if let Routed::Forward(plan) = &routed {
            known.route = plan.route.clone();
            known.service = plan.service.clone();
        }
        Ok(routed)
    }
    .await;
    (known, decided)
}

/// Records a handled request in metrics and the access log, when its body has been sent (or,
/// for an upgrade, when the joined connections close); the one place a request's outcome
/// becomes a label and a log line.
fn record(
    cx: &Cx<'_>,
    handled: Handled,
    mut log: RequestLog,
    grpc: bool,
    start: Instant,
    req_bytes: Arc<AtomicU64>,
    span: Span,
) -> Reply {
    let Handled {
        mut response,
        flag,
        reason,
        known,
        attempted,
        upgraded,
    } = handled;
    for h in &HOP_BY_HOP {
        response.headers_mut().remove(h);
    }
    if upgraded.is_some() {
        Upgrade::mark(response.headers_mut());
    }
    let mut labels = HttpLabels::default();
    labels.peer = peer_labels(cx, &attempted, known.service.as_deref());
    labels.peer.response_flags = flag;
    labels.response_code = response.status().as_u16();
    labels.grpc = grpc;
    log.response_code = labels.response_code;
    log.response_flags = flag;
    log.route = known.route;
    log.upstream = attempted.upstream;
    log.attempts = attempted.count;
    log.reason = reason;
    log.request_principal = known.principal;
    log.dst_service = known
        .service
        .map(|s| s.hostname.clone())
        .unwrap_or_default();
    let inner = cx.inner.clone();
    let json = inner.config.json_access_log;
    // The series is looked up when the request ends, so none shows while it is in flight.
    let mut record = move |recv: u64, sent: u64| {
        inner
            .metrics
            .http(&labels)
            .record(start.elapsed(), recv, sent);
        log.bytes_recv = recv;
        log.bytes_sent = sent;
        log.duration = start.elapsed();
        if inner.access_log_enabled() {
            let line = if json { log.to_json() } else { log.to_text() };
            inner.access_log(line);
        }
        if let Some(x) = &inner.config.exporter {
            export(&**x, &log, &span);
        }
    };
    let (head, body) = response.into_parts();
    if let Some(splice) = upgraded {
        // An upgraded connection is one request that ends when the joined connections do.
        tokio::spawn(splice.run(move |up, down| {
            record(req_bytes.load(Ordering::Relaxed) + up, down);
        }));
        return Response::from_parts(head, body);
    }
    let body = Finish::new(body, move |resp_bytes, _complete| {
        record(req_bytes.load(Ordering::Relaxed), resp_bytes);
    });
    Response::from_parts(head, body.boxed())
}

/// Hands a finished request's record, and its span when sampled, to `exporter`.
fn export(exporter: &dyn ambit_telemetry::Exporter, log: &RequestLog, span: &Span) {
    let ids = (span.ours.trace_id, span.ours.parent_id);
    let record = log.to_record(Some(ids));
    if exporter.sampled(&span.ours.trace_id) {
        let end = std::time::SystemTime::now();
        let target = if log.route.is_empty() {
            &log.authority
        } else {
            &log.route
        };
        exporter.export_span(ambit_telemetry::SpanRecord {
            trace_id: ids.0,
            span_id: ids.1,
            parent_span_id: span.parent,
            name: format!("{} {target}", log.method),
            kind: ambit_telemetry::SpanKind::Server,
            start: end.checked_sub(log.duration).unwrap_or(end),
            end,
            attributes: record.attributes.clone(),
            error: (log.response_code >= 500).then(|| match log.reason.as_str() {
                "" => format!("HTTP {}", log.response_code),
                r => r.to_owned(),
            }),
        });
    }
    exporter.export_log(record);
}

/// The log record's fields known when the request arrives.
fn request_log(conn: &Downstream, parts: &Parts) -> RequestLog {
    RequestLog {
        src_addr: ambit_telemetry::socket_addr_text(&conn.peer_addr),
        src_identity: conn.peer_id.to_string(),
        method: parts.method.to_string(),
        path: path_and_query(parts),
        authority: host_of(parts).to_owned(),
        protocol: match parts.version {
            Version::HTTP_2 => "HTTP/2",
            Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        }
        .into(),
        ..RequestLog::default()
    }
}

/// The request target: path and query (`/` when the URI has none).
pub(crate) fn path_and_query(parts: &Parts) -> String {
    parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into())
}

/// The Host header, or the URI authority (HTTP/2).
pub(crate) fn host_of(p: &Parts) -> &str {
    p.headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| p.uri.authority().map(|a| a.as_str()))
        .unwrap_or("")
}

/// A request's span: `ours` (sent upstream as `traceparent`) and the span it is a child of
/// (`None` for the root of a new trace).
#[derive(Debug, Clone, Copy)]
struct Span {
    ours: TraceParent,
    parent: Option<[u8; 8]>,
}

/// A new span in the request's trace: its own `traceparent` when it brings a valid one, else
/// the tunnel's (the node proxy's span for the connection), else a new trace. With an
/// exporter that keeps the trace, it is marked sampled for the hops after this one.
fn child_span(
    headers: &HeaderMap,
    tunnel: Option<&TraceParent>,
    exporter: Option<&dyn ambit_telemetry::Exporter>,
) -> Span {
    let parent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<TraceParent>().ok())
        .or(tunnel.copied());
    let fresh = TraceParent::random();
    let mut ours = parent.unwrap_or(fresh);
    ours.parent_id = fresh.parent_id;
    if exporter.is_some_and(|x| x.sampled(&ours.trace_id)) {
        ours.flags |= 1;
    }
    Span {
        ours,
        parent: parent.map(|p| p.parent_id),
    }
}

fn peer_labels(cx: &Cx<'_>, attempted: &Attempted, service: Option<&Service>) -> TcpLabels {
    let conn = cx.conn;
    let source = cx
        .state
        .workload_by_addr(&cx.inner.config.network, conn.peer_addr.ip())
        .cloned();
    let mut l = ambit_proxy::labels_for(
        Reporter::Waypoint,
        source.as_deref(),
        attempted.endpoint.as_deref(),
        service,
    );
    if source.is_none() {
        let b = &conn.baggage;
        let or = |v: &Option<String>| v.clone().unwrap_or_default();
        l.source_workload = or(&b.workload_name);
        l.source_workload_namespace = or(&b.namespace);
        l.source_canonical_service = or(&b.service);
        l.source_canonical_revision = or(&b.revision);
        l.source_cluster = or(&b.cluster);
    }
    l.source_principal = conn.peer_id.to_string();
    l.mutual_tls = true;
    l
}
