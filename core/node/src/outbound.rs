//! Outbound: connections from local workloads, explicit (SOCKS5, HTTP CONNECT) or captured
//! (`SO_ORIGINAL_DST` after an iptables redirect), steered per Istio's rules and carried over
//! HBONE or plain TCP.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ambit_hbone::{Dial, HboneError, Tunnel};
use ambit_state::{Service, Workload};
use ambit_telemetry::{Reporter, ResponseFlag};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::info;

use ambit_proxy::labels_for;

use crate::Node;
use crate::record::ConnLog;
use crate::socket::{Scope, accept_loop, original_dst, reset};
use crate::steer::{Steer, SteerError, steer};

/// Size bands (bytes, debug build) of one client's task: memory per outbound connection
/// (measured: SOCKS5 1,432, HTTP CONNECT 1,480, captured 1,264; they were 7.3 KB before
/// `open` was boxed and the task stopped storing its future twice, and 2,384 / 2,432 / 2,216
/// before the copy borrowed the tunnel and the socket instead of taking them).
const SOCKS5_BAND: (usize, usize) = (1_200, 1_800);
/// See [`SOCKS5_BAND`].
const HTTP_CONNECT_BAND: (usize, usize) = (1_200, 1_800);
/// See [`SOCKS5_BAND`].
const CAPTURED_BAND: (usize, usize) = (1_000, 1_600);

/// Time a client has to finish a SOCKS5 or HTTP CONNECT handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an outbound connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OutboundError {
    #[error("source {0} is not a workload on this node")]
    UnknownSource(IpAddr),
    #[error(transparent)]
    Steer(#[from] SteerError),
    #[error(transparent)]
    Hbone(#[from] HboneError),
    #[error("cannot connect to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("credentials: {0}")]
    Credentials(String),
}

enum Upstream {
    Tunnel(Tunnel),
    Tcp(TcpStream),
}

/// An open upstream with its counters and its log (boxed: the connection's future holds it
/// for the connection's life). The labels were needed only to find the counters.
struct Opened {
    upstream: Upstream,
    log: Box<ConnLog>,
}

/// Accepts SOCKS5 clients until the task is dropped.
pub(crate) async fn serve_socks5(node: Arc<Node>, listener: TcpListener) {
    accept_loop(
        node,
        listener,
        "SOCKS5",
        SOCKS5_BAND,
        Scope::default(),
        |n, s, p| async move { socks5(&n, s, p).await },
    )
    .await;
}

/// Accepts HTTP CONNECT clients until the task is dropped.
pub(crate) async fn serve_http_connect(node: Arc<Node>, listener: TcpListener) {
    accept_loop(
        node,
        listener,
        "HTTP CONNECT",
        HTTP_CONNECT_BAND,
        Scope::default(),
        |n, s, p| async move { http_connect(&n, s, p).await },
    )
    .await;
}

/// Accepts redirected outbound connections (iptables REDIRECT to 15001) until dropped; their
/// tasks end with `scope`.
pub(crate) async fn serve_transparent(node: Arc<Node>, listener: TcpListener, scope: Scope) {
    accept_loop(
        node,
        listener,
        "captured outbound",
        CAPTURED_BAND,
        scope,
        |n, mut s, peer| async move {
            let dst = original_dst(&s)?;
            match Box::pin(open(&n, peer, dst)).await {
                Ok(mut o) => pump(&n, &mut s, &mut o).await,
                Err(e) => info!(%peer, %dst, error = %e, "outbound connection refused"),
            }
            Ok(())
        },
    )
    .await;
}

async fn socks5(node: &Arc<Node>, mut s: TcpStream, peer: SocketAddr) -> std::io::Result<()> {
    let (cmd, dst) = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let mut head = [0u8; 2];
        s.read_exact(&mut head).await?;
        if head[0] != 5 {
            return Err(proto("not SOCKS version 5"));
        }
        let mut methods = vec![0u8; usize::from(head[1])];
        s.read_exact(&mut methods).await?;
        if !methods.contains(&0) {
            s.write_all(&[5, 0xFF]).await?;
            return Err(proto("client offers no 'no authentication' method"));
        }
        s.write_all(&[5, 0]).await?;
        let mut req = [0u8; 4];
        s.read_exact(&mut req).await?;
        if req[0] != 5 {
            return Err(proto("bad SOCKS5 request version"));
        }
        // CONNECT, or UDP ASSOCIATE; not BIND.
        if req[1] != 1 && req[1] != 3 {
            s.write_all(&reply(7)).await?;
            return Err(proto("only CONNECT and UDP ASSOCIATE are supported"));
        }
        let ip = match req[3] {
            1 => {
                let mut b = [0u8; 4];
                s.read_exact(&mut b).await?;
                Some(IpAddr::from(b))
            }
            4 => {
                let mut b = [0u8; 16];
                s.read_exact(&mut b).await?;
                Some(IpAddr::from(b))
            }
            3 => {
                let mut len = [0u8; 1];
                s.read_exact(&mut len).await?;
                let mut name = vec![0u8; usize::from(len[0])];
                s.read_exact(&mut name).await?;
                let name = String::from_utf8_lossy(&name).to_ascii_lowercase();
                resolve(node, &name)
            }
            _ => {
                s.write_all(&reply(8)).await?;
                return Err(proto("unknown address type"));
            }
        };
        let mut port = [0u8; 2];
        s.read_exact(&mut port).await?;
        // UDP ASSOCIATE names where the client will send from, only as a filter: a name
        // there (PySocks sends "0") leaves the address open.
        let ip = ip.or((req[1] == 3).then_some(IpAddr::from([0u8; 4])));
        let Some(ip) = ip else {
            s.write_all(&reply(4)).await?;
            return Err(proto("unknown host name"));
        };
        Ok((req[1], SocketAddr::new(ip, u16::from_be_bytes(port))))
    })
    .await
    .map_err(|_| proto("SOCKS5 handshake timed out"))??;
    if cmd == 3 {
        return crate::udp::socks::associate(node, s, peer, dst).await;
    }
    match Box::pin(open(node, peer, dst)).await {
        Ok(mut o) => {
            s.write_all(&reply(0)).await?;
            pump(node, &mut s, &mut o).await;
        }
        Err(e) => {
            info!(%peer, %dst, error = %e, "outbound connection refused");
            s.write_all(&reply(socks_code(&e))).await?;
        }
    }
    Ok(())
}

