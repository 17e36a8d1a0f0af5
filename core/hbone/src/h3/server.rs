//! The HBONE server's HTTP/3 side: QUIC on a UDP socket, one CONNECT per bidirectional
//! stream, handed to the same [`Handler`] as HTTP/2 tunnels.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use quinn::crypto::rustls::QuicServerConfig;
use tokio::sync::watch;
use tracing::debug;

use super::codec::{WireError, code, frame};
use super::conn::{self, H3Conn};
use super::qpack;
use super::stream::{H3Reader, H3Writer, StreamError};
use crate::server::{Drain, Handler, RequestLine, Responder, Shared, check_request, wait_until};
use crate::tunnel::TunnelInfo;
use crate::{ServerSettings, canonical};

/// Serves HBONE over HTTP/3 on `socket` until the server drains.
pub(crate) async fn serve_udp<H: Handler>(
    shared: Arc<Shared<H>>,
    socket: std::net::UdpSocket,
) -> io::Result<()> {
    let listen = socket.local_addr()?;
    let endpoint = conn::endpoint(socket, Some(refusing_config()?))?;
    let mut drain = shared.drain.subscribe();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => {
                    shared.stats.connections_accepted.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(serve_incoming(shared.clone(), incoming, listen));
                }
                None => return Ok(()),
            },
            () = wait_until(&mut drain, |d| *d != Drain::Running) => {
                // No new connections; the open ones drain on their own.
                endpoint.set_server_config(None);
                return Ok(());
            }
        }
    }
}

async fn serve_incoming<H: Handler>(
    shared: Arc<Shared<H>>,
    incoming: quinn::Incoming,
    listen: SocketAddr,
) {
    let peer = canonical(incoming.remote_address());
    let fail = |why: &dyn fmt::Display| {
        shared
            .stats
            .handshake_failures
            .fetch_add(1, Ordering::Relaxed);
        debug!(%peer, reason = %why, "HBONE/HTTP3 connection refused");
    };
    // The address the client sent to (a wildcard socket learns it per packet).
    let local = canonical(SocketAddr::new(
        incoming.local_ip().unwrap_or(listen.ip()),
        listen.port(),
    ));
    let Some(tls) = shared.tls.server_config(local) else {
        incoming.refuse();
        return fail(&format_args!(
            "no workload certificate for local address {local}"
        ));
    };
    let config = match server_config(tls, &shared.settings) {
        Ok(c) => c,
        Err(e) => {
            incoming.refuse();
            return fail(&e);
        }
    };
    let connecting = match incoming.accept_with(Arc::new(config)) {
        Ok(c) => c,
        Err(e) => return fail(&format_args!("QUIC accept: {e}")),
    };
    let timeout = shared.settings.handshake_timeout;
    let quic = match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return fail(&format_args!("QUIC handshake: {e}")),
        Err(_) => return fail(&format_args!("QUIC handshake not done within {timeout:?}")),
    };
    let info = match super::established(&quic, local) {
        Ok(info) => info,
        Err(e) => {
            quic.close(quinn::VarInt::from_u32(code::GENERAL_PROTOCOL_ERROR), b"");
            return fail(&e);
        }
    };
    let max_headers = u64::from(shared.settings.max_header_list_size);
    let h3 = match H3Conn::start(quic, max_headers, shared.settings.handshake_timeout).await {
        Ok(h3) => h3,
        Err(e) => return fail(&format_args!("HTTP/3 setup: {e}")),
    };
    shared.connections.send_modify(|n| *n += 1);
    serve_streams(&shared, &h3, Arc::new(info)).await;
    shared.connections.send_modify(|n| *n -= 1);
}

/// Accepts request streams until the client leaves or the server drains: on drain, GOAWAY,
/// then close once the open tunnels end (or at once when the drain deadline passes).
async fn serve_streams<H: Handler>(
    shared: &Arc<Shared<H>>,
    h3: &Arc<H3Conn>,
    info: Arc<TunnelInfo>,
) {
    let open = Arc::new(watch::channel(0usize).0);
    let mut drain = shared.drain.subscribe();
    let mut next_id = 0u64;
    let mut draining = false;
    let mut open_rx = open.subscribe();
    loop {
        tokio::select! {
            accepted = h3.quic.accept_bi() => match accepted {
                Ok((mut send, mut recv)) => {
                    let id = u64::from(send.id());
                    if draining && id >= next_id {
                        // Past our GOAWAY: refused unprocessed, so the client may retry it
                        // elsewhere (RFC 9114 §5.2).
                        let code = quinn::VarInt::from_u32(code::REQUEST_REJECTED);
                        let _ = send.reset(code);
                        let _ = recv.stop(code);
                        continue;
                    }
                    next_id = next_id.max(id + 4);
                    tokio::spawn(serve_request(shared.clone(), h3.clone(), send, recv, info.clone(), open.clone()));
                }
                Err(e) => {
                    debug!(peer = %info.peer_addr, error = %e, "HBONE/HTTP3 connection ended");
                    return;
                }
            },
            () = wait_until(&mut open_rx, |n| *n == 0), if draining => {
                h3.quic.close(quinn::VarInt::from_u32(code::NO_ERROR), b"");
                return;
            }
            changed = drain.changed() => {
                let state = *drain.borrow_and_update();
                if changed.is_err() || state == Drain::Closed {
                    h3.quic.close(quinn::VarInt::from_u32(code::NO_ERROR), b"");
                    return;
                }
                if state == Drain::Draining && !draining {
                    draining = true;
                    // Spawned: a peer that gives no credit must not hold up the drain.
                    let (h3, id) = (h3.clone(), next_id);
                    tokio::spawn(async move { h3.goaway(id).await });
                }
            }
        }
    }
}

