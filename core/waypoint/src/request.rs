//! One HTTP request through the waypoint: authenticate, authorize, route, forward, record.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ambit_authn::AuthnOutcome;
use ambit_authz::{HttpRequest, WaypointTarget};
use ambit_hbone::headers::TraceParent;
use ambit_hbone::{Baggage, ConnectRequest};
use ambit_identity::SpiffeId;
use ambit_route::Outcome;
use ambit_state::{Service, State, Workload};
use ambit_telemetry::{HttpLabels, Reporter, RequestLog, TcpLabels};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as _, Incoming};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::body::{CountReads, Counted, Finish};
use super::upstream::{Body, BoxError};
use super::{Inner, Target};
use ambit_proxy::{labels_for, pick, random_u64};

/// What every request on one tunnel shares: who sent it and what it targets.
#[derive(Debug)]
pub(crate) struct Downstream {
    peer_id: SpiffeId,
    peer_addr: SocketAddr,
    local_addr: SocketAddr,
    baggage: Baggage,
    target: Target,
}

impl Downstream {
    pub(crate) fn new(req: &ConnectRequest, target: Target) -> Self {
        Self {
            peer_id: req.peer_id.clone(),
            peer_addr: req.peer_addr,
            local_addr: req.local_addr,
            baggage: req.baggage.clone(),
            target,
        }
    }
}

/// The response type served downstream.
type Reply = Response<Body>;

/// Headers that describe one hop and are never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// What happened to a request, for metrics and the log.
#[derive(Debug, Default)]
struct Handled {
    flags: &'static str,
    reason: String,
    route: String,
    upstream: String,
    attempts: u32,
    principal: String,
    service: Option<Arc<Service>>,
    endpoint: Option<Arc<Workload>>,
    /// Set when the upstream switched protocols: the connections to join after the 101.
    upgraded: Option<Splice>,
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
    let req_bytes = Arc::new(AtomicU64::new(0));
    let mut log = RequestLog {
        src_addr: conn.peer_addr.to_string(),
        src_identity: conn.peer_id.to_string(),
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into()),
        authority: host_of(&parts).to_owned(),
        protocol: match parts.version {
            Version::HTTP_2 => "HTTP/2",
            Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        }
        .into(),
        ..RequestLog::default()
    };
    let trace = child_span(&parts.headers).to_string();
    log.trace_id = trace.get(3..35).unwrap_or_default().to_owned();
    if let Ok(v) = HeaderValue::try_from(trace) {
        parts.headers.insert("traceparent", v);
    }
    let grpc = is_grpc(&parts);

    let mut out = Handled {
        flags: "-",
        ..Handled::default()
    };
    let (service, port) = match &conn.target {
        Target::Service(s, p) => (Some(s.clone()), *p),
        Target::Workload(_, p) => (None, *p),
    };
    out.service = service.clone();
    let result = pipeline(
        &inner,
        &state,
        &l7,
        &conn,
        &mut parts,
        incoming,
        req_bytes.clone(),
        service.as_ref(),
        port,
        &mut out,
    )
    .await;
    let mut response = match result {
        Ok(r) => r,
        Err((status, body)) => local_reply(status, body),
    };
    let upgraded = out.upgraded.take();
    for h in &HOP_BY_HOP {
        response.headers_mut().remove(h);
    }
    if upgraded.is_some() {
        Upgrade::mark(response.headers_mut());
    }

    let mut labels = HttpLabels::default();
    labels.peer = peer_labels(&inner, &state, &conn, &out);
    labels.response_code = response.status().as_u16();
    labels.grpc = grpc;
    labels.peer.response_flags = out.flags.to_owned();
    log.response_code = labels.response_code;
    log.response_flags = out.flags.to_owned();
    log.route = out.route;
    log.upstream = out.upstream;
    log.attempts = out.attempts;
    log.reason = out.reason;
    log.request_principal = out.principal;
    log.dst_service = out
        .service
        .as_ref()
        .map(|s| s.hostname.clone())
        .unwrap_or_default();
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

/// A local answer: `(status, body)`.
type Local = (StatusCode, String);

