//! UDP through the mesh (CONNECT-UDP flows, an ambit extension). Inbound: an authorized flow
//! is relayed to the local workload from a socket connected to it. Outbound: an explicit
//! forward listener (`NodeConfig::udp_forwards`) opens one flow per client address, as the
//! local workload it names, to its target; a SOCKS5 UDP association (`socks`) opens one
//! flow per target its client names.

pub(crate) mod socks;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ambit_hbone::{Dial, UdpReceiver, UdpSender, UdpTunnel};
use ambit_telemetry::TcpCounters;
use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::Node;
use crate::record::ConnLog;
use crate::steer::{Steer, steer};

/// Datagrams queued from one forward client before more are dropped.
const CLIENT_QUEUE: usize = 256;
/// Flows one forward listener carries at once; datagrams from further clients are dropped.
const MAX_FORWARD_FLOWS: usize = 1024;
/// How long sending one datagram may wait for the stream's flow control (capsules) before
/// the datagram is dropped, as a congested path would.
const SEND_WAIT: Duration = Duration::from_secs(1);

/// Sends `d` on `tx` unless it waits past [`SEND_WAIT`] (then it is dropped) or is too large
/// for a UDP payload (dropped and logged); `Err` only when the flow itself failed.
async fn send_or_drop(tx: &mut UdpSender, d: &[u8]) -> Result<(), String> {
    if d.len() > ambit_hbone::MAX_UDP_PAYLOAD {
        debug!(
            len = d.len(),
            "dropped a datagram larger than a UDP payload"
        );
        return Ok(());
    }
    match tokio::time::timeout(SEND_WAIT, tx.send(d)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("flow failed: {e}")),
        Err(_) => {
            debug!("dropped a datagram: the flow's stream is blocked");
            Ok(())
        }
    }
}

/// An explicit way into the mesh for UDP: datagrams to `listen` are carried to `target` as the
/// local workload whose address is `source` (its identity, its policies), one flow per client
/// address; answers come back to that client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UdpForward {
    /// Where clients send.
    pub listen: SocketAddr,
    /// The local workload the flows belong to.
    pub source: IpAddr,
    /// Where the datagrams go (a workload or service address).
    pub target: SocketAddr,
}

impl UdpForward {
    /// A forward from `listen` to `target` as the workload at `source`.
    pub fn new(listen: SocketAddr, source: IpAddr, target: SocketAddr) -> Self {
        Self {
            listen,
            source,
            target,
        }
    }
}

/// Relays an accepted inbound flow to `target` until it ends, idles out or is revoked; then
/// counts and logs it.
pub(crate) async fn relay_inbound(
    node: Arc<Node>,
    flow: UdpTunnel,
    socket: UdpSocket,
    mut log: Box<ConnLog>,
    revoked: oneshot::Receiver<String>,
    _registration: crate::conns::Registration,
) {
    let start = Instant::now();
    let (tx, rx) = flow.into_split();
    // a = the flow: what comes from it was received from the source.
    log.count(Arc::new(TcpCounters::default()), false);
    let result = relay(&node, tx, rx, &socket, &log, revoked).await;
    log.close(result.is_err());
    log.duration = start.elapsed();
    log.error = result.err();
    node.count_udp("inbound", log.error.is_none(), &log);
    node.access_log(&log);
}

