//! HTTP/3 connection setup shared by client and server: our control stream with SETTINGS,
//! and a task that reads the peer's unidirectional streams (control, QPACK, anything else).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use quinn::{Connection, RecvStream, SendStream, VarInt};
use tokio::sync::watch;
use tracing::debug;

use super::codec::{self, PeerSettings, WireError, code, frame, stream_type};

/// Largest control-stream frame we buffer.
const MAX_CONTROL_FRAME: usize = 16 * 1024;

/// What the peer's control stream has told us so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PeerState {
    pub(crate) settings: Option<PeerSettings>,
    /// The GOAWAY id: the peer will not serve requests at or above it.
    pub(crate) goaway: Option<u64>,
}

/// HTTP/3 running on a QUIC connection.
pub(crate) struct H3Conn {
    pub(crate) quic: Connection,
    pub(crate) peer: watch::Receiver<PeerState>,
    /// Our control stream: open for the connection's life (closing it is an error).
    control: tokio::sync::Mutex<SendStream>,
    /// Where CONNECT-UDP flows' datagrams go.
    pub(crate) datagrams: super::datagram::Router,
}

impl H3Conn {
    /// Opens our control stream with SETTINGS and starts reading the peer's streams.
    /// Fails when the peer gives no stream or credit for our control stream within
    /// `timeout`.
    pub(crate) async fn start(
        quic: Connection,
        max_field_section_size: u64,
        timeout: Duration,
    ) -> Result<Arc<Self>, String> {
        let mut first = BytesMut::with_capacity(32);
        codec::put_varint(&mut first, stream_type::CONTROL);
        first.extend_from_slice(&codec::settings_frame(max_field_section_size, true));
        let open = async {
            let mut control = quic.open_uni().await.map_err(|e| e.to_string())?;
            control
                .write_chunk(first.freeze())
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(control)
        };
        let control = match tokio::time::timeout(timeout, open).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(format!("opening the control stream: {e}")),
            Err(_) => {
                quic.close(VarInt::from_u32(code::GENERAL_PROTOCOL_ERROR), b"");
                return Err(format!("no control stream within {timeout:?}"));
            }
        };
        let (tx, rx) = watch::channel(PeerState::default());
        tokio::spawn(accept_uni(quic.clone(), tx));
        let datagrams = super::datagram::Router::default();
        datagrams.start(quic.clone());
        Ok(Arc::new(Self {
            quic,
            peer: rx,
            control: tokio::sync::Mutex::new(control),
            datagrams,
        }))
    }

    /// The datagram halves of a CONNECT-UDP flow on `stream_id`: received datagrams are
    /// routed to it at once; it sends datagrams once the peer's SETTINGS enable them, and
    /// capsules on its stream until then.
    pub(crate) fn datagram_flow(
        &self,
        stream_id: u64,
    ) -> (super::datagram::Outbound, super::datagram::Inbound) {
        self.datagrams
            .flow(&self.quic, self.peer.clone(), stream_id)
    }

    /// Sends GOAWAY with `id` on our control stream (a server's next unaccepted stream id).
    pub(crate) async fn goaway(&self, id: u64) {
        let mut p = BytesMut::with_capacity(8);
        codec::put_varint(&mut p, id);
        let f = codec::frame(frame::GOAWAY, &p);
        let _ = self.control.lock().await.write_chunk(f).await;
    }

    /// Whether the peer said it serves no new requests.
    pub(crate) fn is_going_away(&self) -> bool {
        self.peer.borrow().goaway.is_some()
    }
}

/// Closes `quic` with an HTTP/3 error.
pub(crate) fn close(quic: &Connection, e: &WireError) {
    debug!(error = %e, "closing HTTP/3 connection");
    quic.close(VarInt::from_u32(e.code), e.reason.as_bytes());
}

