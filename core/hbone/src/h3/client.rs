//! The HBONE client's HTTP/3 side: pooled QUIC connections, one CONNECT per bidirectional
//! stream, and the fallback to HTTP/2 when a peer does not answer QUIC.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use bytes::BytesMut;
use quinn::crypto::rustls::QuicClientConfig;
use tracing::debug;

use super::codec::frame;
use super::conn::{self, H3Conn};
use super::qpack::{self, RequestLine};
use super::stream::{H3Reader, H3Writer, StreamError};
use crate::HboneError;
use crate::client::{Client, Conn, ConnKind, Dial, Inner, KeyPool, Slot, idle_release, lock};
use crate::tunnel::{Transport, Tunnel};

/// The client's QUIC endpoints (one UDP socket per local bind address) and the peers whose
/// QUIC handshake failed recently.
#[derive(Default)]
pub(crate) struct QuicState {
    endpoints: Mutex<HashMap<SocketAddr, quinn::Endpoint>>,
    failed: Mutex<HashMap<SocketAddr, Instant>>,
    failures: std::sync::atomic::AtomicU64,
}

impl Client {
    /// Opens a tunnel over HTTP/3, or `None` when the caller should use HTTP/2: the peer's
    /// QUIC handshake failed or timed out, now or recently. Other errors (refusals, TLS
    /// identity failures) are returned as they are.
    pub(crate) async fn connect_h3(
        &self,
        dial: &Dial,
        udp: bool,
    ) -> Option<Result<(Tunnel, Option<Datagrams>), HboneError>> {
        let inner = self.inner();
        let retry_after = inner.settings.quic_retry_after;
        {
            let mut failed = lock(&inner.quic.failed);
            match failed.get(&dial.peer) {
                Some(at) if at.elapsed() < retry_after => return None,
                Some(_) => {
                    failed.remove(&dial.peer);
                }
                None => {}
            }
        }
        if dial.sockets.is_some() {
            // UDP from another network namespace is not built yet.
            debug!(peer = %dial.peer, "HTTP/3 from a pod network namespace is not supported; using HTTP/2");
            return None;
        }
        let pool = self.pool_for(dial, Transport::Http3);
        let mut retried = false;
        loop {
            let slot = match self.checkout_h3(&pool, dial).await {
                Ok(slot) => slot,
                Err(Fallback::Yes(why)) => {
                    debug!(peer = %dial.peer, reason = %why, "no HTTP/3 to this peer; falling back to HTTP/2");
                    lock(&inner.quic.failed).insert(dial.peer, Instant::now());
                    inner.quic.failures.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                Err(Fallback::No(e)) => return Some(Err(e)),
            };
            match open(slot, dial, inner, udp).await {
                Ok(tunnel) => return Some(Ok(tunnel)),
                // A pooled connection that died (idle, GOAWAY) since its last use: the
                // request never reached the peer.
                Err(Open::Unsent(why)) if !retried => {
                    debug!(peer = %dial.peer, reason = %why, "pooled HTTP/3 connection unusable; redialling");
                    retried = true;
                }
                Err(Open::Unsent(why)) | Err(Open::Failed(why)) => {
                    return Some(Err(HboneError::Http3 {
                        addr: dial.peer,
                        reason: why,
                    }));
                }
                Err(Open::Answered(e)) => return Some(Err(e)),
            }
        }
    }

    async fn checkout_h3(&self, pool: &Arc<KeyPool>, dial: &Dial) -> Result<Slot, Fallback> {
        if let Some(slot) = pool.reserve() {
            return Ok(slot);
        }
        let _dialling = pool.dial.lock().await;
        if let Some(slot) = pool.reserve() {
            return Ok(slot);
        }
        let tls = pool.config(&self.inner().tls, dial).map_err(Fallback::No)?;
        let conn = self.dial_h3(tls, dial).await?;
        Ok(self.pooled(pool, conn))
    }

    async fn dial_h3(
        &self,
        tls: Arc<rustls::ClientConfig>,
        dial: &Dial,
    ) -> Result<Arc<Conn>, Fallback> {
        let inner = self.inner();
        let s = &inner.settings;
        let peer = dial.peer;
        let endpoint = inner
            .quic
            .endpoint(dial.source_ip, peer)
            .map_err(|e| Fallback::Yes(format!("cannot open a UDP socket: {e}")))?;
        let mut tls = (*tls).clone();
        tls.alpn_protocols = vec![ambit_tls::ALPN_H3.to_vec()];
        let crypto = QuicClientConfig::try_from(Arc::new(tls)).map_err(|e| {
            Fallback::No(HboneError::Http3 {
                addr: peer,
                reason: e.to_string(),
            })
        })?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        // No streams from the server: HBONE requests go client to server only.
        config.transport_config(conn::transport(
            0,
            s.ping_timeout,
            s.ping_interval,
            s.quic_segmentation_offload,
        ));
        let connecting = endpoint
            .connect_with(config, peer, "0.0.0.0")
            .map_err(|e| Fallback::Yes(format!("QUIC connect: {e}")))?;
        let timeout = s.quic_handshake_timeout;
        let quic = match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(q)) => q,
            Ok(Err(e)) if is_tls_failure(&e) => {
                return Err(Fallback::No(HboneError::Tls {
                    addr: peer,
                    source: std::io::Error::other(e),
                }));
            }
            Ok(Err(e)) => return Err(Fallback::Yes(format!("QUIC handshake: {e}"))),
            Err(_) => {
                return Err(Fallback::Yes(format!(
                    "QUIC handshake not done within {timeout:?}"
                )));
            }
        };
        let local_ip = quic
            .local_ip()
            .or_else(|| endpoint.local_addr().ok().map(|a| a.ip()))
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let port = endpoint.local_addr().map(|a| a.port()).unwrap_or(0);
        let info = super::established(&quic, SocketAddr::new(local_ip, port)).map_err(|why| {
            Fallback::No(HboneError::Http3 {
                addr: peer,
                reason: why,
            })
        })?;
        let h3 = H3Conn::start(quic, u64::from(s.max_header_list_size), s.connect_timeout)
            .await
            .map_err(|e| Fallback::Yes(format!("HTTP/3 setup: {e}")))?;
        let pooled = Arc::new(Conn {
            kind: ConnKind::H3(h3.clone()),
            info: Arc::new(info),
            max_streams: s.max_streams_per_connection,
            active: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            last_used: Mutex::new(Instant::now()),
        });
        tokio::spawn(watch(pooled.clone(), h3, Arc::downgrade(inner)));
        Ok(pooled)
    }
}

