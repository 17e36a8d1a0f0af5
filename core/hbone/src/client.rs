//! The HBONE client: pooled HTTP/2-over-mTLS connections, one CONNECT stream per tunnel.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use ambit_identity::SpiffeId;
use ambit_tls::{CredentialCell, TlsContext};
use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Version};
use tokio::net::TcpStream;
use tracing::debug;

use crate::HboneError;
use crate::authority::Authority;
use crate::headers::{Baggage, Forwarded, TraceParent, names};
use crate::settings::{CONNECTION_WINDOW, ClientSettings, MAX_FRAME_SIZE, STREAM_WINDOW};
use crate::tunnel::{Transport, Tunnel, TunnelInfo};

/// Everything needed to open one tunnel.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Dial {
    /// The source workload's credentials (its certificate is presented).
    pub source: Arc<CredentialCell>,
    /// Where to connect: `<pod-ip>:15008` or the waypoint's HBONE address.
    pub peer: SocketAddr,
    /// The SPIFFE ids the peer may present (any one of them).
    pub expected_ids: Vec<SpiffeId>,
    /// The CONNECT `:authority`.
    pub authority: Authority,
    /// Source workload description for the `baggage` header.
    pub baggage: Option<Baggage>,
    /// The `forwarded` header.
    pub forwarded: Option<Forwarded>,
    /// The trace context; a fresh one is made when `None`.
    pub traceparent: Option<TraceParent>,
    /// Further request headers.
    pub headers: HeaderMap,
    /// Local address to connect from (the source workload's IP, so the peer sees it); falls
    /// back to the system's choice when it cannot be bound.
    pub source_ip: Option<std::net::IpAddr>,
    /// Where the TCP socket comes from: another network namespace (a pod's, in-pod mode), with
    /// marks set. `None`: the process's own namespace.
    pub sockets: Option<Arc<dyn SocketFactory>>,
    /// The transport to try first. HTTP/3 falls back to HTTP/2 when the QUIC handshake fails
    /// or times out, and the client then uses HTTP/2 to that peer for a while
    /// ([`ClientSettings::quic_retry_after`]).
    pub transport: Transport,
}

/// Makes the TCP sockets tunnels are dialled from, for a client that must connect from
/// elsewhere than its own network namespace. Connections from different factories are never
/// pooled together.
pub trait SocketFactory: Send + Sync + fmt::Debug {
    /// A new, unconnected TCP socket of the family of `peer`.
    fn tcp_socket(
        &self,
        peer: SocketAddr,
    ) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<tokio::net::TcpSocket>> + Send + '_>>;

    /// Tells this factory's connections from another's in the pool (a pod's uid, say).
    fn pool_key(&self) -> &str;
}

/// An HBONE client with a connection pool. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// Counters of a [`Client`], as a snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Connections dialled since the client was made.
    pub connections_opened: u64,
    /// Connections currently in the pool.
    pub connections_pooled: u64,
    /// Tunnels opened.
    pub tunnels_opened: u64,
    /// HTTP/3 dials whose QUIC handshake failed or timed out (each then used HTTP/2).
    pub quic_handshake_failures: u64,
}

pub(crate) struct Inner {
    pub(crate) tls: TlsContext,
    pub(crate) settings: ClientSettings,
    pools: Mutex<HashMap<PoolKey, Arc<KeyPool>>>,
    pub(crate) connections_opened: AtomicU64,
    pub(crate) tunnels_opened: AtomicU64,
    #[cfg(feature = "h3")]
    pub(crate) quic: crate::h3::client::QuicState,
}

/// Connections are shared only between tunnels with the same source identity, the same
/// acceptable destination identities and the same destination socket address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    source: SpiffeId,
    expected: Vec<SpiffeId>,
    peer: SocketAddr,
    source_ip: Option<std::net::IpAddr>,
    sockets: Option<String>,
    transport: Transport,
}

pub(crate) struct KeyPool {
    /// Held while dialling, so concurrent first uses of a key open one connection.
    pub(crate) dial: tokio::sync::Mutex<()>,
    pub(crate) conns: Mutex<Vec<Arc<Conn>>>,
    config: Mutex<Option<Arc<rustls::ClientConfig>>>,
}

pub(crate) struct Conn {
    pub(crate) kind: ConnKind,
    pub(crate) info: Arc<TunnelInfo>,
    pub(crate) max_streams: usize,
    pub(crate) active: AtomicUsize,
    pub(crate) closed: AtomicBool,
    pub(crate) last_used: Mutex<Instant>,
}

