//! Forwarding a routed request upstream: the body (buffered when a retry or mirror must replay
//! it), mirrors, one attempt per try with per-try and whole-request timeouts, retries with
//! backoff, and small responses read whole.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use ambit_state::{Service, State, Workload};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Request, Response, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};

use crate::Inner;
use crate::body::Counted;
use crate::refusal::{Refusal, Reply};
use crate::request::{HOP_BY_HOP, host_of};
use crate::steps::{Backend, Cx, Plan};
use crate::upgrade::{Splice, Upgrade};
use crate::upstream::{Body, BoxError};

/// Which endpoint a request went to, after how many attempts.
#[derive(Debug, Default)]
pub(crate) struct Attempted {
    pub(crate) count: u32,
    /// `ip:port` of the last endpoint tried.
    pub(crate) upstream: String,
    pub(crate) endpoint: Option<Arc<Workload>>,
}

/// The upstream's answer, and the connections to join when it switched to a WebSocket.
pub(crate) struct Answered {
    pub(crate) response: Reply,
    pub(crate) upgraded: Option<Splice>,
}

/// Sends the request as `plan` says, with its retries and timeouts, and returns what came back
/// (or why nothing usable did) and where it went.
pub(crate) async fn forward(
    cx: &Cx<'_>,
    plan: &Plan,
    mut parts: Parts,
    incoming: Incoming,
    req_bytes: Arc<AtomicU64>,
) -> (Attempted, Result<Answered, Refusal>) {
    let upgrade = Upgrade::requested(&mut parts);
    for h in &HOP_BY_HOP {
        parts.headers.remove(h);
    }
    let attempts = 1 + plan.retry().map(|r| r.attempts).unwrap_or(0);
    let body = match RequestBody::new(
        cx,
        incoming,
        req_bytes,
        attempts > 1 || !plan.mirrors.is_empty(),
    )
    .await
    {
        Ok(b) => b,
        Err(r) => return (Attempted::default(), Err(r)),
    };
    if let RequestBody::Buffered(bytes) = &body {
        for (s, p) in &plan.mirrors {
            mirror(cx.inner, cx.state, plan, s, *p, &parts, bytes.clone());
        }
    }
    if upgrade.is_some() {
        Upgrade::mark(&mut parts.headers);
    }
    let h2c_port = matches!(&plan.backend, Backend::Service(svc, port) if svc.speaks_h2c(*port));
    let h2 = upgrade.is_none() && (is_grpc(&parts) || h2c_port);
    let (attempted, result) = attempt_all(cx, plan, &parts, body, attempts, h2).await;
    let answered =
        result
            .and_then(|resp| Upgrade::answer(upgrade, resp))
            .map(|(mut response, upgraded)| {
                if let Some(f) = &plan.forward {
                    f.apply_response(response.headers_mut());
                }
                Answered { response, upgraded }
            });
    (attempted, answered)
}

/// The request body to send: streamed once, or read whole so that retries and mirrors can
/// replay it (only when it is complete already or of a known length up to the limit).
enum RequestBody {
    Streamed(Option<Body>),
    Buffered(Bytes),
}

impl RequestBody {
    async fn new(
        cx: &Cx<'_>,
        incoming: Incoming,
        req_bytes: Arc<AtomicU64>,
        replay: bool,
    ) -> Result<Self, Refusal> {
        let replayable = incoming.is_end_stream()
            || incoming
                .size_hint()
                .exact()
                .is_some_and(|n| n <= cx.inner.config.max_buffered_body as u64);
        let counted = Counted::new(incoming, req_bytes);
        if replay && replayable {
            return match counted.collect().await {
                Ok(c) => Ok(RequestBody::Buffered(c.to_bytes())),
                Err(_) => Err(Refusal::body_cut_short()),
            };
        }
        Ok(RequestBody::Streamed(Some(
            counted.map_err(|e| Box::new(e) as BoxError).boxed(),
        )))
    }

    /// The body for the next attempt; `None` once a streamed body was sent.
    fn next(&mut self) -> Option<Body> {
        match self {
            RequestBody::Buffered(bytes) => {
                Some(Full::new(bytes.clone()).map_err(|e| match e {}).boxed())
            }
            RequestBody::Streamed(b) => b.take(),
        }
    }
}

