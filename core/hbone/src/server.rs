//! The HBONE server: TLS termination, HTTP/2, one CONNECT per stream handed to a handler.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ambit_identity::SpiffeId;
use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::HboneError;
use crate::authority::Authority;
use crate::headers::{Baggage, Forwarded, TraceParent, names};
use crate::settings::{CONNECTION_WINDOW, MAX_FRAME_SIZE, STREAM_WINDOW, ServerSettings};
use crate::tunnel::{Tunnel, TunnelInfo};

/// Picks the TLS config (the certificate to present) by the local address a connection came
/// in on: a node proxy serves each local workload's own certificate on `<workload-ip>:15008`.
pub trait ConfigSelector: Send + Sync + 'static {
    /// The config for a connection accepted on `local`, or `None` to refuse it.
    fn server_config(&self, local: SocketAddr) -> Option<Arc<rustls::ServerConfig>>;
}

/// One config for every address.
impl ConfigSelector for Arc<rustls::ServerConfig> {
    fn server_config(&self, _local: SocketAddr) -> Option<Arc<rustls::ServerConfig>> {
        Some(self.clone())
    }
}

/// A config per local IP address.
impl ConfigSelector for HashMap<IpAddr, Arc<rustls::ServerConfig>> {
    fn server_config(&self, local: SocketAddr) -> Option<Arc<rustls::ServerConfig>> {
        self.get(&local.ip()).cloned()
    }
}

/// What a CONNECT asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectKind {
    /// A TCP tunnel: classic CONNECT, the target in `:authority`.
    #[default]
    Tcp,
    /// A UDP flow: CONNECT-UDP (RFC 9298), the target in the path; answer it with
    /// [`Responder::accept_udp`].
    Udp,
}

/// A CONNECT request that passed protocol validation, with its parsed headers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectRequest {
    /// The requested target (for a UDP flow, the one its path names).
    pub authority: Authority,
    /// A TCP tunnel or a UDP flow.
    pub kind: ConnectKind,
    /// The verified SPIFFE id of the client.
    pub peer_id: SpiffeId,
    /// The client's address on the HBONE connection.
    pub peer_addr: SocketAddr,
    /// The address the client connected to.
    pub local_addr: SocketAddr,
    /// The source workload description (`baggage`), empty when absent.
    pub baggage: Baggage,
    /// The `forwarded` header, empty when absent.
    pub forwarded: Forwarded,
    /// The connection's trace context: the client's if well-formed, else a fresh one.
    pub traceparent: TraceParent,
    /// Whether `traceparent` came from the client (else it was made here, and names no span
    /// a tracing backend will ever see).
    pub traceparent_from_peer: bool,
    /// All request headers, as received.
    pub headers: HeaderMap,
    /// The HTTP version the request came over.
    pub transport: crate::Transport,
}

/// The answer to one CONNECT: accept it (status 200, the stream becomes a [`Tunnel`]) or
/// reject it with a status. Dropped without an answer, it answers 503.
pub struct Responder {
    answer: Option<Answer>,
    kind: ConnectKind,
    info: Arc<TunnelInfo>,
    stats: Arc<Stats>,
    /// The HTTP/3 connection's open-stream count, for a graceful drain.
    #[cfg(feature = "h3")]
    conn_streams: Option<Arc<watch::Sender<usize>>>,
}

/// The unanswered stream, by transport.
enum Answer {
    H2 {
        respond: SendResponse<Bytes>,
        recv: RecvStream,
    },
    #[cfg(feature = "h3")]
    H3 {
        writer: crate::h3::stream::H3Writer,
        reader: crate::h3::stream::H3Reader,
        conn: Arc<crate::h3::conn::H3Conn>,
    },
}

/// Decides what to do with each CONNECT. The future it returns is the stream's task itself
/// (spawned as it is, so its size is the memory a tunnel costs); it owns what it needs, so it
/// borrows nothing from the handler.
pub trait Handler: Send + Sync + 'static {
    /// Handles one request: answer through `responder`, then (if accepted) use the tunnel.
    fn handle(
        &self,
        req: ConnectRequest,
        responder: Responder,
    ) -> impl Future<Output = ()> + Send + 'static;
}

impl<F, Fut> Handler for F
where
    F: Fn(ConnectRequest, Responder) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn handle(
        &self,
        req: ConnectRequest,
        responder: Responder,
    ) -> impl Future<Output = ()> + Send + 'static {
        self(req, responder)
    }
}