#[allow(clippy::too_many_arguments)]
async fn pipeline(
    inner: &Arc<Inner>,
    state: &State,
    l7: &super::L7Config,
    conn: &Downstream,
    parts: &mut http::request::Parts,
    incoming: Incoming,
    req_bytes: Arc<AtomicU64>,
    service: Option<&Arc<Service>>,
    port: u16,
    out: &mut Handled,
) -> Result<Reply, Local> {
    let wt = WaypointTarget {
        namespace: &inner.config.namespace,
        name: &inner.config.name,
        service: service.map(|s| (s.namespace.as_str(), s.name.as_str())),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());

    // 1. RequestAuthentication: a bad token is refused; no token means no request principal.
    let (auth, edits) =
        match l7
            .authentication
            .authenticate(&wt, &parts.headers, &path_and_query, now)
        {
            AuthnOutcome::Anonymous { edits } => (None, edits),
            AuthnOutcome::Authenticated { auth, edits } => {
                out.principal = auth.principal();
                (Some(auth), edits)
            }
            AuthnOutcome::Denied { reason } => {
                out.reason = reason.to_string();
                return Err((StatusCode::UNAUTHORIZED, reason.to_string()));
            }
            _ => return Err((StatusCode::UNAUTHORIZED, "Jwt verification fails".into())),
        };

    // 2. AuthorizationPolicy.
    let host = host_of(parts).to_owned();
    let decision = l7.authorization.evaluate(
        &wt,
        &HttpRequest {
            source_id: Some(&conn.peer_id),
            source_ip: conn.peer_addr.ip(),
            remote_ip: conn.peer_addr.ip(),
            destination_ip: conn.local_addr.ip(),
            destination_port: port,
            host: &host,
            method: parts.method.as_str(),
            path: &path_and_query,
            headers: &parts.headers,
            auth: auth.as_ref(),
            sni: None,
        },
    );
    if !decision.allowed {
        out.reason = decision.to_string();
        return Err((StatusCode::FORBIDDEN, "RBAC: access denied".into()));
    }
    edits.apply(&mut parts.headers);
    let trimmed = edits.apply_to_path(&path_and_query);
    if trimmed != path_and_query.as_str() {
        let trimmed = trimmed.into_owned();
        if let Ok(pq) = trimmed.parse::<http::uri::PathAndQuery>() {
            let mut u = parts.uri.clone().into_parts();
            u.path_and_query = Some(pq);
            if let Ok(uri) = Uri::from_parts(u) {
                parts.uri = uri;
            }
        }
        path_and_query = trimmed;
    }

    // 3. HTTPRoute (service targets only; a pod target goes straight to the pod).
    let mut backend = match &conn.target {
        Target::Workload(w, p) => Backend::Workload(w.clone(), *p),
        Target::Service(s, p) => Backend::Service(s.clone(), *p),
    };
    let mut timeouts = (None, None);
    let mut retry = None;
    let mut mirrors: Vec<(Arc<Service>, u16)> = Vec::new();
    let mut response_edits = None;
    if let Some(svc) = service {
        let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
        let target = ambit_route::RouteTarget {
            service_namespace: &svc.namespace,
            service_name: &svc.name,
            port,
            waypoint: Some((&inner.config.namespace, &inner.config.name)),
            authority: authority.as_deref(),
        };
        let mut rng = random_u64;
        let decided = l7.routes.route(
            &target,
            &parts.method,
            &path_and_query,
            &parts.headers,
            Instant::now(),
            &mut rng,
        );
        match decided {
            Outcome::Unrouted => {}
            Outcome::NotFound => {
                out.flags = "NR";
                out.reason = "no HTTPRoute rule matched".into();
                return Err((StatusCode::NOT_FOUND, "route not found".into()));
            }
            Outcome::NoBackend => {
                out.flags = "UH";
                out.reason = "the matched rule has no backend with weight".into();
                return Err((StatusCode::INTERNAL_SERVER_ERROR, "no backend".into()));
            }
            Outcome::RateLimited => {
                out.flags = "RL";
                return Err((StatusCode::TOO_MANY_REQUESTS, "local_rate_limited".into()));
            }
            Outcome::Abort { status, delay } => {
                if let Some(d) = delay {
                    tokio::time::sleep(d).await;
                }
                out.flags = "FI";
                return Err((status, "fault filter abort".into()));
            }
            Outcome::Redirect { status, location } => {
                let mut r = local_reply(status, String::new());
                if let Ok(v) = HeaderValue::from_str(&location) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                return Ok(r);
            }
            Outcome::Forward(f) => {
                out.route = f.route.to_owned();
                let ns = f.backend.namespace.as_str();
                let name = f.backend.name.as_str();
                let Some(b) = state.service_by_name(ns, name) else {
                    out.flags = "UH";
                    out.reason = format!("backend service {ns}/{name} is not known");
                    return Err((StatusCode::INTERNAL_SERVER_ERROR, "no backend".into()));
                };
                out.service = Some(b.clone());
                backend = Backend::Service(b.clone(), f.backend.port.unwrap_or(port));
                f.apply_request(parts);
                timeouts = (f.timeouts.request, f.timeouts.backend_request);
                retry = f.retry;
                for m in f.mirrors() {
                    if let Some(s) = state.service_by_name(&m.namespace, &m.name) {
                        mirrors.push((s.clone(), m.port.unwrap_or(port)));
                    }
                }
                if let Some(d) = f.delay {
                    out.flags = "DI";
                    tokio::time::sleep(d).await;
                }
                response_edits = Some(f);
            }
            _ => {
                out.flags = "UH";
                return Err((StatusCode::INTERNAL_SERVER_ERROR, "no backend".into()));
            }
        }
    }

    // 4. Upstream, with retries and timeouts.
    let upgrade = Upgrade::requested(parts);
    for h in &HOP_BY_HOP {
        parts.headers.remove(h);
    }
    let attempts = 1 + retry.map(|r| r.attempts).unwrap_or(0);
    let replayable = incoming.is_end_stream()
        || incoming
            .size_hint()
            .exact()
            .is_some_and(|n| n <= inner.config.max_buffered_body as u64);
    let (mut body, buffered) = if (attempts > 1 || !mirrors.is_empty()) && replayable {
        match Counted::new(incoming, req_bytes.clone()).collect().await {
            Ok(c) => (None, Some(c.to_bytes())),
            Err(_) => {
                out.flags = "DPE";
                return Err((StatusCode::BAD_REQUEST, "request body was cut short".into()));
            }
        }
    } else {
        (
            Some(
                Counted::new(incoming, req_bytes.clone())
                    .map_err(|e| Box::new(e) as BoxError)
                    .boxed(),
            ),
            None,
        )
    };
    if let Some(bytes) = &buffered {
        for (s, p) in &mirrors {
            mirror(inner, state, s, *p, parts, bytes.clone());
        }
    }
    if upgrade.is_some() {
        Upgrade::mark(&mut parts.headers);
    }
    let h2 = upgrade.is_none() && is_grpc(parts);
    let client = if h2 {
        &inner.upstream.http2
    } else {
        &inner.upstream.http1
    };
    let whole = async {
        let mut last: Result<Reply, Local> =
            Err((StatusCode::SERVICE_UNAVAILABLE, "no upstream".into()));
        for attempt in 1..=attempts {
            out.attempts = attempt;
            let Some((endpoint, addr)) = endpoint(state, &backend) else {
                out.flags = "UH";
                out.reason = format!("no healthy upstream for {}", backend.name());
                return Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no healthy upstream".into(),
                ));
            };
            out.upstream = addr.to_string();
            out.endpoint = Some(endpoint);
            let b = match (&buffered, body.take()) {
                (Some(bytes), _) => Full::new(bytes.clone()).map_err(|e| match e {}).boxed(),
                (None, Some(b)) => b,
                (None, None) => break,
            };
            let mut p = parts.clone();
            retarget(&mut p, addr, h2);
            let fut = client.request(Request::from_parts(p, b));
            let r = match timeouts.1 {
                Some(t) if !t.is_zero() => tokio::time::timeout(t, fut).await,
                _ => Ok(fut.await),
            };
            let last_try = attempt == attempts;
            match r {
                Ok(Ok(resp)) => {
                    let retriable = retry.is_some_and(|r| r.retries_status(resp.status()));
                    if !retriable || last_try {
                        out.flags = if out.flags == "DI" { "DI" } else { "-" };
                        if h2 {
                            return Ok(boxed(resp));
                        }
                        return match coalesce_small(resp).await {
                            Ok(resp) => Ok(resp),
                            Err(e) => {
                                out.flags = "UC";
                                out.reason = format!("upstream body: {}", error_chain(&e));
                                Err((
                                    StatusCode::SERVICE_UNAVAILABLE,
                                    "upstream connect error or disconnect/reset before headers"
                                        .into(),
                                ))
                            }
                        };
                    }
                    last = Ok(boxed(resp));
                }
                Ok(Err(e)) => {
                    out.flags = if attempts > 1 { "URX" } else { "UF" };
                    out.reason = format!("upstream connect error: {}", error_chain(&e));
                    last = Err((
                        StatusCode::SERVICE_UNAVAILABLE,
                        "upstream connect error or disconnect/reset before headers".into(),
                    ));
                }
                Err(_) => {
                    out.flags = "UT";
                    out.reason = "upstream per-try timeout".into();
                    last = Err((
                        StatusCode::GATEWAY_TIMEOUT,
                        "upstream request timeout".into(),
                    ));
                }
            }
            if last_try || buffered.is_none() {
                break;
            }
            // Exponential from the base interval (Envoy's 25 ms default), capped at 10x.
            let base = retry
                .and_then(|r| r.backoff)
                .unwrap_or(Duration::from_millis(25));
            tokio::time::sleep(
                base.saturating_mul(1 << (attempt - 1).min(3))
                    .min(base * 10),
            )
            .await;
        }
        last
    };
    let mut resp = match timeouts.0 {
        Some(t) if !t.is_zero() => match tokio::time::timeout(t, whole).await {
            Ok(r) => r?,
            Err(_) => {
                out.flags = "UT";
                out.reason = "upstream request timeout".into();
                return Err((
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream request timeout".into(),
                ));
            }
        },
        _ => whole.await?,
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let spliced = match upgrade {
            Some(u) if Upgrade::is_websocket(resp.headers().get(header::UPGRADE)) => {
                u.switch(&mut resp)
            }
            _ => None,
        };
        if spliced.is_none() {
            out.flags = "UPE";
            out.reason = "upstream switched protocols without being asked to".into();
            return Err((StatusCode::BAD_GATEWAY, "upstream protocol error".into()));
        }
        out.upgraded = spliced;
    }
    if let Some(f) = response_edits {
        f.apply_response(resp.headers_mut());
    }
    Ok(resp)
}