/// Accepts the peer's unidirectional streams for the connection's life. QUIC's stream limit
/// (a handful, set in the transport config) bounds how many run at once.
async fn accept_uni(quic: Connection, state: watch::Sender<PeerState>) {
    let state = Arc::new(state);
    let seen = Arc::new(std::sync::Mutex::new([false; 3]));
    while let Ok(recv) = quic.accept_uni().await {
        let (quic, state, seen) = (quic.clone(), state.clone(), seen.clone());
        tokio::spawn(async move {
            if let Err(e) = serve_uni(recv, &quic, &state, &seen).await {
                close(&quic, &e);
            }
        });
    }
}

async fn serve_uni(
    recv: RecvStream,
    quic: &Connection,
    state: &watch::Sender<PeerState>,
    seen: &std::sync::Mutex<[bool; 3]>,
) -> Result<(), WireError> {
    let mut s = Buffered::new(recv);
    let Some(ty) = s.varint().await else {
        return Ok(());
    };
    let critical = match ty {
        stream_type::CONTROL => 0,
        stream_type::QPACK_ENCODER => 1,
        stream_type::QPACK_DECODER => 2,
        _ => {
            // Push streams (we never allowed one) and unknown types: not read (§6.2).
            s.recv
                .stop(VarInt::from_u32(code::STREAM_CREATION_ERROR))
                .ok();
            return Ok(());
        }
    };
    {
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        if std::mem::replace(&mut seen[critical], true) {
            return Err(WireError::new(
                code::STREAM_CREATION_ERROR,
                "second control or QPACK stream",
            ));
        }
    }
    let closed = WireError::new(code::CLOSED_CRITICAL_STREAM, "critical stream closed");
    if critical != 0 {
        // With a dynamic table of capacity 0 these carry nothing we act on; read to the end.
        while s.fill().await {
            s.buf.clear();
        }
        return if quic.close_reason().is_some() {
            Ok(())
        } else {
            Err(closed)
        };
    }
    let Some((ty, payload)) = s.frame().await? else {
        return Err(closed);
    };
    if ty != frame::SETTINGS {
        return Err(WireError::new(
            code::MISSING_SETTINGS,
            "control stream did not start with SETTINGS",
        ));
    }
    let settings = codec::parse_settings(&payload)?;
    state.send_modify(|s| s.settings = Some(settings));
    loop {
        let Some((ty, payload)) = s.frame().await? else {
            return if quic.close_reason().is_some() {
                Ok(())
            } else {
                Err(closed)
            };
        };
        match ty {
            frame::GOAWAY => {
                let (id, _) = codec::get_varint(&payload)
                    .ok_or(WireError::new(code::FRAME_ERROR, "truncated GOAWAY"))?;
                state.send_modify(|s| s.goaway = Some(id));
            }
            frame::SETTINGS => {
                return Err(WireError::new(code::FRAME_UNEXPECTED, "second SETTINGS"));
            }
            frame::DATA | frame::HEADERS | frame::PUSH_PROMISE => {
                return Err(WireError::new(
                    code::FRAME_UNEXPECTED,
                    "request frame on the control stream",
                ));
            }
            ty if frame::is_http2_only(ty) => {
                return Err(WireError::new(code::FRAME_UNEXPECTED, "HTTP/2 frame type"));
            }
            _ => {}
        }
    }
}

/// A receive stream with a buffer, for reading varints and whole frames.
struct Buffered {
    recv: RecvStream,
    buf: BytesMut,
}

impl Buffered {
    fn new(recv: RecvStream) -> Self {
        Self {
            recv,
            buf: BytesMut::new(),
        }
    }

    /// Reads more bytes; `false` at the end of the stream (or when it was reset).
    async fn fill(&mut self) -> bool {
        match self.recv.read_chunk(MAX_CONTROL_FRAME, true).await {
            Ok(Some(c)) => {
                self.buf.extend_from_slice(&c.bytes);
                true
            }
            _ => false,
        }
    }