/// The protocol handle of a pooled connection.
pub(crate) enum ConnKind {
    H2(SendRequest<Bytes>),
    #[cfg(feature = "h3")]
    H3(Arc<crate::h3::conn::H3Conn>),
}

/// Holds one stream slot of a pooled connection until the tunnel is dropped.
pub(crate) struct Slot(pub(crate) Arc<Conn>);

// === impl Dial ===

impl Dial {
    /// A dial of `authority` through the HBONE peer at `peer`, expecting one of `expected_ids`.
    pub fn new(
        source: Arc<CredentialCell>,
        peer: SocketAddr,
        expected_ids: Vec<SpiffeId>,
        authority: Authority,
    ) -> Self {
        Self {
            source,
            peer,
            expected_ids,
            authority,
            baggage: None,
            forwarded: None,
            traceparent: None,
            headers: HeaderMap::new(),
            source_ip: None,
            sockets: None,
            transport: Transport::Http2,
        }
    }

    pub(crate) fn request(&self) -> Result<Request<()>, HboneError> {
        let bad = |e: &dyn fmt::Display| HboneError::Request(e.to_string());
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .version(Version::HTTP_2)
            .uri(self.authority.to_string())
            .body(())
            .map_err(|e| bad(&e))?;
        self.headers(req.headers_mut())?;
        Ok(req)
    }

    /// The UDP target: CONNECT-UDP names an address, never a host to resolve.
    pub(crate) fn udp_target(&self) -> Result<SocketAddr, HboneError> {
        self.authority
            .ip()
            .map(|ip| SocketAddr::new(ip, self.authority.port()))
            .ok_or_else(|| {
                HboneError::Request(format!(
                    "a UDP flow needs an IP address as its target, not {}",
                    self.authority
                ))
            })
    }

    /// An HTTP/2 extended CONNECT for a UDP flow (RFC 8441, RFC 9298).
    pub(crate) fn request_udp(&self) -> Result<Request<()>, HboneError> {
        let bad = |e: &dyn fmt::Display| HboneError::Request(e.to_string());
        let path = crate::udp::codec::path(self.udp_target()?);
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .version(Version::HTTP_2)
            .uri(format!("https://{}{path}", self.peer))
            .extension(h2::ext::Protocol::from_static(crate::udp::codec::PROTOCOL))
            .body(())
            .map_err(|e| bad(&e))?;
        self.headers(req.headers_mut())?;
        req.headers_mut()
            .insert("capsule-protocol", HeaderValue::from_static("?1"));
        Ok(req)
    }

    /// The request headers every tunnel carries: baggage, forwarded, traceparent, extras.
    fn headers(&self, h: &mut HeaderMap) -> Result<(), HboneError> {
        let bad = |e: &dyn fmt::Display| HboneError::Request(e.to_string());
        h.extend(self.headers.clone());
        let mut set = |name: &'static str, value: String| -> Result<(), HboneError> {
            h.insert(name, HeaderValue::try_from(value).map_err(|e| bad(&e))?);
            Ok(())
        };
        if let Some(b) = self.baggage.as_ref().and_then(Baggage::encode) {
            set(names::BAGGAGE, b)?;
        }
        if let Some(f) = self.forwarded.as_ref().and_then(Forwarded::encode) {
            set(names::FORWARDED, f)?;
        }
        set(
            names::TRACEPARENT,
            self.traceparent
                .unwrap_or_else(TraceParent::random)
                .to_string(),
        )?;
        Ok(())
    }
}

// === impl Client ===