/// Every attempt the retry policy allows, until one gives a final answer or the whole-request
/// timeout (`plan.timeouts.0`, over all attempts and backoffs) runs out.
async fn attempt_all(
    cx: &Cx<'_>,
    plan: &Plan,
    parts: &Parts,
    mut body: RequestBody,
    attempts: u32,
    h2: bool,
) -> (Attempted, Result<Reply, Refusal>) {
    let client = if h2 {
        &cx.inner.upstream.http2
    } else {
        &cx.inner.upstream.http1
    };
    let enabled = |t: Option<Duration>| t.filter(|t| !t.is_zero());
    let deadline = enabled(plan.timeouts.0).map(|t| Instant::now() + t);
    let whole_timeout = || Err(Refusal::timeout("upstream request timeout"));
    let mut attempted = Attempted::default();
    let mut last = Err(Refusal::no_healthy_upstream("no upstream".into()));
    for attempt in 1..=attempts {
        attempted.count = attempt;
        let Some((endpoint, addr)) = endpoint(cx.state, &plan.backend) else {
            let why = format!("no healthy upstream for {}", plan.backend.name());
            return (attempted, Err(Refusal::no_healthy_upstream(why)));
        };
        attempted.upstream = ambit_telemetry::socket_addr_text(&addr);
        attempted.endpoint = Some(endpoint);
        let Some(b) = body.next() else { break };
        let mut p = parts.clone();
        retarget(&mut p, &attempted.upstream, h2);
        let sent = client.request(Request::from_parts(p, b));
        let per_try = enabled(plan.timeouts.1).map(|t| Instant::now() + t);
        let last_try = attempt == attempts;
        last = match within(earliest(deadline, per_try), sent).await {
            Some(Ok(resp)) => {
                let retriable = plan
                    .retry()
                    .is_some_and(|r| r.retries_status(resp.status()));
                if !retriable || last_try {
                    let done = match within(deadline, finish(resp, h2)).await {
                        Some(r) => r,
                        None => whole_timeout(),
                    };
                    return (attempted, done);
                }
                Ok(boxed(resp))
            }
            Some(Err(e)) => Err(Refusal::connect_failed(
                attempts > 1,
                format!("upstream connect error: {}", error_chain(&e)),
            )),
            None if deadline.is_some() && earliest(deadline, per_try) == deadline => {
                return (attempted, whole_timeout());
            }
            None => Err(Refusal::timeout("upstream per-try timeout")),
        };
        if last_try || matches!(body, RequestBody::Streamed(_)) {
            break;
        }
        // Exponential from the base interval (Envoy's 25 ms default), capped at 10x.
        let base = plan
            .retry()
            .and_then(|r| r.backoff)
            .unwrap_or(Duration::from_millis(25));
        let backoff = base
            .saturating_mul(1 << (attempt - 1).min(3))
            .min(base * 10);
        if within(deadline, tokio::time::sleep(backoff))
            .await
            .is_none()
        {
            return (attempted, whole_timeout());
        }
    }
    (attempted, last)
}

/// `fut`'s output, or `None` when `deadline` passes first.
async fn within<F: std::future::Future>(deadline: Option<Instant>, fut: F) -> Option<F::Output> {
    match deadline {
        Some(at) => tokio::time::timeout_at(at.into(), fut).await.ok(),
        None => Some(fut.await),
    }
}

/// The sooner of two optional deadlines.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The final upstream answer: an HTTP/1.1 body of known small length is read whole first.
async fn finish(resp: Response<Incoming>, h2: bool) -> Result<Reply, Refusal> {
    if h2 {
        return Ok(boxed(resp));
    }
    coalesce_small(resp)
        .await
        .map_err(|e| Refusal::upstream_ended(format!("upstream body: {}", error_chain(&e))))
}

/// Upstream HTTP/1.1 bodies with a declared length up to this are read whole before the
/// response head is sent downstream, so head and body leave in one write (one HBONE DATA
/// frame, one TLS record) instead of one per upstream read. Without it, a 1 KiB response that
/// reached the waypoint in two reads left it as two frames, and a client-side node proxy
/// that writes each frame as it comes paid a Nagle / delayed-ACK stall (40 ms) on the second.
const COALESCE_MAX: u64 = 16 * 1024;

fn boxed(resp: Response<Incoming>) -> Reply {
    let (h, b) = resp.into_parts();
    Response::from_parts(h, b.map_err(|e| Box::new(e) as BoxError).boxed())
}

/// The response, its body read whole when it is small, of known length and not yet complete.
async fn coalesce_small(resp: Response<Incoming>) -> Result<Reply, hyper::Error> {
    let small = resp
        .body()
        .size_hint()
        .exact()
        .is_some_and(|n| n <= COALESCE_MAX);
    if !small || resp.body().is_end_stream() {
        return Ok(boxed(resp));
    }
    let (h, b) = resp.into_parts();
    let bytes = b.collect().await?.to_bytes();
    Ok(Response::from_parts(
        h,
        Full::new(bytes).map_err(|e| match e {}).boxed(),
    ))
}