/// An HTTP/1.1 WebSocket upgrade asked for downstream: forwarded upstream with its
/// `Connection: upgrade`, and when the upstream answers `101` the two connections are joined
/// byte for byte until both sides have closed. Other upgrades (`h2c`, ...) are not offered:
/// their headers are removed like any hop-by-hop header and the request goes on as a plain one,
/// since after a switch nothing on the connection would be authorized or routed again.
struct Upgrade {
    downstream: OnUpgrade,
}

impl Upgrade {
    /// The upgrade a request asks for: HTTP/1.1, `Upgrade: websocket` and `upgrade` among the
    /// `Connection` tokens (RFC 9110 §7.8). Takes the request's handle on its connection.
    fn requested(parts: &mut http::request::Parts) -> Option<Self> {
        if parts.version != Version::HTTP_11
            || !Self::is_websocket(parts.headers.get(header::UPGRADE))
        {
            return None;
        }
        let asked = parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
        if !asked {
            return None;
        }
        let downstream = parts.extensions.remove::<OnUpgrade>()?;
        Some(Self { downstream })
    }

    /// `Upgrade: websocket`, one token, any case.
    fn is_websocket(v: Option<&HeaderValue>) -> bool {
        v.is_some_and(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket"))
    }

    /// Puts the upgrade headers (back) on a request or a 101 after the hop-by-hop ones were
    /// removed.
    fn mark(headers: &mut HeaderMap) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }

