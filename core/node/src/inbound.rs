//! Inbound HBONE (15008): validate the target, authorize, connect to the workload, copy.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use ambit_authz::Connection;
use ambit_hbone::http::StatusCode;
use ambit_hbone::{Authority, ConfigSelector, ConnectRequest, Handler, Responder};
use ambit_telemetry::{Reporter, ResponseFlag};
use ambit_tls::ServerOptions;
use arc_swap::ArcSwap;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use ambit_proxy::labels_for;

use crate::Node;
use crate::conns::Registration;
use crate::record::ConnLog;
use crate::steer::ILLEGAL_PORTS;

/// The TLS config for each local workload address, swapped as workloads come and go.
#[derive(Debug, Default, Clone)]
pub(crate) struct Selector {
    configs: Arc<ArcSwap<HashMap<IpAddr, Arc<rustls::ServerConfig>>>>,
}

impl ConfigSelector for Selector {
    fn server_config(&self, local: SocketAddr) -> Option<Arc<rustls::ServerConfig>> {
        self.configs.load().get(&local.ip()).cloned()
    }
}

/// Answers each CONNECT for a local workload.
#[derive(Debug, Clone)]
pub(crate) struct Inbound(pub(crate) Arc<Node>);

/// The listeners, one per local workload address.
#[derive(Debug, Default)]
pub(crate) struct Listeners {
    pub(crate) tasks: HashMap<IpAddr, JoinHandle<()>>,
}

/// Brings the HBONE listeners and certificates in line with the local workloads of `node`'s
/// current state; returns how many local workloads have no certificate yet (their ports stay
/// closed, and readiness holds `certificates`, until they do).
pub(crate) async fn reconcile(
    node: &Arc<Node>,
    server: &ambit_hbone::Server<Inbound>,
    listeners: &mut Listeners,
) -> usize {
    let state = node.state.load_full();
    let mut configs = HashMap::new();
    let mut missing = Vec::new();
    for w in state.workloads_on(&node.config.node) {
        if w.protocol != ambit_state::TunnelProtocol::Hbone {
            continue;
        }
        let Ok(id) = w.identity() else { continue };
        let cell = match node.identities.cell(&id).await {
            Ok(c) => c,
            Err(e) => {
                warn!(workload = %w.name, error = %e, "no certificate for local workload; its HBONE port stays closed until one is had");
                missing.push(format!("{} ({e})", w.uid));
                continue;
            }
        };
        let Ok(config) = node
            .identities
            .tls()
            .server_config(&cell, &ServerOptions::default())
        else {
            continue;
        };
        for ip in &w.addresses {
            configs.insert(*ip, config.clone());
        }
    }
    if missing.is_empty() {
        node.readiness.unblock("certificates");
    } else {
        node.readiness.block(
            "certificates",
            format!(
                "{} local workload(s) without one: {}",
                missing.len(),
                missing.join(", ")
            ),
        );
    }
    let wanted: HashSet<IpAddr> = configs.keys().copied().collect();
    node.selector.configs.store(Arc::new(configs));
    listeners.tasks.retain(|ip, task| {
        let keep = wanted.contains(ip);
        if !keep {
            task.abort();
        }
        keep
    });
    if node.config.inpod {
        // Pods' HBONE listeners are bound inside their namespaces (crate::inpod).
        return missing.len();
    }
    for ip in wanted {
        if listeners.tasks.contains_key(&ip) {
            continue;
        }
        let addr = SocketAddr::new(ip, node.config.inbound_port);
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                let server = server.clone();
                let udp = bind_udp(node, addr);
                listeners.tasks.insert(
                    ip,
                    tokio::spawn(async move {
                        match udp {
                            Some(udp) => {
                                drop(tokio::join!(server.serve(l), serve_udp(&server, udp)))
                            }
                            None => drop(server.serve(l).await),
                        }
                    }),
                );
            }
            Err(e) => warn!(%addr, error = %e, "cannot listen for HBONE for a local workload"),
        }
    }
    missing.len()
}

/// The UDP socket for HBONE over HTTP/3 beside the TCP listener on `addr`, when served.
pub(crate) fn bind_udp(node: &Node, addr: SocketAddr) -> Option<std::net::UdpSocket> {
    if !node.config.serve_h3 || !cfg!(feature = "h3") {
        return None;
    }
    std::net::UdpSocket::bind(addr)
        .inspect_err(|e| warn!(%addr, error = %e, "cannot listen for HBONE over HTTP/3 (UDP); serving HTTP/2 only"))
        .ok()
}

/// Serves HBONE over HTTP/3 on `udp` until the server drains.
pub(crate) async fn serve_udp(server: &ambit_hbone::Server<Inbound>, udp: std::net::UdpSocket) {
    #[cfg(feature = "h3")]
    if let Err(e) = server.serve_udp(udp).await {
        warn!(error = %e, "HBONE over HTTP/3 listener failed");
    }
    #[cfg(not(feature = "h3"))]
    drop((server, udp));
}