async fn http_connect(node: &Arc<Node>, mut s: TcpStream, peer: SocketAddr) -> std::io::Result<()> {
    let target = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let mut buf = Vec::with_capacity(512);
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            if buf.len() > 8192 || s.read(&mut byte).await? == 0 {
                return Err(proto("incomplete HTTP CONNECT request"));
            }
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf).into_owned();
        let mut words = head.split_whitespace();
        match (words.next(), words.next()) {
            (Some("CONNECT"), Some(t)) => Ok(t.to_owned()),
            _ => Err(proto("only CONNECT is supported")),
        }
    })
    .await
    .map_err(|_| proto("HTTP CONNECT handshake timed out"))?;
    let target = match target {
        Ok(t) => t,
        Err(e) => {
            s.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                .await?;
            return Err(e);
        }
    };
    let dst = match target.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => target.rsplit_once(':').and_then(|(h, p)| {
            Some(SocketAddr::new(
                resolve(node, &h.to_ascii_lowercase())?,
                p.parse().ok()?,
            ))
        }),
    };
    let Some(dst) = dst else {
        s.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            .await?;
        return Err(proto("unknown CONNECT target"));
    };
    match Box::pin(open(node, peer, dst)).await {
        Ok(mut o) => {
            s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await?;
            pump(node, &mut s, &mut o).await;
        }
        Err(e) => {
            info!(%peer, %dst, error = %e, "outbound connection refused");
            let status = match &e {
                OutboundError::Hbone(h) if h.is_denied() => "403 Forbidden",
                OutboundError::UnknownSource(_) => "403 Forbidden",
                OutboundError::Hbone(HboneError::ConnectTimeout { .. }) => "504 Gateway Timeout",
                _ => "502 Bad Gateway",
            };
            s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                .await?;
        }
    }
    Ok(())
}