/// Pumps datagrams between a flow and a socket connected to the workload until the flow ends
/// (`Ok`), or idles out, fails or is revoked (`Err`).
async fn relay(
    node: &Node,
    mut tx: UdpSender,
    mut rx: UdpReceiver,
    socket: &UdpSocket,
    meter: &ConnLog,
    mut revoked: oneshot::Receiver<String>,
) -> Result<(), String> {
    use ambit_hbone::Meter;
    let idle = node.config.udp_idle_timeout;
    // The largest UDP payload IPv6 carries, plus one to see a larger one.
    let mut buf = vec![0u8; 65_528];
    let mut last = tokio::time::Instant::now();
    // The flow's answer may still wait for QUIC credit: send it before waiting on anything.
    if tokio::time::timeout(idle, tx.flush()).await.is_err() {
        return Err(format!("the flow's answer was not sent within {idle:?}"));
    }
    let result = loop {
        tokio::select! {
            d = rx.recv() => match d {
                Ok(Some(d)) => {
                    last = tokio::time::Instant::now();
                    meter.a_to_b(d.len() as u64);
                    if let Err(e) = socket.send(&d).await {
                        debug!(error = %e, "UDP datagram not delivered");
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => {
                    tx.abort_on(&e);
                    return Err(format!("flow failed: {e}"));
                }
            },
            r = socket.recv(&mut buf) => match r {
                Ok(n) => {
                    last = tokio::time::Instant::now();
                    meter.b_to_a(n as u64);
                    if let Err(e) = send_or_drop(&mut tx, &buf[..n]).await {
                        break Err(e);
                    }
                }
                // An ICMP error for an earlier datagram (port unreachable...): UDP goes on.
                Err(e) => debug!(error = %e, "UDP receive error"),
            },
            // Idle is how UDP flows end.
            () = tokio::time::sleep_until(last + idle) => break Ok(()),
            reason = &mut revoked => break Err(reason.unwrap_or_else(|_| "closed".into())),
        }
    };
    let _ = tokio::time::timeout(SEND_WAIT, tx.close()).await;
    result
}

/// Serves one forward listener: a flow per client address, each in its own task.
pub(crate) async fn serve_forward(node: Arc<Node>, socket: UdpSocket, fwd: UdpForward) {
    let socket = Arc::new(socket);
    let clients: Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Bytes>>>> = Arc::default();
    let mut buf = vec![0u8; 65_528];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                debug!(error = %e, "UDP forward receive error");
                continue;
            }
        };
        let datagram = Bytes::copy_from_slice(&buf[..n]);
        let mut map = clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = map.get(&from).filter(|q| !q.is_closed()) {
            // A full queue drops, as a congested path would.
            let _ = q.try_send(datagram);
            continue;
        }
        if map.len() >= MAX_FORWARD_FLOWS {
            map.retain(|_, q| !q.is_closed());
            if map.len() >= MAX_FORWARD_FLOWS {
                debug!(%from, "UDP forward at its flow limit; datagram dropped");
                continue;
            }
        }
        let (q, queued) = mpsc::channel(CLIENT_QUEUE);
        let _ = q.try_send(datagram);
        map.insert(from, q);
        let (node, socket, clients) = (node.clone(), socket.clone(), clients.clone());
        let flow = Flow {
            source: fwd.source,
            target: fwd.target,
            client: from,
            socks: false,
        };
        tokio::spawn(async move {
            forward_flow(&node, &socket, flow, queued).await;
            let mut map = clients.lock().unwrap_or_else(|p| p.into_inner());
            if map.get(&from).is_some_and(|q| q.is_closed()) {
                map.remove(&from);
            }
        });
    }
}

/// One outbound flow: whose it is, where it goes, and where its answers return.
struct Flow {
    /// The local workload the flow belongs to.
    source: IpAddr,
    target: SocketAddr,
    /// Where answers are sent.
    client: SocketAddr,
    /// A SOCKS5 association's: each answer carries a header naming `target` (RFC 1928 §7).
    socks: bool,
}