    /// The two connections to join, once the upstream has answered `resp` (a 101).
    fn switch(self, resp: &mut Reply) -> Option<Splice> {
        Some(Splice {
            downstream: self.downstream,
            upstream: resp.extensions_mut().remove::<OnUpgrade>()?,
        })
    }
}

/// A downstream and an upstream connection that have both switched protocols.
#[derive(Debug)]
struct Splice {
    downstream: OnUpgrade,
    upstream: OnUpgrade,
}

impl Splice {
    /// Copies both ways until both sides have closed (half-close passed on), then calls
    /// `done(bytes from downstream, bytes from upstream)`.
    async fn run(self, done: impl FnOnce(u64, u64)) {
        let (down, up) = match tokio::join!(self.downstream, self.upstream) {
            (Ok(d), Ok(u)) => (d, u),
            (d, u) => {
                let e = d
                    .err()
                    .or(u.err())
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                tracing::debug!(error = %e, "upgraded connection did not start");
                done(0, 0);
                return;
            }
        };
        let mut down = CountReads::new(TokioIo::new(down));
        let mut up = CountReads::new(TokioIo::new(up));
        if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
            tracing::debug!(error = %e, "upgraded connection ended with an error");
        }
        done(down.read, up.read);
    }
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

/// Where a request goes before an endpoint is picked.
#[derive(Debug, Clone)]
enum Backend {
    Service(Arc<Service>, u16),
    Workload(Arc<Workload>, u16),
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
            let (w, port) = pick(&state.endpoints(s, *p))?;
            let ip = w.address()?;
            Some((w, SocketAddr::new(ip, port)))
        }
    }
}