impl Client {
    /// A client using `tls` for its handshakes.
    pub fn new(tls: TlsContext, settings: ClientSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                tls,
                settings,
                pools: Mutex::new(HashMap::new()),
                connections_opened: AtomicU64::new(0),
                tunnels_opened: AtomicU64::new(0),
                #[cfg(feature = "h3")]
                quic: crate::h3::client::QuicState::default(),
            }),
        }
    }

    /// Opens a tunnel: reuses a pooled connection with a free stream slot or dials one, sends
    /// CONNECT, and waits for the peer's answer. A non-200 answer is
    /// [`HboneError::Rejected`] with the status.
    pub async fn connect(&self, dial: &Dial) -> Result<Tunnel, HboneError> {
        if dial.expected_ids.is_empty() {
            return Err(ambit_tls::TlsError::NoExpectedIdentity.into());
        }
        #[cfg(feature = "h3")]
        if dial.transport == Transport::Http3
            && let Some(result) = self.connect_h3(dial, false).await
        {
            return result.map(|(t, _)| t);
        }
        self.connect_h2(dial, false).await
    }

    /// Opens a UDP flow to `dial.authority` (an IP and port) through the peer: CONNECT-UDP
    /// (RFC 9298) on a pooled connection, with HTTP/3 datagrams when `dial.transport` is
    /// HTTP/3 and the peer enables them, DATAGRAM capsules on the stream otherwise. The same
    /// fallback to HTTP/2 applies as for [`connect`](Self::connect).
    pub async fn connect_udp(&self, dial: &Dial) -> Result<crate::UdpTunnel, HboneError> {
        if dial.expected_ids.is_empty() {
            return Err(ambit_tls::TlsError::NoExpectedIdentity.into());
        }
        #[cfg(feature = "h3")]
        if dial.transport == Transport::Http3
            && let Some(result) = self.connect_h3(dial, true).await
        {
            return result.map(|(t, d)| match d {
                Some(d) => crate::UdpTunnel::over_h3(t, d),
                None => crate::UdpTunnel::over_stream(t),
            });
        }
        Ok(crate::UdpTunnel::over_stream(
            self.connect_h2(dial, true).await?,
        ))
    }

    /// The pool for `dial` over `transport`.
    pub(crate) fn pool_for(&self, dial: &Dial, transport: Transport) -> Arc<KeyPool> {
        let mut expected = dial.expected_ids.clone();
        expected.sort();
        expected.dedup();
        let key = PoolKey {
            source: dial.source.id(),
            expected,
            peer: dial.peer,
            source_ip: dial.source_ip,
            sockets: dial.sockets.as_ref().map(|f| f.pool_key().to_owned()),
            transport,
        };
        self.inner.pool(&key)
    }

    #[cfg(feature = "h3")]
    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    async fn connect_h2(&self, dial: &Dial, udp: bool) -> Result<Tunnel, HboneError> {
        let pool = self.pool_for(dial, Transport::Http2);
        // One retry covers a pooled connection that died (GOAWAY, reset) since it was last
        // used: the request was never sent on it.
        let mut retried = false;
        loop {
            let slot = self.checkout(&pool, dial).await?;
            #[cfg_attr(not(feature = "h3"), allow(clippy::infallible_destructuring_match))]
            let send = match &slot.0.kind {
                ConnKind::H2(send) => send,
                #[cfg(feature = "h3")]
                ConnKind::H3(_) => {
                    return Err(HboneError::Request(
                        "HTTP/2 pool holds another transport".into(),
                    ));
                }
            };
            let request = if udp {
                dial.request_udp()?
            } else {
                dial.request()?
            };
            let ready = send.clone().ready().await;
            let mut send = match ready {
                Ok(s) => s,
                Err(e) if !retried => {
                    debug!(peer = %dial.peer, error = %e, "pooled HBONE connection unusable; redialling");
                    slot.0.closed.store(true, Ordering::Release);
                    retried = true;
                    continue;
                }
                Err(source) => {
                    return Err(HboneError::Http2 {
                        addr: dial.peer,
                        source,
                    });
                }
            };
            let (response, stream) = match send.send_request(request, false) {
                Ok(r) => r,
                Err(e) if !retried && e.is_go_away() => {
                    slot.0.closed.store(true, Ordering::Release);
                    retried = true;
                    continue;
                }
                Err(source) => {
                    return Err(HboneError::Http2 {
                        addr: dial.peer,
                        source,
                    });
                }
            };
            let response = response.await.map_err(|source| HboneError::Http2 {
                addr: dial.peer,
                source,
            })?;
            if response.status() != StatusCode::OK {
                return Err(HboneError::Rejected {
                    addr: dial.peer,
                    authority: dial.authority.to_string(),
                    status: response.status(),
                });
            }
            self.inner.tunnels_opened.fetch_add(1, Ordering::Relaxed);
            let info = slot.0.info.clone();
            return Ok(Tunnel::new(
                stream,
                response.into_body(),
                info,
                Some(Arc::new(slot)),
            ));
        }
    }

    /// The client's counters now.
    pub fn stats(&self) -> ClientStats {
        let pooled = self
            .inner
            .lock_pools()
            .values()
            .map(|p| lock(&p.conns).iter().filter(|c| !c.is_closed()).count() as u64)
            .sum();
        ClientStats {
            connections_opened: self.inner.connections_opened.load(Ordering::Relaxed),
            connections_pooled: pooled,
            tunnels_opened: self.inner.tunnels_opened.load(Ordering::Relaxed),
            #[cfg(feature = "h3")]
            quic_handshake_failures: self.inner.quic.failures(),
            #[cfg(not(feature = "h3"))]
            quic_handshake_failures: 0,
        }
    }

    async fn checkout(&self, pool: &Arc<KeyPool>, dial: &Dial) -> Result<Slot, HboneError> {
        if let Some(slot) = pool.reserve() {
            return Ok(slot);
        }
        let _dialling = pool.dial.lock().await;
        if let Some(slot) = pool.reserve() {
            return Ok(slot);
        }
        let config = pool.config(&self.inner.tls, dial)?;
        let conn = self.dial(config, dial).await?;
        Ok(self.pooled(pool, conn))
    }

    /// Counts a new connection and takes its first stream slot.
    pub(crate) fn pooled(&self, pool: &KeyPool, conn: Arc<Conn>) -> Slot {
        self.inner
            .connections_opened
            .fetch_add(1, Ordering::Relaxed);
        conn.active.fetch_add(1, Ordering::AcqRel);
        lock(&pool.conns).push(conn.clone());
        Slot(conn)
    }

    async fn dial(
        &self,
        config: Arc<rustls::ClientConfig>,
        dial: &Dial,
    ) -> Result<Arc<Conn>, HboneError> {
        let s = &self.inner.settings;
        let timeout = s.connect_timeout;
        let peer = dial.peer;
        let connect = async {
            let tcp = match &dial.sockets {
                Some(f) => match f.tcp_socket(peer).await {
                    Ok(socket) => socket.connect(peer).await,
                    Err(e) => Err(e),
                },
                None => connect_from(dial.source_ip, peer).await,
            }
            .map_err(|source| HboneError::Connect { addr: peer, source })?;
            let _ = tcp.set_nodelay(true);
            let local = tcp
                .local_addr()
                .map_err(|source| HboneError::Connect { addr: peer, source })?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(ambit_tls::server_name(), tcp)
                .await
                .map_err(|source| HboneError::Tls { addr: peer, source })?;
            let peer_id =
                ambit_tls::peer_identity(tls.get_ref().1).map_err(|e| HboneError::Tls {
                    addr: peer,
                    source: std::io::Error::other(e),
                })?;
            let (send, conn) = h2::client::Builder::new()
                .initial_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
                .max_frame_size(MAX_FRAME_SIZE)
                .enable_push(false)
                .max_header_list_size(s.max_header_list_size)
                .max_send_buffer_size(STREAM_WINDOW as usize)
                .initial_max_send_streams(s.max_streams_per_connection)
                .handshake::<_, Bytes>(tls)
                .await
                .map_err(|source| HboneError::Http2 { addr: peer, source })?;
            Ok::<_, HboneError>((
                send,
                conn,
                Arc::new(TunnelInfo {
                    peer_id,
                    peer_addr: peer,
                    local_addr: local,
                    transport: crate::Transport::Http2,
                }),
            ))
        };
        let (send, mut conn, info) =
            tokio::time::timeout(timeout, connect).await.map_err(|_| {
                HboneError::ConnectTimeout {
                    addr: peer,
                    after: timeout,
                }
            })??;
        let pooled = Arc::new(Conn {
            kind: ConnKind::H2(send),
            info,
            max_streams: s.max_streams_per_connection,
            active: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            last_used: Mutex::new(Instant::now()),
        });
        let keepalive = crate::keepalive(conn.ping_pong(), s.ping_interval, s.ping_timeout);
        let idle = s.idle_timeout;
        let watched = pooled.clone();
        let inner: Weak<Inner> = Arc::downgrade(&self.inner);
        let owner = inner.clone();
        tokio::spawn(async move {
            let idle_check = idle_release(&watched, idle, &owner);
            tokio::select! {
                r = &mut conn => {
                    if let Err(e) = r {
                        debug!(peer = %watched.info.peer_addr, error = %e, "HBONE connection failed");
                    }
                }
                _ = keepalive => debug!(peer = %watched.info.peer_addr, "HBONE peer stopped answering PINGs"),
                _ = idle_check => debug!(peer = %watched.info.peer_addr, "releasing idle HBONE connection"),
            }
            watched.closed.store(true, Ordering::Release);
            if let Some(inner) = inner.upgrade() {
                inner.forget_closed();
            }
        });
        Ok(pooled)
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("settings", &self.inner.settings)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

// === impl Inner ===

impl Inner {
    fn pool(&self, key: &PoolKey) -> Arc<KeyPool> {
        self.lock_pools()
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(KeyPool {
                    dial: tokio::sync::Mutex::new(()),
                    conns: Mutex::new(Vec::new()),
                    config: Mutex::new(None),
                })
            })
            .clone()
    }

    /// Drops closed connections, and keys left without connections or users.
    pub(crate) fn forget_closed(&self) {
        self.lock_pools().retain(|_, pool| {
            let mut conns = lock(&pool.conns);
            conns.retain(|c| !c.is_closed());
            !conns.is_empty() || Arc::strong_count(pool) > 1
        });
    }

    fn lock_pools(&self) -> MutexGuard<'_, HashMap<PoolKey, Arc<KeyPool>>> {
        lock(&self.pools)
    }
}