/// Marks a pooled connection closed when QUIC closes it, the peer sends GOAWAY, or it has
/// been idle too long (then it is closed here).
async fn watch(conn: Arc<Conn>, h3: Arc<H3Conn>, owner: Weak<Inner>) {
    let idle = owner
        .upgrade()
        .map(|i| i.settings.idle_timeout)
        .unwrap_or_default();
    let mut peer = h3.peer.clone();
    tokio::select! {
        e = h3.quic.closed() => debug!(peer = %conn.info.peer_addr, error = %e, "HBONE/HTTP3 connection closed"),
        () = crate::server::wait_until(&mut peer, |p| p.goaway.is_some()) => {
            debug!(peer = %conn.info.peer_addr, "HBONE/HTTP3 peer sent GOAWAY");
        }
        () = idle_release(&conn, idle, &owner) => {
            debug!(peer = %conn.info.peer_addr, "releasing idle HBONE/HTTP3 connection");
            h3.quic.close(quinn::VarInt::from_u32(super::codec::code::NO_ERROR), b"");
        }
    }
    conn.closed.store(true, Ordering::Release);
    if let Some(inner) = owner.upgrade() {
        inner.forget_closed();
    }
    // After a GOAWAY the open tunnels finish; the connection closes when idle.
    if !conn.is_idle_for(std::time::Duration::ZERO) {
        idle_release(&conn, std::time::Duration::ZERO, &Weak::new()).await;
    }
    h3.quic
        .close(quinn::VarInt::from_u32(super::codec::code::NO_ERROR), b"");
}

enum Fallback {
    /// The peer did not speak QUIC: use HTTP/2 (and remember).
    Yes(String),
    /// A real failure: report it.
    No(HboneError),
}

enum Open {
    /// The request was not sent (the connection is gone): another connection may work.
    Unsent(String),
    /// The stream failed after the request was sent.
    Failed(String),
    /// The peer answered with a refusal.
    Answered(HboneError),
}

/// A UDP flow's HTTP/3 datagram halves.
pub(crate) type Datagrams = (super::datagram::Outbound, super::datagram::Inbound);