/// Resolves a name the way the mesh knows it: a service hostname's VIP, or an IP literal.
pub(crate) fn resolve(node: &Node, name: &str) -> Option<IpAddr> {
    if let Ok(ip) = name.parse() {
        return Some(ip);
    }
    let state = node.state.load();
    state.service_by_hostname(name).and_then(|s| {
        s.vips
            .iter()
            .find(|(n, _)| *n == node.config.network)
            .map(|(_, ip)| *ip)
    })
}

/// Opens the upstream side for a connection from `peer` (a local workload) to `dst`. Callers
/// box this future: it is large (the HBONE dial) and only lives until the upstream is open,
/// while the connection's own future lives as long as the connection.
async fn open(
    node: &Arc<Node>,
    peer: SocketAddr,
    dst: SocketAddr,
) -> Result<Opened, OutboundError> {
    let state = node.state.load_full();
    let net = &node.config.network;
    let src = state
        .workload_by_addr(net, peer.ip())
        .filter(|w| w.node == node.config.node)
        .cloned()
        .ok_or(OutboundError::UnknownSource(peer.ip()))?;
    let steer = steer(&state, net, Some(&src), dst)?;
    let src_id = src
        .identity()
        .map_err(|e| OutboundError::Credentials(e.to_string()))?;
    let mut log = ConnLog::new("outbound", peer);
    log.src = Some(src.clone());
    log.src_identity = Some(src_id.clone());
    match steer {
        Steer::Hbone {
            peer: hbone_peer,
            authority,
            expected,
            workload,
            service,
        } => {
            let mut labels = labels_for(
                Reporter::Source,
                Some(&src),
                Some(&workload),
                service.as_deref(),
            );
            labels.source_principal = src_id.to_string();
            labels.destination_principal = expected
                .first()
                .map(ToString::to_string)
                .unwrap_or_default();
            labels.mutual_tls = true;
            fill_dst(
                &mut log,
                hbone_peer,
                Some(authority),
                &workload,
                service.as_ref(),
            );
            log.dst_identity = expected.first().cloned();
            let cell = node
                .identities
                .cell(&src_id)
                .await
                .map_err(|e| OutboundError::Credentials(e.to_string()))?;
            let mut dial = Dial::new(cell, hbone_peer, expected, authority.into());
            dial.forwarded = Some({
                let mut f = ambit_hbone::Forwarded::default();
                f.for_addr = Some(peer);
                f.host = service.as_ref().map(|s| s.hostname.clone());
                f
            });
            dial.baggage = Some(baggage(&src));
            dial.source_ip = Some(peer.ip());
            if let Some(x) = &node.config.exporter {
                // The tunnel's span starts a trace; the peer's spans are its children. Marked
                // sampled when kept, so the tracers after this hop keep it too.
                let mut trace = ambit_hbone::TraceParent::random();
                trace.flags = u8::from(x.sampled(&trace.trace_id));
                dial.traceparent = Some(trace);
                log.span = Some(Box::new(crate::record::SpanIds::outbound(&trace)));
            }
            dial.sockets = node
                .pod_sockets(peer.ip())
                .map(|s| s as Arc<dyn ambit_hbone::SocketFactory>);
            if node.config.dial_h3 || workload.hbone_http3 {
                dial.transport = ambit_hbone::Transport::Http3;
            }
            match node.client.connect(&dial).await {
                Ok(t) => {
                    log.transport = Some(t.info().transport);
                    node.count_tunnel("outbound", t.info().transport);
                    // a = the tunnel: what comes from it was received from the destination.
                    log.count(node.metrics.tcp(&labels), false);
                    Ok(Opened {
                        upstream: Upstream::Tunnel(t),
                        log: Box::new(log),
                    })
                }
                Err(e) => {
                    let flag = match &e {
                        HboneError::Rejected { .. } if e.is_denied() => ResponseFlag::Deny,
                        HboneError::ConnectTimeout { .. } => ResponseFlag::NetworkPolicy,
                        HboneError::Tls { .. } => ResponseFlag::TlsFailure,
                        _ => ResponseFlag::Connect,
                    };
                    node.count_failure(&mut labels, flag);
                    log.error = Some(e.to_string());
                    node.access_log(&log);
                    Err(e.into())
                }
            }
        }
        Steer::Direct {
            addr,
            workload,
            service,
        } => {
            let mut labels = labels_for(
                Reporter::Source,
                Some(&src),
                workload.as_deref(),
                service.as_deref(),
            );
            labels.source_principal = src_id.to_string();
            if let Some(w) = &workload {
                fill_dst(&mut log, addr, None, w, service.as_ref());
            } else {
                log.dst_addr = Some(addr);
            }
            let connecting = async {
                match node.pod_sockets(peer.ip()) {
                    Some(pod) => pod.tcp(addr.is_ipv6()).await?.connect(addr).await,
                    None => TcpStream::connect(addr).await,
                }
            };
            match tokio::time::timeout(node.config.connect_timeout, connecting).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    // a = the application: what comes from it is sent to the destination.
                    log.count(node.metrics.tcp(&labels), true);
                    Ok(Opened {
                        upstream: Upstream::Tcp(s),
                        log: Box::new(log),
                    })
                }
                Ok(Err(e)) => {
                    node.count_failure(&mut labels, ResponseFlag::Connect);
                    Err(OutboundError::Connect(addr, e))
                }
                Err(_) => Err(OutboundError::Connect(
                    addr,
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
                )),
            }
        }
    }
}