// === impl KeyPool ===

impl KeyPool {
    /// Takes a stream slot on an open connection with room, if any.
    pub(crate) fn reserve(&self) -> Option<Slot> {
        let mut conns = lock(&self.conns);
        conns.retain(|c| !c.is_closed());
        for c in conns.iter() {
            let limit = match &c.kind {
                ConnKind::H2(send) => c.max_streams.min(send.current_max_send_streams().max(1)),
                // QUIC's own stream credit makes an open wait; a GOAWAY ends new use.
                #[cfg(feature = "h3")]
                ConnKind::H3(h3) if h3.is_going_away() => 0,
                #[cfg(feature = "h3")]
                ConnKind::H3(_) => c.max_streams,
            };
            // Only this lock's holder increments, so load-then-add cannot overshoot.
            if c.active.load(Ordering::Acquire) < limit {
                c.active.fetch_add(1, Ordering::AcqRel);
                return Some(Slot(c.clone()));
            }
        }
        None
    }

    pub(crate) fn config(
        &self,
        tls: &TlsContext,
        dial: &Dial,
    ) -> Result<Arc<rustls::ClientConfig>, HboneError> {
        let mut cached = lock(&self.config);
        if let Some(c) = cached.as_ref() {
            return Ok(c.clone());
        }
        let c = tls.client_config(&dial.source, dial.expected_ids.iter().cloned())?;
        *cached = Some(c.clone());
        Ok(c)
    }
}