/// Sends the CONNECT (CONNECT-UDP when `udp`) on a new stream of `slot`'s connection and
/// waits for the answer; the tunnel holds the slot. A connection found unusable is marked
/// closed.
async fn open(
    slot: Slot,
    dial: &Dial,
    inner: &Inner,
    udp: bool,
) -> Result<(Tunnel, Option<Datagrams>), Open> {
    let ConnKind::H3(h3) = &slot.0.kind else {
        return Err(Open::Failed("HTTP/3 pool holds another transport".into()));
    };
    let h3 = h3.clone();
    let s = &inner.settings;
    let request = dial.request().map_err(Open::Answered)?;
    let udp_path = match udp {
        true => Some(crate::udp::codec::path(
            dial.udp_target().map_err(Open::Answered)?,
        )),
        false => None,
    };
    let opened = tokio::time::timeout(s.connect_timeout, h3.quic.open_bi()).await;
    let (send, recv) = match opened {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            slot.0.closed.store(true, Ordering::Release);
            return Err(Open::Unsent(format!("opening a stream: {e}")));
        }
        Err(_) => {
            return Err(Open::Failed(format!(
                "no stream credit from the peer within {:?}",
                s.connect_timeout
            )));
        }
    };
    let mut writer = H3Writer::new(send);
    let mut reader = H3Reader::new(recv);
    let authority = dial.authority.to_string();
    let peer = dial.peer.to_string();
    let line = match &udp_path {
        None => RequestLine::Connect {
            authority: &authority,
        },
        Some(path) => RequestLine::Extended {
            authority: &peer,
            protocol: crate::udp::codec::PROTOCOL,
            path,
        },
    };
    let mut headers = request.headers().clone();
    if udp {
        headers.insert("capsule-protocol", http::HeaderValue::from_static("?1"));
    }
    let mut block = BytesMut::with_capacity(256);
    qpack::encode_request(line, &headers, &mut block);
    if let Err(e) = writer.write_frame(frame::HEADERS, &block).await {
        slot.0.closed.store(true, Ordering::Release);
        return Err(Open::Unsent(format!("sending CONNECT: {e}")));
    }
    let max = s.max_header_list_size as usize;
    // Interim (1xx) answers are skipped, a few of them.
    let mut interim = 0;
    let status = loop {
        let answer = tokio::time::timeout(s.connect_timeout, reader.read_headers(max)).await;
        let block = match answer {
            Ok(Ok(Some(b))) => b,
            Ok(Ok(None)) => return Err(Open::Failed("stream ended before a response".into())),
            Ok(Err(StreamError::Read(quinn::ReadError::Reset(c))))
                if c.into_inner() == u64::from(super::codec::code::REQUEST_REJECTED) =>
            {
                // Refused unprocessed (the peer is going away): another connection may work.
                slot.0.closed.store(true, Ordering::Release);
                return Err(Open::Unsent("request rejected by a peer going away".into()));
            }
            Ok(Err(e @ StreamError::Wire(_))) | Ok(Err(e @ StreamError::Read(_))) => {
                return Err(Open::Failed(format!("reading the response: {e}")));
            }
            Err(_) => {
                return Err(Open::Failed(format!(
                    "no response within {:?}",
                    s.connect_timeout
                )));
            }
        };
        let fields = qpack::decode(&block, max)
            .map_err(|e| Open::Failed(format!("response headers: {e}")))?;
        match fields.status {
            Some(st) if st.is_informational() && st != http::StatusCode::SWITCHING_PROTOCOLS => {
                interim += 1;
                if interim > 8 {
                    return Err(Open::Failed("too many interim responses".into()));
                }
                continue;
            }
            Some(st) => break st,
            None => return Err(Open::Failed("response without :status".into())),
        }
    };
    if !status.is_success() {
        writer.reset(super::codec::code::NO_ERROR);
        return Err(Open::Answered(HboneError::Rejected {
            addr: dial.peer,
            authority,
            status,
        }));
    }
    inner.tunnels_opened.fetch_add(1, Ordering::Relaxed);
    let info = slot.0.info.clone();
    let datagrams = udp.then(|| h3.datagram_flow(writer.stream_id()));
    Ok((
        Tunnel::from_h3(reader, writer, info, Some(Arc::new(slot))),
        datagrams,
    ))
}

impl QuicState {
    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The endpoint to dial `peer` from: bound to `source_ip` when this host has it, else to
    /// the unspecified address of `peer`'s family.
    fn endpoint(
        &self,
        source_ip: Option<IpAddr>,
        peer: SocketAddr,
    ) -> std::io::Result<quinn::Endpoint> {
        let any = if peer.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        };
        let wanted = source_ip
            .filter(|ip| ip.is_ipv4() == peer.is_ipv4() && !ip.is_unspecified())
            .unwrap_or(any);
        let mut endpoints = lock(&self.endpoints);
        let key = SocketAddr::new(wanted, 0);
        if let Some(e) = endpoints.get(&key) {
            return Ok(e.clone());
        }
        let socket = std::net::UdpSocket::bind(key).or_else(|e| {
            debug!(ip = %wanted, error = %e, "cannot bind QUIC to the source workload address; using the system's choice");
            std::net::UdpSocket::bind(SocketAddr::new(any, 0))
        })?;
        let endpoint = conn::endpoint(socket, None)?;
        endpoints.insert(key, endpoint.clone());
        Ok(endpoint)
    }
}

/// Whether the handshake failed on TLS (a certificate or identity refusal) rather than on
/// reachability: QUIC carries TLS alerts as CRYPTO_ERROR codes 0x100..=0x1ff.
fn is_tls_failure(e: &quinn::ConnectionError) -> bool {
    let code = match e {
        quinn::ConnectionError::TransportError(t) => u64::from(t.code),
        quinn::ConnectionError::ConnectionClosed(c) => u64::from(c.error_code),
        _ => return false,
    };
    (0x100..=0x1ff).contains(&code)
}