/// One client's flow to one target, fed by `queued` (from a forward listener or a SOCKS5
/// association) until it idles out or either side ends it.
async fn forward_flow(
    node: &Arc<Node>,
    socket: &UdpSocket,
    flow: Flow,
    mut queued: mpsc::Receiver<Bytes>,
) {
    let start = Instant::now();
    let client = flow.client;
    let mut log = Box::new(ConnLog::new(
        "outbound",
        SocketAddr::new(flow.source, client.port()),
    ));
    log.udp = true;
    let mut answer = Vec::new();
    if flow.socks {
        answer.extend_from_slice(&[0, 0, 0]);
        socks::encode_addr(flow.target, &mut answer);
    }
    let header = answer.len();
    let (source, target) = (flow.source, flow.target);
    let flow = match open_forward(node, source, target, &mut log).await {
        Ok(f) => f,
        Err(why) => {
            warn!(%client, %target, reason = %why, "UDP flow refused");
            log.error = Some(why);
            log.duration = start.elapsed();
            node.count_udp("outbound", false, &log);
            node.access_log(&log);
            return;
        }
    };
    log.transport = Some(flow.info().transport);
    node.count_tunnel("outbound", flow.info().transport);
    // a = the client: what comes from it is sent to the destination.
    log.count(Arc::new(TcpCounters::default()), true);
    let (mut tx, mut rx) = flow.into_split();
    let idle = node.config.udp_idle_timeout;
    let mut last = tokio::time::Instant::now();
    let result: Result<(), String> = loop {
        use ambit_hbone::Meter;
        tokio::select! {
            d = queued.recv() => match d {
                Some(d) => {
                    last = tokio::time::Instant::now();
                    log.a_to_b(d.len() as u64);
                    if let Err(e) = send_or_drop(&mut tx, &d).await {
                        break Err(e);
                    }
                }
                None => break Ok(()),
            },
            d = rx.recv() => match d {
                Ok(Some(d)) => {
                    last = tokio::time::Instant::now();
                    log.b_to_a(d.len() as u64);
                    let sent = if header == 0 {
                        socket.send_to(&d, client).await
                    } else {
                        answer.truncate(header);
                        answer.extend_from_slice(&d);
                        socket.send_to(&answer, client).await
                    };
                    if let Err(e) = sent {
                        debug!(error = %e, "UDP answer not delivered");
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => {
                    tx.abort_on(&e);
                    break Err(format!("flow failed: {e}"));
                }
            },
            () = tokio::time::sleep_until(last + idle) => break Ok(()),
        }
    };
    queued.close();
    if result.is_ok() {
        let _ = tokio::time::timeout(SEND_WAIT, tx.close()).await;
    }
    log.close(result.is_err());
    log.duration = start.elapsed();
    log.error = result.err();
    node.count_udp("outbound", log.error.is_none(), &log);
    node.access_log(&log);
}

/// Steers and opens a flow from `source` to `target`; the error says why there is none.
async fn open_forward(
    node: &Arc<Node>,
    source: IpAddr,
    target: SocketAddr,
    log: &mut ConnLog,
) -> Result<UdpTunnel, String> {
    let state = node.state.load_full();
    let net = &node.config.network;
    let src = state
        .workload_by_addr(net, source)
        .filter(|w| w.node == node.config.node)
        .cloned()
        .ok_or_else(|| format!("{source} is not a local workload"))?;
    let src_id = src.identity().map_err(|e| e.to_string())?;
    log.src = Some(src.clone());
    log.src_identity = Some(src_id.clone());
    match steer(&state, net, Some(&src), target).map_err(|e| e.to_string())? {
        Steer::Hbone {
            peer,
            authority,
            expected,
            workload,
            service,
        } => {
            log.dst = Some(workload.clone());
            log.service = service;
            log.dst_addr = Some(peer);
            log.dst_hbone_addr = Some(authority.into());
            log.dst_identity = expected.first().cloned();
            let cell = node
                .identities
                .cell(&src_id)
                .await
                .map_err(|e| e.to_string())?;
            let mut dial = Dial::new(cell, peer, expected, authority.into());
            dial.source_ip = Some(source);
            if node.config.dial_h3 || workload.hbone_http3 {
                dial.transport = ambit_hbone::Transport::Http3;
            }
            node.client
                .connect_udp(&dial)
                .await
                .map_err(|e| e.to_string())
        }
        Steer::Direct { addr, .. } => Err(format!(
            "{addr} is outside the mesh: UDP flows carry mesh destinations only"
        )),
    }
}

/// A socket connected to `target` for an inbound flow, from `src` where this host has it (so
/// the workload sees the client's address), else from the system's choice.
pub(crate) async fn connect_local(src: IpAddr, target: SocketAddr) -> std::io::Result<UdpSocket> {
    let any: IpAddr = if target.is_ipv4() {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    let socket = match UdpSocket::bind(SocketAddr::new(src, 0)).await {
        Ok(s) if src.is_ipv4() == target.is_ipv4() => s,
        _ => UdpSocket::bind(SocketAddr::new(any, 0)).await?,
    };
    socket.connect(target).await?;
    Ok(socket)
}

/// The idle timeout a flow gets by default: DNS-like exchanges are done in well under it,
/// and a longer-lived flow keeps sending.
pub const DEFAULT_UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