/// Reads one request's HEADERS, checks it, and spawns the handler for it.
async fn serve_request<H: Handler>(
    shared: Arc<Shared<H>>,
    h3: Arc<H3Conn>,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    info: Arc<TunnelInfo>,
    open: Arc<watch::Sender<usize>>,
) {
    let mut writer = H3Writer::new(send);
    let mut reader = H3Reader::new(recv);
    let max = shared.settings.max_header_list_size as usize;
    let read = tokio::time::timeout(shared.settings.handshake_timeout, reader.read_headers(max));
    let block = match read.await {
        Ok(Ok(Some(b))) => b,
        Ok(Ok(None)) => return writer.reset(code::REQUEST_INCOMPLETE),
        Ok(Err(StreamError::Wire(e))) => return refuse(&h3.quic, &mut writer, &e),
        Ok(Err(StreamError::Read(_))) => return writer.reset(code::REQUEST_CANCELLED),
        Err(_) => return writer.reset(code::REQUEST_INCOMPLETE),
    };
    let fields = match qpack::decode(&block, max) {
        Ok(f) => f,
        Err(e) if e.code == code::MESSAGE_ERROR => {
            // Malformed fields: 400, as for a malformed CONNECT.
            shared.stats.count_malformed();
            debug!(peer = %info.peer_addr, reason = e.reason, "HBONE/HTTP3 request refused with 400");
            let _ = send_response(
                &mut writer,
                StatusCode::BAD_REQUEST,
                &HeaderMap::new(),
                true,
            );
            return;
        }
        Err(e) => return refuse(&h3.quic, &mut writer, &e),
    };
    let line = RequestLine {
        method: fields.method.as_deref().unwrap_or(""),
        scheme: fields.scheme.as_deref(),
        path: fields.path.as_deref(),
        protocol: fields.protocol.as_deref(),
        authority: fields.authority.as_deref(),
    };
    match check_request(&shared.stats, &line, fields.headers, &info) {
        Ok(request) => {
            let responder = Responder::h3(
                request.kind,
                (writer, reader),
                h3,
                info,
                shared.stats.clone(),
                open,
            );
            tokio::spawn(shared.handler.handle(request, responder));
        }
        Err(crate::server::Malformed) => {
            let _ = send_response(
                &mut writer,
                StatusCode::BAD_REQUEST,
                &HeaderMap::new(),
                true,
            );
        }
    }
}

/// A protocol error on a request stream. QPACK failures are connection errors (RFC 9204
/// §2.2); the rest reset the stream.
fn refuse(quic: &quinn::Connection, writer: &mut H3Writer, e: &WireError) {
    if e.code == code::QPACK_DECOMPRESSION_FAILED {
        return conn::close(quic, e);
    }
    debug!(error = %e, "HBONE/HTTP3 request stream refused");
    writer.reset(e.code);
}

/// Writes a response HEADERS frame now, without waiting: a new stream always has credit for
/// it. `end` also sends FIN (a refusal carries nothing after its status).
pub(crate) fn send_response(
    writer: &mut H3Writer,
    status: StatusCode,
    headers: &HeaderMap,
    end: bool,
) -> io::Result<()> {
    let mut block = BytesMut::with_capacity(64);
    qpack::encode_response(status, headers, &mut block);
    writer.queue_frame(frame::HEADERS, &block);
    let mut cx = Context::from_waker(Waker::noop());
    match writer.poll_drain(&mut cx) {
        Poll::Ready(r) => r?,
        // Left pending: the first write or shutdown sends it.
        Poll::Pending => {}
    }
    if end {
        match pin!(std::future::poll_fn(|cx| writer.poll_shutdown(cx))).poll(&mut cx) {
            Poll::Ready(r) => r?,
            Poll::Pending => {}
        }
    }
    Ok(())
}

/// The QUIC server config for one connection: the workload's TLS config (ALPN h3 among its
/// protocols) and HBONE's transport settings.
fn server_config(
    tls: Arc<rustls::ServerConfig>,
    settings: &ServerSettings,
) -> io::Result<quinn::ServerConfig> {
    let crypto = QuicServerConfig::try_from(tls).map_err(io::Error::other)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(conn::transport(
        settings.max_concurrent_streams,
        settings.ping_timeout,
        settings.ping_interval,
        true,
    ));
    config.migration(false);
    Ok(config)
}

/// The endpoint's default config, used for nothing: every connection is accepted with the
/// config chosen for its local address, and one with no certificate is refused.
fn refusing_config() -> io::Result<quinn::ServerConfig> {
    #[derive(Debug)]
    struct NoCert;
    impl rustls::server::ResolvesServerCert for NoCert {
        fn resolve(
            &self,
            _hello: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            None
        }
    }
    let provider = Arc::new(ambit_tls::Provider::default().crypto_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(NoCert));
    let crypto = QuicServerConfig::try_from(Arc::new(tls)).map_err(io::Error::other)?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
}

impl H3Writer {
    /// Queues a whole frame to go before anything written later.
    pub(crate) fn queue_frame(&mut self, ty: u64, payload: &[u8]) {
        self.set_pending(super::codec::frame(ty, payload), Bytes::new());
    }
}