/// Size band (bytes, debug build) of one tunnel's task: memory per inbound tunnel (measured
/// 1,216; 2,880 when the checks and the connect were stored in it for the tunnel's life).
const TUNNEL_BAND: (usize, usize) = (1_000, 1_500);

impl Handler for Inbound {
    fn handle(
        &self,
        req: ConnectRequest,
        responder: Responder,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let node = self.0.clone();
        // Boxed, and made outside the task's future: the checks and the connect hold the
        // request, labels and decision, which are freed before the copy, so the task itself
        // is only as large as the copy.
        let setup = Box::pin(open(node.clone(), req, responder));
        let tunnel = async move {
            if let Some(mut accepted) = setup.await {
                accepted.copy(&node).await;
            }
        };
        ambit_proxy::size_between(TUNNEL_BAND.0, TUNNEL_BAND.1, &tunnel);
        tunnel
    }
}

/// An accepted tunnel and its workload connection, with what the copy and its record need.
struct Accepted {
    tunnel: ambit_hbone::Tunnel,
    upstream: TcpStream,
    /// Held until the tunnel ends: policy changes re-check it meanwhile.
    _registration: Registration,
    revoked: oneshot::Receiver<String>,
    log: Box<ConnLog>,
    start: Instant,
}

/// One tunnel's setup: validate the target, authorize, connect to the workload, answer.
/// Refusals are answered, logged and counted here (`None`).
async fn open(shared: Arc<Node>, req: ConnectRequest, responder: Responder) -> Option<Accepted> {
    let node = &*shared;
    let start = Instant::now();
    let state = node.state.load_full();
    let mut log = Box::new(ConnLog::new("inbound", req.peer_addr));
    log.src_identity = Some(req.peer_id.clone());
    log.dst_addr = Some(req.local_addr);
    log.dst_hbone_addr = Some(req.authority.clone());
    log.transport = Some(req.transport);
    if node.config.exporter.is_some() {
        log.span = Some(Box::new(crate::record::SpanIds::inbound(
            &req.traceparent,
            req.traceparent_from_peer,
        )));
    }
    let local_ip = req.local_addr.ip();
    let target = match req.authority {
        Authority::Addr(a) if a.ip() == local_ip => a,
        Authority::Addr(a) => {
            return refuse(
                node,
                responder,
                &mut log,
                StatusCode::BAD_REQUEST,
                format!("target {a} does not match the connected address {local_ip}"),
                start,
            );
        }
        Authority::Host { .. } => {
            return refuse(
                node,
                responder,
                &mut log,
                StatusCode::BAD_REQUEST,
                "hostname targets are not supported by this node".into(),
                start,
            );
        }
    };
    if ILLEGAL_PORTS.contains(&target.port()) {
        return refuse(
            node,
            responder,
            &mut log,
            StatusCode::SERVICE_UNAVAILABLE,
            format!("port {} is reserved for the proxy", target.port()),
            start,
        );
    }
    let Some(w) = state
        .workload_by_addr(&node.config.network, local_ip)
        .filter(|w| w.node == node.config.node)
        .cloned()
    else {
        return refuse(
            node,
            responder,
            &mut log,
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no local workload has address {local_ip}"),
            start,
        );
    };
    log.dst = Some(w.clone());
    let source = state
        .workload_by_addr(&node.config.network, req.peer_addr.ip())
        .cloned();
    if let Some(s) = &source {
        log.src = Some(s.clone());
    }
    let mut labels = labels_for(Reporter::Destination, source.as_deref(), Some(&w), None);
    if source.is_none() {
        // Not found by address (the peer's node did not preserve it): use its baggage.
        let b = &req.baggage;
        let or = |v: &Option<String>| v.clone().unwrap_or_default();
        labels.source_workload = or(&b.workload_name);
        labels.source_workload_namespace = or(&b.namespace);
        labels.source_canonical_service = or(&b.service);
        labels.source_canonical_revision = or(&b.revision);
        labels.source_cluster = or(&b.cluster);
        log.src_named = Some(Box::new((
            labels.source_workload.clone(),
            labels.source_workload_namespace.clone(),
        )));
    }
    labels.source_principal = req.peer_id.to_string();
    labels.mutual_tls = true;
    let conn = Connection {
        source_id: Some(&req.peer_id),
        source_ip: req.peer_addr.ip(),
        destination_ip: local_ip,
        destination_port: target.port(),
    };
    let decision = state.applicable_policies(&w).evaluate(&conn);
    node.report_dry_run(&decision, &w, req.peer_id.as_str());
    if !decision.allowed {
        node.count_failure(&mut labels, ResponseFlag::Deny);
        return refuse(
            node,
            responder,
            &mut log,
            StatusCode::UNAUTHORIZED,
            decision.to_string(),
            start,
        );
    }
    if req.kind == ambit_hbone::ConnectKind::Udp {
        return open_udp(&shared, &req, responder, log, target, &conn, &w.uid, start).await;
    }
    // From the client's address where possible, so the application sees it.
    let connecting = node.connect_local(req.peer_addr.ip(), target, true);
    let upstream = match tokio::time::timeout(node.config.connect_timeout, connecting).await {
        Ok(Ok(s)) => s,
        failed => {
            let why = match failed {
                Ok(Err(e)) => format!("cannot connect to {target}: {e}"),
                _ => format!("timed out connecting to {target}"),
            };
            node.count_failure(&mut labels, ResponseFlag::Connect);
            let status = StatusCode::SERVICE_UNAVAILABLE;
            return refuse(node, responder, &mut log, status, why, start);
        }
    };
    let _ = upstream.set_nodelay(true);
    let (registration, revoked) = node.connections.register(&conn, &w.uid);
    let tunnel = match responder.accept(Default::default()) {
        Ok(t) => t,
        Err(e) => {
            crate::socket::reset(&upstream);
            return unanswered(node, &mut log, e, start);
        }
    };
    // a = the tunnel: what goes to it is sent to the source.
    log.count(node.metrics.tcp(&labels), false);
    node.count_tunnel("inbound", tunnel.info().transport);
    Some(Accepted {
        tunnel,
        upstream,
        _registration: registration,
        revoked,
        log,
        start,
    })
}