    /// The next varint, or `None` when the stream ends first.
    async fn varint(&mut self) -> Option<u64> {
        loop {
            if let Some((v, n)) = codec::get_varint(&self.buf) {
                self.buf.advance(n);
                return Some(v);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    async fn frame(&mut self) -> Result<Option<(u64, Bytes)>, WireError> {
        loop {
            if let Some((h, n)) = codec::get_frame_header(&self.buf) {
                let len = usize::try_from(h.len)
                    .ok()
                    .filter(|&l| l <= MAX_CONTROL_FRAME)
                    .ok_or(WireError::new(
                        code::EXCESSIVE_LOAD,
                        "control frame too large",
                    ))?;
                if self.buf.len() >= n + len {
                    self.buf.advance(n);
                    return Ok(Some((h.ty, self.buf.split_to(len).freeze())));
                }
            }
            if !self.fill().await {
                return Ok(None);
            }
        }
    }
}

/// Socket buffers of every HBONE QUIC socket: UDP has no flow control of its own, so a
/// burst larger than the kernel's default (about 200 KiB) is dropped and then resent; the
/// kernel caps this at `net.core.rmem_max` / `wmem_max`.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// A QUIC endpoint on `socket` (buffers sized, non-blocking), serving with `server` when given.
pub(crate) fn endpoint(
    socket: std::net::UdpSocket,
    server: Option<quinn::ServerConfig>,
) -> std::io::Result<quinn::Endpoint> {
    socket.set_nonblocking(true)?;
    tune_socket(&socket);
    let mut config = quinn::EndpointConfig::default();
    config
        .max_udp_payload_size(MAX_UDP_PAYLOAD)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    quinn::Endpoint::new(config, server, socket, Arc::new(quinn::TokioRuntime))
}

/// Sizes `socket`'s buffers for QUIC (best effort: a smaller kernel limit is not an error).
fn tune_socket(socket: &std::net::UdpSocket) {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::socket::{setsockopt, sockopt};
        let _ = setsockopt(socket, sockopt::RcvBuf, &SOCKET_BUFFER);
        let _ = setsockopt(socket, sockopt::SndBuf, &SOCKET_BUFFER);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (socket, SOCKET_BUFFER);
}

/// The largest QUIC packet (UDP payload) we probe for and accept. Most of a QUIC byte's cost
/// is per packet (a system call share, a header to seal, an ACK to track), so paths that carry
/// more than Ethernet's 1,500 (loopback, veth, cloud VPCs with jumbo frames) should be used:
/// quinn's path MTU discovery (RFC 8899, loss-based, no ICMP needed) finds what the path takes
/// from 1,200 up to this, and a smaller interface refuses a larger probe at once. Capped so that
/// quinn's batch of 10 segments stays within the kernel's 64 KiB per GSO send (10 × 6,500 =
/// 65,000 ≤ 65,507): a larger batch is refused with EMSGSIZE, which quinn takes as sent.
pub(crate) const MAX_UDP_PAYLOAD: u16 = 6_500;

/// Datagrams buffered per connection (received and not yet routed, or queued to send).
const DATAGRAM_BUFFER: usize = 1024 * 1024;

/// QUIC transport settings for HBONE: Istio's HTTP/2 windows carried over, a few
/// unidirectional streams (control and QPACK), keep-alive, datagrams for CONNECT-UDP, GSO
/// batches when `gso`.
pub(crate) fn transport(
    max_streams: u32,
    idle_timeout: Duration,
    keep_alive: Option<Duration>,
    gso: bool,
) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(max_streams))
        .max_concurrent_uni_streams(VarInt::from_u32(8))
        .stream_receive_window(VarInt::from_u32(crate::settings::STREAM_WINDOW))
        .receive_window(VarInt::from_u32(crate::settings::CONNECTION_WINDOW))
        .send_window(u64::from(crate::settings::CONNECTION_WINDOW))
        .keep_alive_interval(keep_alive)
        .datagram_receive_buffer_size(Some(DATAGRAM_BUFFER))
        .datagram_send_buffer_size(DATAGRAM_BUFFER)
        .enable_segmentation_offload(gso);
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MAX_UDP_PAYLOAD);
    t.mtu_discovery_config(Some(mtu));
    if let Ok(idle) = quinn::IdleTimeout::try_from(idle_timeout) {
        t.max_idle_timeout(Some(idle));
    }
    Arc::new(t)
}