/// Points the request at `addr` (the pool key), keeping Host for the application.
fn retarget(p: &mut http::request::Parts, addr: SocketAddr, h2: bool) {
    let host = host_of(p).to_owned();
    let pq = p
        .uri
        .path_and_query()
        .map(|x| x.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    if let Ok(uri) = Uri::builder()
        .scheme("http")
        .authority(addr.to_string())
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

/// gRPC needs HTTP/2 end to end; everything else goes upstream as HTTP/1.1.
fn is_grpc(p: &http::request::Parts) -> bool {
    p.headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// Sends a copy to a mirror backend and forgets it.
fn mirror(
    inner: &Arc<Inner>,
    state: &State,
    svc: &Arc<Service>,
    port: u16,
    parts: &http::request::Parts,
    body: Bytes,
) {
    let Some((_, addr)) = endpoint(state, &Backend::Service(svc.clone(), port)) else {
        return;
    };
    let mut p = parts.clone();
    // Envoy marks shadowed requests by suffixing the host with "-shadow".
    let host = format!("{}-shadow", host_of(&p));
    if let Ok(v) = HeaderValue::from_str(&host) {
        p.headers.insert(header::HOST, v);
    }
    retarget(&mut p, addr, false);
    let client = inner.upstream.http1.clone();
    tokio::spawn(async move {
        let req = Request::from_parts(p, Full::new(body).map_err(|e| match e {}).boxed());
        if let Ok(resp) = client.request(req).await {
            drop(resp.into_body().collect().await);
        }
    });
}

/// The Host header, or the URI authority (HTTP/2).
fn host_of(p: &http::request::Parts) -> &str {
    p.headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| p.uri.authority().map(|a| a.as_str()))
        .unwrap_or("")
}

/// A new span in the caller's trace (or a new trace when none came in).
fn child_span(headers: &HeaderMap) -> TraceParent {
    let parent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<TraceParent>().ok());
    let fresh = TraceParent::random();
    match parent {
        Some(mut p) => {
            p.parent_id = fresh.parent_id;
            p
        }
        None => fresh,
    }
}

fn local_reply(status: StatusCode, body: String) -> Reply {
    let empty = body.is_empty();
    let mut r = Response::new(if empty {
        Empty::new().map_err(|e| match e {}).boxed()
    } else {
        Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed()
    });
    *r.status_mut() = status;
    if !empty {
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    r
}

fn peer_labels(inner: &Inner, state: &State, conn: &Downstream, out: &Handled) -> TcpLabels {
    let source = state
        .workload_by_addr(&inner.config.network, conn.peer_addr.ip())
        .cloned();
    let mut l = labels_for(
        Reporter::Waypoint,
        source.as_deref(),
        out.endpoint.as_deref(),
        out.service.as_deref(),
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