/// Copies between the application and the upstream, then records metrics and the access log.
/// Both are borrowed from the connection's future, which then stores each once.
async fn pump(node: &Node, app: &mut TcpStream, o: &mut Opened) {
    let start = Instant::now();
    let result = match &mut o.upstream {
        Upstream::Tunnel(t) => ambit_hbone::copy_tunnel_tcp(t, app, &*o.log)
            .await
            .map(drop),
        Upstream::Tcp(s) => {
            let r = ambit_hbone::copy_bidirectional_metered(&mut *app, &mut *s, &*o.log).await;
            if r.is_err() {
                reset(s);
            }
            r.map(drop)
        }
    };
    if result.is_err() {
        // The other side ended abnormally: say so with a reset, not a clean FIN, so the
        // application cannot take a truncated stream for a complete one.
        reset(app);
    }
    let err = result.err().map(|e| e.to_string());
    o.log.close(err.is_some());
    let log = &mut o.log;
    log.duration = start.elapsed();
    log.error = err;
    node.access_log(log);
}

fn fill_dst(
    log: &mut ConnLog,
    addr: SocketAddr,
    hbone: Option<SocketAddr>,
    w: &Arc<Workload>,
    s: Option<&Arc<Service>>,
) {
    log.dst_addr = Some(addr);
    log.dst_hbone_addr = hbone.map(ambit_hbone::Authority::Addr);
    log.dst = Some(w.clone());
    log.service = s.cloned();
}

fn baggage(w: &Workload) -> ambit_hbone::Baggage {
    let mut b = ambit_hbone::Baggage::default();
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    b.cluster = some(&w.cluster_id);
    b.namespace = some(&w.namespace);
    b.workload_kind = Some(format!("{:?}", w.workload_type).to_ascii_lowercase());
    b.workload_name = some(&w.workload_name).or_else(|| some(&w.name));
    b.service = some(&w.canonical_name);
    b.revision = some(&w.canonical_revision);
    b
}

/// A SOCKS5 reply with `code` and no bound address.
pub(crate) fn reply(code: u8) -> [u8; 10] {
    [5, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

/// RFC 1928 reply codes for our failures.
fn socks_code(e: &OutboundError) -> u8 {
    match e {
        OutboundError::UnknownSource(_) | OutboundError::Steer(SteerError::IllegalPort(_)) => 2,
        OutboundError::Hbone(h) if h.is_denied() => 2,
        OutboundError::Steer(_) => 4,
        OutboundError::Hbone(HboneError::ConnectTimeout { .. }) => 6,
        OutboundError::Hbone(_) | OutboundError::Connect(..) | OutboundError::Credentials(_) => 5,
    }
}

fn proto(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}