/// The UDP side of [`open`]: a socket connected to the workload, the flow accepted, and its
/// relay spawned (it outlives the tunnel task, which ends here with `None`).
#[allow(clippy::too_many_arguments)]
async fn open_udp<T>(
    node: &Arc<Node>,
    req: &ConnectRequest,
    responder: Responder,
    mut log: Box<ConnLog>,
    target: SocketAddr,
    conn: &Connection<'_>,
    uid: &str,
    start: Instant,
) -> Option<T> {
    log.udp = true;
    if node.pod_sockets(target.ip()).is_some() {
        let status = StatusCode::NOT_IMPLEMENTED;
        let why = "UDP flows to in-pod workloads are not supported yet".to_owned();
        return refuse(node, responder, &mut log, status, why, start);
    }
    let socket = match crate::udp::connect_local(req.peer_addr.ip(), target).await {
        Ok(s) => s,
        Err(e) => {
            let status = StatusCode::SERVICE_UNAVAILABLE;
            let why = format!("cannot open a UDP socket to {target}: {e}");
            return refuse(node, responder, &mut log, status, why, start);
        }
    };
    let (registration, revoked) = node.connections.register(conn, uid);
    let flow = match responder.accept_udp(Default::default()) {
        Ok(f) => f,
        Err(e) => return unanswered(node, &mut log, e, start),
    };
    node.count_tunnel("inbound", flow.info().transport);
    tokio::spawn(crate::udp::relay_inbound(
        node.clone(),
        flow,
        socket,
        log,
        revoked,
        registration,
    ));
    None
}

impl Accepted {
    /// Copies both ways until either side ends or policy revokes the connection, then
    /// counts and logs it. Works in place: what is moved into a future is stored again.
    async fn copy(&mut self, node: &Node) {
        let result = tokio::select! {
            r = ambit_hbone::copy_tunnel_tcp(&mut self.tunnel, &mut self.upstream, &*self.log) => r.map_err(|e| e.to_string()),
            reason = &mut self.revoked => Err(reason.unwrap_or_else(|_| "closed".into())),
        };
        if result.is_err() {
            crate::socket::reset(&self.upstream);
        }
        let error = result.err();
        self.log.close(error.is_some());
        let log = &mut self.log;
        log.duration = self.start.elapsed();
        log.error = error;
        node.access_log(log);
    }
}

/// The peer went away (or its stream did) between its request and our 200: the upstream was
/// opened, so the attempt is still logged.
fn unanswered<T>(
    node: &Node,
    log: &mut ConnLog,
    e: ambit_hbone::HboneError,
    start: Instant,
) -> Option<T> {
    info!(error = %e, "inbound HBONE request gone before its answer");
    log.duration = start.elapsed();
    log.error = Some(format!("the answer could not be sent: {e}"));
    node.access_log(log);
    None
}

fn refuse<T>(
    node: &Node,
    responder: Responder,
    log: &mut ConnLog,
    status: StatusCode,
    why: String,
    start: Instant,
) -> Option<T> {
    info!(status = status.as_u16(), reason = %why, "inbound HBONE refused");
    responder.reject(status);
    log.duration = start.elapsed();
    log.error = Some(format!("{}: {why}", status.as_u16()));
    node.access_log(log);
    None
}