/// Counters of a [`Server`], as a snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// TCP connections accepted.
    pub connections_accepted: u64,
    /// Connections currently open (past TLS and HTTP/2 handshakes).
    pub connections_active: u64,
    /// Connections that failed the TLS or HTTP/2 handshake (or had no certificate to serve).
    pub handshake_failures: u64,
    /// CONNECT streams received.
    pub streams_accepted: u64,
    /// Streams currently open.
    pub streams_active: u64,
    /// Streams answered with something other than 200.
    pub streams_rejected: u64,
}

/// An HBONE server. Cheap to clone; every clone serves with the same handler and counters.
pub struct Server<H> {
    shared: Arc<Shared<H>>,
}

pub(crate) struct Shared<H> {
    pub(crate) tls: Box<dyn ConfigSelector>,
    pub(crate) handler: H,
    pub(crate) settings: ServerSettings,
    pub(crate) stats: Arc<Stats>,
    pub(crate) drain: watch::Sender<Drain>,
    pub(crate) connections: watch::Sender<usize>,
}

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) handshake_failures: AtomicU64,
    streams_accepted: AtomicU64,
    streams_active: AtomicU64,
    streams_rejected: AtomicU64,
}

impl Stats {
    /// A request refused before it could be parsed as one (HTTP/3 field errors).
    #[cfg(feature = "h3")]
    pub(crate) fn count_malformed(&self) {
        self.streams_accepted.fetch_add(1, Ordering::Relaxed);
        self.streams_rejected.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drain {
    Running,
    Draining,
    Closed,
}

// === impl Server ===

impl<H: Handler> Server<H> {
    /// A server presenting certificates chosen by `tls` and answering with `handler`.
    pub fn new(tls: impl ConfigSelector, handler: H, settings: ServerSettings) -> Self {
        Self {
            shared: Arc::new(Shared {
                tls: Box::new(tls),
                handler,
                settings,
                stats: Arc::default(),
                drain: watch::channel(Drain::Running).0,
                connections: watch::channel(0).0,
            }),
        }
    }

    /// Accepts connections on `listener` until [`drain`](Self::drain) is called. Several
    /// listeners can be served at once by calling this once per listener.
    pub async fn serve(&self, listener: TcpListener) -> io::Result<()> {
        let mut drain = self.shared.drain.subscribe();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        self.shared.stats.connections_accepted.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(serve_connection(self.shared.clone(), tcp, peer));
                    }
                    Err(e) => {
                        // Out of file descriptors and similar: back off briefly, keep serving.
                        warn!(error = %e, "HBONE accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                () = wait_until(&mut drain, |d| *d != Drain::Running) => return Ok(()),
            }
        }
    }

    /// Accepts HBONE over HTTP/3 (QUIC) on `socket` until [`drain`](Self::drain) is called:
    /// the same handler, certificates and counters as the TCP listeners. A node proxy binds
    /// UDP 15008 beside TCP 15008.
    #[cfg(feature = "h3")]
    pub async fn serve_udp(&self, socket: std::net::UdpSocket) -> io::Result<()> {
        crate::h3::server::serve_udp(self.shared.clone(), socket).await
    }

    /// Stops accepting, sends GOAWAY on every connection, lets open streams finish for up to
    /// `deadline`, then closes whatever remains.
    pub async fn drain(&self, deadline: Duration) {
        self.shared.drain.send_replace(Drain::Draining);
        let mut conns = self.shared.connections.subscribe();
        if tokio::time::timeout(deadline, wait_until(&mut conns, |n| *n == 0))
            .await
            .is_err()
        {
            self.shared.drain.send_replace(Drain::Closed);
            wait_until(&mut conns, |n| *n == 0).await;
        }
    }

    /// The server's counters now.
    pub fn stats(&self) -> ServerStats {
        let s = &self.shared.stats;
        ServerStats {
            connections_accepted: s.connections_accepted.load(Ordering::Relaxed),
            connections_active: *self.shared.connections.borrow() as u64,
            handshake_failures: s.handshake_failures.load(Ordering::Relaxed),
            streams_accepted: s.streams_accepted.load(Ordering::Relaxed),
            streams_active: s.streams_active.load(Ordering::Relaxed),
            streams_rejected: s.streams_rejected.load(Ordering::Relaxed),
        }
    }
}

#[cfg(fuzzing)]
impl<H: Handler> Server<H> {
    /// The post-TLS half of a connection, for `fuzz_logic`.
    pub(crate) async fn serve_established<IO>(&self, io: IO, info: TunnelInfo) -> Result<(), String>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        serve_h2(&self.shared, io, info).await
    }
}