impl Backend {
    fn name(&self) -> String {
        match self {
            Backend::Service(s, p) => format!("{}:{p}", s.hostname),
            Backend::Workload(w, p) => format!("{}:{p}", w.name),
        }
    }
}

/// An endpoint of `backend` by capacity, and its `ip:target-port`.
fn endpoint(state: &State, backend: &Backend) -> Option<(Arc<Workload>, SocketAddr)> {
    match backend {
        Backend::Workload(w, p) => Some((w.clone(), SocketAddr::new(w.address()?, *p))),
        Backend::Service(s, p) => {
            let (w, port) = ambit_proxy::pick(&state.endpoints(s, *p))?;
            let ip = w.address()?;
            Some((w, SocketAddr::new(ip, port)))
        }
    }
}

/// Points the request at `addr` (the pool key, as `ambit_telemetry::socket_addr_text`
/// writes it), keeping Host for the application.
fn retarget(p: &mut Parts, addr: &str, h2: bool) {
    let host = host_of(p).to_owned();
    let pq = p
        .uri
        .path_and_query()
        .map(|x| x.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    if let Ok(uri) = Uri::builder()
        .scheme("http")
        .authority(addr)
        .path_and_query(pq)
        .build()
    {
        p.uri = uri;
    }
    if h2 {
        p.version = Version::HTTP_2;
    } else {
        p.version = Version::HTTP_11;
        if !host.is_empty()
            && let Ok(v) = HeaderValue::from_str(&host)
        {
            p.headers.insert(header::HOST, v);
        }
    }
}

/// gRPC needs HTTP/2 end to end; everything else goes upstream as HTTP/1.1 (unless the
/// Service port is marked h2c, see `Service::speaks_h2c`).
pub(crate) fn is_grpc(p: &Parts) -> bool {
    p.headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// Sends a copy to a mirror backend and forgets it, within bounds: at most
/// `max_mirrors_in_flight` at once (a mirror beyond that is dropped, not queued), each for at
/// most `mirror_timeout` (or the rule's request timeout when shorter). Every outcome is counted
/// in `ambit_mirror_requests_total{result}`: `sent`, `failed`, `timeout`, `dropped`,
/// `no_endpoint`.
fn mirror(
    inner: &Arc<Inner>,
    state: &State,
    plan: &Plan,
    svc: &Arc<Service>,
    port: u16,
    parts: &Parts,
    body: Bytes,
) {
    let outcomes = mirror_outcomes(inner);
    let Some((_, addr)) = endpoint(state, &Backend::Service(svc.clone(), port)) else {
        outcomes.inc(&["no_endpoint"]);
        return;
    };
    let Ok(permit) = inner.mirrors.clone().try_acquire_owned() else {
        outcomes.inc(&["dropped"]);
        return;
    };
    let mut p = parts.clone();
    // Envoy marks shadowed requests by suffixing the host with "-shadow".
    let host = format!("{}-shadow", host_of(&p));
    if let Ok(v) = HeaderValue::from_str(&host) {
        p.headers.insert(header::HOST, v);
    }
    let h2 = is_grpc(&p) || svc.speaks_h2c(port);
    retarget(&mut p, &ambit_telemetry::socket_addr_text(&addr), h2);
    let client = if h2 {
        inner.upstream.http2.clone()
    } else {
        inner.upstream.http1.clone()
    };
    let limit = match plan.timeouts.0.filter(|t| !t.is_zero()) {
        Some(t) => t.min(inner.config.mirror_timeout),
        None => inner.config.mirror_timeout,
    };
    tokio::spawn(async move {
        let _permit = permit;
        let req = Request::from_parts(p, Full::new(body).map_err(|e| match e {}).boxed());
        // The answer is read and thrown away frame by frame: a mirror holds no body.
        let sent = async {
            let mut body = client.request(req).await.ok()?.into_body();
            while let Some(frame) = body.frame().await {
                frame.ok()?;
            }
            Some(())
        };
        let result = match tokio::time::timeout(limit, sent).await {
            Ok(Some(_)) => "sent",
            Ok(None) => "failed",
            Err(_) => "timeout",
        };
        outcomes.inc(&[result]);
    });
}

/// `ambit_mirror_requests_total{result}`.
fn mirror_outcomes(inner: &Inner) -> ambit_telemetry::LabeledFamily {
    inner.metrics.counter(
        "ambit_mirror_requests_total",
        "Mirrored requests by outcome: sent, failed, timeout, dropped (over the in-flight cap), no_endpoint.",
        &["result"],
    )
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