// === impl Conn ===

impl Conn {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn is_idle_for(&self, idle: Duration) -> bool {
        self.active.load(Ordering::Acquire) == 0 && lock(&self.last_used).elapsed() >= idle
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *lock(&self.0.last_used) = Instant::now();
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Completes when `conn` has been idle for `idle`, or is idle and its client is gone (nobody
/// can reuse it).
pub(crate) async fn idle_release(conn: &Conn, idle: Duration, owner: &Weak<Inner>) {
    let tick = (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        if conn.is_idle_for(idle) || (owner.strong_count() == 0 && conn.is_idle_for(Duration::ZERO))
        {
            return;
        }
    }
}

/// Connects to `peer` from `source_ip` when this host owns that address (several "nodes" on
/// one machine keep the workload's address visible to the peer); otherwise from the system's
/// choice.
pub async fn connect_from(
    source_ip: Option<std::net::IpAddr>,
    peer: SocketAddr,
) -> std::io::Result<TcpStream> {
    if let Some(ip) = source_ip.filter(|ip| ip.is_ipv4() == peer.is_ipv4() && !ip.is_unspecified())
    {
        let socket = if ip.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // Choose the source port at connect time, by the full 4-tuple: binding port 0 first
        // would pick one blind to the destination, which can collide (EADDRNOTAVAIL) under load.
        #[cfg(target_os = "linux")]
        let _ = nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::IpBindAddressNoPort,
            &true,
        );
        if socket.bind(SocketAddr::new(ip, 0)).is_ok() {
            match socket.connect(peer).await {
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::AddrNotAvailable | std::io::ErrorKind::AddrInUse
                    ) =>
                {
                    debug!(%ip, error = %e, "no source port free for the workload address; using the system's choice");
                }
                r => return r,
            }
        } else {
            debug!(%ip, "cannot connect from the source workload address; using the system's choice");
        }
    }
    TcpStream::connect(peer).await
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a few field updates that cannot panic midway.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