impl<H> Clone for Server<H> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<H> fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

/// `addr` with an IPv4-mapped IPv6 address written as the IPv4 address it is.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

async fn serve_connection<H: Handler>(shared: Arc<Shared<H>>, tcp: TcpStream, peer: SocketAddr) {
    // A dual-stack listener (`[::]`) reports IPv4 peers as `::ffff:a.b.c.d`: always the plain
    // IPv4 form here, as addresses are looked up and compared as the mesh knows them.
    let peer = canonical(peer);
    let fail = |why: &dyn fmt::Display| {
        shared
            .stats
            .handshake_failures
            .fetch_add(1, Ordering::Relaxed);
        debug!(%peer, reason = %why, "HBONE connection refused");
    };
    let _ = tcp.set_nodelay(true);
    let local = match tcp.local_addr() {
        Ok(a) => canonical(a),
        Err(e) => return fail(&e),
    };
    let Some(config) = shared.tls.server_config(local) else {
        return fail(&format_args!(
            "no workload certificate for local address {local}"
        ));
    };
    let timeout = shared.settings.handshake_timeout;
    let tls =
        match tokio::time::timeout(timeout, tokio_rustls::TlsAcceptor::from(config).accept(tcp))
            .await
        {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return fail(&format_args!("TLS handshake: {e}")),
            Err(_) => return fail(&format_args!("TLS handshake not done within {timeout:?}")),
        };
    let (_, conn_state) = tls.get_ref();
    if conn_state.alpn_protocol() != Some(ambit_tls::ALPN_H2) {
        return fail(&"client did not negotiate ALPN h2");
    }
    let peer_id = match ambit_tls::peer_identity(conn_state) {
        Ok(id) => id,
        Err(e) => return fail(&e),
    };
    let info = TunnelInfo {
        peer_id,
        peer_addr: peer,
        local_addr: local,
        transport: crate::Transport::Http2,
    };
    if let Err(why) = serve_h2(&shared, tls, info).await {
        fail(&why);
    }
}

/// HTTP/2 on an established, authenticated connection: the handshake, then one task per
/// CONNECT stream until the client leaves, stops answering PINGs, or the server drains. Fails
/// only when the HTTP/2 handshake does.
async fn serve_h2<H, IO>(shared: &Arc<Shared<H>>, io: IO, info: TunnelInfo) -> Result<(), String>
where
    H: Handler,
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let s = &shared.settings;
    let timeout = s.handshake_timeout;
    let handshake = h2::server::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_concurrent_streams(s.max_concurrent_streams)
        .max_header_list_size(s.max_header_list_size)
        .max_send_buffer_size(s.max_send_buffer_size)
        .enable_connect_protocol()
        .handshake::<_, Bytes>(io);
    let mut conn = match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(format!("HTTP/2 handshake: {e}")),
        Err(_) => return Err(format!("HTTP/2 preface not received within {timeout:?}")),
    };
    let peer = info.peer_addr;
    // One for the connection: each of its tunnels shares it.
    let info = Arc::new(info);
    shared.connections.send_modify(|n| *n += 1);
    let keepalive = crate::keepalive(conn.ping_pong(), s.ping_interval, s.ping_timeout);
    tokio::pin!(keepalive);
    let mut drain = shared.drain.subscribe();
    let mut draining = false;
    loop {
        tokio::select! {
            accepted = conn.accept() => match accepted {
                None => break,
                Some(Ok((req, respond))) => {
                    start_stream(shared, req, respond, info.clone());
                }
                Some(Err(e)) => {
                    debug!(%peer, error = %e, "HBONE connection ended with an error");
                    break;
                }
            },
            _ = &mut keepalive => {
                debug!(%peer, "HBONE peer stopped answering PINGs; closing");
                conn.abrupt_shutdown(Reason::NO_ERROR);
                break;
            }
            changed = drain.changed() => {
                let state = *drain.borrow_and_update();
                if changed.is_err() || state == Drain::Closed {
                    conn.abrupt_shutdown(Reason::NO_ERROR);
                    break;
                }
                if state == Drain::Draining && !draining {
                    draining = true;
                    conn.graceful_shutdown();
                }
            }
        }
    }
    drop(conn);
    shared.connections.send_modify(|n| *n -= 1);
    Ok(())
}

/// Checks one CONNECT and spawns the handler's future for it (answering 400 here when the
/// request is malformed). Nothing else wraps the handler's future: a future moved into another
/// is stored in both.
fn start_stream<H: Handler>(
    shared: &Arc<Shared<H>>,
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    info: Arc<TunnelInfo>,
) {
    let (parts, recv) = req.into_parts();
    let line = RequestLine {
        method: parts.method.as_str(),
        scheme: parts.uri.scheme_str(),
        path: parts.uri.path_and_query().map(|p| p.as_str()),
        protocol: parts
            .extensions
            .get::<h2::ext::Protocol>()
            .map(|p| p.as_str()),
        authority: parts.uri.authority().map(|a| a.as_str()),
    };
    match check_request(&shared.stats, &line, parts.headers, &info) {
        Ok(request) => {
            let responder = Responder {
                kind: request.kind,
                answer: Some(Answer::H2 { respond, recv }),
                info,
                stats: shared.stats.clone(),
                #[cfg(feature = "h3")]
                conn_streams: None,
            };
            tokio::spawn(shared.handler.handle(request, responder));
        }
        Err(Malformed) => send_status(&mut respond, StatusCode::BAD_REQUEST),
    }
}

/// A request [`check_request`] refused: answer 400.
pub(crate) struct Malformed;

/// A request's pseudo-header fields, as either HTTP version delivers them.
pub(crate) struct RequestLine<'a> {
    pub(crate) method: &'a str,
    pub(crate) scheme: Option<&'a str>,
    pub(crate) path: Option<&'a str>,
    pub(crate) protocol: Option<&'a str>,
    pub(crate) authority: Option<&'a str>,
}

/// Validates a CONNECT and parses its headers, counting it; `Err` means answer 400 (already
/// counted and logged). On `Ok` the stream counts as active until its [`Responder`] or tunnel
/// is dropped.
pub(crate) fn check_request(
    stats: &Arc<Stats>,
    line: &RequestLine<'_>,
    headers: HeaderMap,
    info: &Arc<TunnelInfo>,
) -> Result<ConnectRequest, Malformed> {
    stats.streams_accepted.fetch_add(1, Ordering::Relaxed);
    let bad = |why: &str| {
        stats.streams_rejected.fetch_add(1, Ordering::Relaxed);
        debug!(peer = %info.peer_addr, reason = why, "HBONE request refused with 400");
        Malformed
    };
    if line.method != Method::CONNECT.as_str() {
        return Err(bad("method is not CONNECT"));
    }
    let (kind, authority) = match line.protocol {
        None => {
            // Classic CONNECT carries :authority only; :scheme or :path make it malformed.
            if line.scheme.is_some() || line.path.is_some() {
                return Err(bad("CONNECT with :scheme or :path"));
            }
            let Some(a) = line.authority.and_then(|a| a.parse::<Authority>().ok()) else {
                return Err(bad("missing or invalid :authority"));
            };
            (ConnectKind::Tcp, a)
        }
        Some(crate::udp::codec::PROTOCOL) => {
            if line.scheme != Some("https") || line.authority.is_none() {
                return Err(bad("CONNECT-UDP without :scheme https and :authority"));
            }
            let Some(target) = line.path.and_then(crate::udp::codec::parse_path) else {
                return Err(bad(
                    "CONNECT-UDP path is not /.well-known/masque/udp/{ip}/{port}/",
                ));
            };
            (ConnectKind::Udp, Authority::from(target))
        }
        Some(_) => return Err(bad("unsupported :protocol")),
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let sent_trace: Option<TraceParent> = header(names::TRACEPARENT).and_then(|v| v.parse().ok());
    let request = ConnectRequest {
        authority,
        kind,
        peer_id: info.peer_id.clone(),
        peer_addr: info.peer_addr,
        local_addr: info.local_addr,
        baggage: header(names::BAGGAGE)
            .map(Baggage::parse)
            .unwrap_or_default(),
        forwarded: header(names::FORWARDED)
            .map(Forwarded::parse)
            .unwrap_or_default(),
        traceparent: sent_trace.unwrap_or_else(TraceParent::random),
        traceparent_from_peer: sent_trace.is_some(),
        headers,
        transport: info.transport,
    };
    stats.streams_active.fetch_add(1, Ordering::Relaxed);
    Ok(request)
}

/// Waits until the watched value satisfies `f` (or the sender is gone). Drops the borrow
/// before returning so the future stays `Send`.
pub(crate) async fn wait_until<T>(rx: &mut watch::Receiver<T>, f: impl FnMut(&T) -> bool) {
    let _ = rx.wait_for(f).await.map(|_| ());
}

fn send_status(respond: &mut SendResponse<Bytes>, status: StatusCode) {
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    // Fails only if the client already reset the stream; nothing left to tell it.
    let _ = respond.send_response(resp, true);
}

// === impl Responder ===

impl Responder {
    #[cfg(feature = "h3")]
    pub(crate) fn h3(
        kind: ConnectKind,
        (writer, reader): (crate::h3::stream::H3Writer, crate::h3::stream::H3Reader),
        conn: Arc<crate::h3::conn::H3Conn>,
        info: Arc<TunnelInfo>,
        stats: Arc<Stats>,
        conn_streams: Arc<watch::Sender<usize>>,
    ) -> Self {
        conn_streams.send_modify(|n| *n += 1);
        Self {
            kind,
            answer: Some(Answer::H3 {
                writer,
                reader,
                conn,
            }),
            info,
            stats,
            conn_streams: Some(conn_streams),
        }
    }

    /// Answers 200 with `headers` (e.g. a response `baggage`); the stream becomes a tunnel.
    /// A UDP request is not answered here (see [`accept_udp`](Self::accept_udp)): it fails,
    /// and the request is answered 503 when the responder is dropped.
    pub fn accept(self, headers: HeaderMap) -> Result<Tunnel, HboneError> {
        if self.kind != ConnectKind::Tcp {
            return Err(HboneError::Request(
                "a CONNECT-UDP request: answer it with accept_udp".into(),
            ));
        }
        self.accept_stream(headers).map(|(t, _)| t)
    }

    /// Answers a CONNECT-UDP request 200: the stream becomes a UDP flow.
    pub fn accept_udp(self, mut headers: HeaderMap) -> Result<crate::UdpTunnel, HboneError> {
        if self.kind != ConnectKind::Udp {
            return Err(HboneError::Request(
                "a TCP CONNECT: answer it with accept".into(),
            ));
        }
        headers.insert("capsule-protocol", http::HeaderValue::from_static("?1"));
        let (tunnel, datagrams) = self.accept_stream(headers)?;
        #[cfg(feature = "h3")]
        if let Some(d) = datagrams {
            return Ok(crate::UdpTunnel::over_h3(tunnel, d));
        }
        let _ = datagrams;
        Ok(crate::UdpTunnel::over_stream(tunnel))
    }

    fn accept_stream(
        mut self,
        headers: HeaderMap,
    ) -> Result<(Tunnel, Option<Datagrams>), HboneError> {
        let Some(answer) = self.answer.take() else {
            return Err(HboneError::Request("responder already used".into()));
        };
        // The guard owns the stream's place in `streams_active` from here on, also when the
        // client has already reset the stream and the answer fails.
        let guard = Arc::new(ActiveStream {
            stats: self.stats.clone(),
            #[cfg(feature = "h3")]
            conn_streams: self.conn_streams.take(),
        });
        match answer {
            Answer::H2 { mut respond, recv } => {
                let mut resp = Response::new(());
                *resp.headers_mut() = headers;
                let send =
                    respond
                        .send_response(resp, false)
                        .map_err(|source| HboneError::Http2 {
                            addr: self.info.peer_addr,
                            source,
                        })?;
                Ok((
                    Tunnel::new(send, recv, self.info.clone(), Some(guard)),
                    None,
                ))
            }
            #[cfg(feature = "h3")]
            Answer::H3 {
                mut writer,
                reader,
                conn,
            } => {
                crate::h3::server::send_response(&mut writer, StatusCode::OK, &headers, false)
                    .map_err(|e| HboneError::Http3 {
                        addr: self.info.peer_addr,
                        reason: e.to_string(),
                    })?;
                let datagrams = match self.kind {
                    ConnectKind::Udp => Some(conn.datagram_flow(writer.stream_id())),
                    ConnectKind::Tcp => None,
                };
                Ok((
                    Tunnel::from_h3(reader, writer, self.info.clone(), Some(guard)),
                    datagrams,
                ))
            }
        }
    }

    /// Refuses the tunnel with `status` (400 bad request, 401 denied, 503 unreachable...).
    pub fn reject(mut self, status: StatusCode) {
        if let Some(answer) = self.answer.take() {
            self.finish(answer, status);
        }
    }

    /// The ends of the tunnel this would become.
    pub fn info(&self) -> &TunnelInfo {
        &self.info
    }

    fn finish(&mut self, answer: Answer, status: StatusCode) {
        self.stats.streams_rejected.fetch_add(1, Ordering::Relaxed);
        // Not accepted: this stream is over.
        self.stats.streams_active.fetch_sub(1, Ordering::Relaxed);
        match answer {
            Answer::H2 { mut respond, .. } => send_status(&mut respond, status),
            #[cfg(feature = "h3")]
            Answer::H3 { mut writer, .. } => {
                // Fails only when the client already gave up on the stream.
                let _ =
                    crate::h3::server::send_response(&mut writer, status, &HeaderMap::new(), true);
            }
        }
        #[cfg(feature = "h3")]
        if let Some(n) = self.conn_streams.take() {
            n.send_modify(|n| *n -= 1);
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(answer) = self.answer.take() {
            self.finish(answer, StatusCode::SERVICE_UNAVAILABLE);
        }
    }
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("info", &self.info)
            .field("answered", &self.answer.is_none())
            .finish()
    }
}

/// A UDP flow's HTTP/3 datagram halves.
#[cfg(feature = "h3")]
type Datagrams = (crate::h3::datagram::Outbound, crate::h3::datagram::Inbound);
#[cfg(not(feature = "h3"))]
type Datagrams = std::convert::Infallible;

/// Counts an accepted stream as active until its tunnel is dropped.
struct ActiveStream {
    stats: Arc<Stats>,
    #[cfg(feature = "h3")]
    conn_streams: Option<Arc<watch::Sender<usize>>>,
}

impl Drop for ActiveStream {
    fn drop(&mut self) {
        self.stats.streams_active.fetch_sub(1, Ordering::Relaxed);
        #[cfg(feature = "h3")]
        if let Some(n) = &self.conn_streams {
            n.send_modify(|n| *n -= 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::*;

    /// A client that resets its CONNECT before the handler answers: `accept` fails, and the
    /// stream no longer counts as active (it used to stay counted forever). Found by the
    /// `hbone_server` fuzz target.
    #[tokio::test]
    async fn accept_after_client_reset_releases_the_stream() {
        let (done_tx, mut done) = mpsc::unbounded_channel();
        let handler = move |_req: ConnectRequest, mut responder: Responder| {
            let done_tx = done_tx.clone();
            async move {
                let Some(Answer::H2 { respond, .. }) = responder.answer.as_mut() else {
                    panic!("an unanswered HTTP/2 stream");
                };
                std::future::poll_fn(|cx| respond.poll_reset(cx))
                    .await
                    .expect("reset");
                let _ = done_tx.send(responder.accept(HeaderMap::new()).is_err());
            }
        };
        let tls: HashMap<IpAddr, Arc<rustls::ServerConfig>> = HashMap::new();
        let server = Server::new(tls, handler, ServerSettings::default());
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let info = TunnelInfo {
            peer_id: SpiffeId::parse("spiffe://cluster.local/ns/a/sa/client").expect("id"),
            peer_addr: ([10, 0, 0, 1], 40000).into(),
            local_addr: ([10, 0, 0, 2], 15008).into(),
            transport: crate::Transport::Http2,
        };
        let shared = server.shared.clone();
        tokio::spawn(async move { serve_h2(&shared, server_io, info).await });

        let (mut send, conn) = h2::client::handshake(client_io).await.expect("h2");
        tokio::spawn(conn);
        let req = Request::builder()
            .method(Method::CONNECT)
            .uri("10.0.0.2:8080")
            .body(())
            .expect("request");
        let (_response, mut stream) = send.send_request(req, false).expect("send");
        stream.send_reset(Reason::CANCEL);

        let failed = tokio::time::timeout(Duration::from_secs(5), done.recv())
            .await
            .expect("handler ran");
        assert_eq!(failed, Some(true), "accept after a reset fails");
        let stats = server.stats();
        assert_eq!((stats.streams_accepted, stats.streams_active), (1, 0));
    }
}
