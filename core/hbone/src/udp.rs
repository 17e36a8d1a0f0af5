//! UDP through the mesh: CONNECT-UDP (RFC 9298). A flow is one extended CONNECT
//! (`:protocol connect-udp`, the target in the path) on the HBONE connection. Over HTTP/3 each
//! UDP payload travels as an HTTP datagram (RFC 9297: a QUIC DATAGRAM frame, unreliable as
//! UDP is); over HTTP/2, which has no datagrams, as a DATAGRAM capsule on the stream. Either
//! way the caller sees one [`UdpTunnel`] that sends and receives whole datagrams.

#[cfg(target_os = "linux")]
mod bridge;
pub(crate) mod codec;

#[cfg(target_os = "linux")]
pub use bridge::bridge_udp_to_socketpair;

use std::io;

use bytes::{Bytes, BytesMut};

use crate::tunnel::{Tunnel, TunnelInfo, TunnelReader, TunnelWriter};

/// The largest UDP payload a flow carries (an IPv4 UDP datagram's limit).
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// One UDP flow through an HBONE peer: datagrams in both directions, each delivered whole or
/// not at all. Ends when either side closes its stream.
#[derive(Debug)]
pub struct UdpTunnel {
    sender: UdpSender,
    receiver: UdpReceiver,
}

/// The sending half of a [`UdpTunnel`].
#[derive(Debug)]
pub struct UdpSender {
    writer: TunnelWriter,
    #[cfg(feature = "h3")]
    datagrams: Option<crate::h3::datagram::Outbound>,
}

/// The receiving half of a [`UdpTunnel`].
#[derive(Debug)]
pub struct UdpReceiver {
    reader: TunnelReader,
    capsules: codec::CapsuleReader,
    #[cfg(feature = "h3")]
    datagrams: Option<crate::h3::datagram::Inbound>,
}

impl UdpTunnel {
    /// A flow over `stream` (capsules only: HTTP/2).
    pub(crate) fn over_stream(stream: Tunnel) -> Self {
        let (reader, writer) = stream.into_split();
        Self {
            sender: UdpSender {
                writer,
                #[cfg(feature = "h3")]
                datagrams: None,
            },
            receiver: UdpReceiver {
                reader,
                capsules: codec::CapsuleReader::default(),
                #[cfg(feature = "h3")]
                datagrams: None,
            },
        }
    }

    /// A flow over an HTTP/3 stream and its datagrams.
    #[cfg(feature = "h3")]
    pub(crate) fn over_h3(
        stream: Tunnel,
        (out, inb): (crate::h3::datagram::Outbound, crate::h3::datagram::Inbound),
    ) -> Self {
        let mut t = Self::over_stream(stream);
        t.sender.datagrams = Some(out);
        t.receiver.datagrams = Some(inb);
        t
    }

    /// The ends of the flow's HBONE connection.
    pub fn info(&self) -> &TunnelInfo {
        self.sender.writer.info()
    }

    /// Sends one datagram.
    pub async fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        self.sender.send(payload).await
    }

    /// The next datagram, or `None` when the flow has ended. Malformed capsules from the peer
    /// reset the flow's stream (see [`UdpSender::abort_on`]).
    pub async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        let r = self.receiver.recv().await;
        if let Err(e) = &r {
            self.sender.abort_on(e);
        }
        r
    }

    /// Whether the flow has HTTP/3 datagrams: it receives them, and sends them once the
    /// peer's SETTINGS enable them (capsules on the stream otherwise, and for payloads too
    /// large for one QUIC packet).
    pub fn uses_datagrams(&self) -> bool {
        #[cfg(feature = "h3")]
        return self.sender.datagrams.is_some();
        #[cfg(not(feature = "h3"))]
        false
    }

    /// Splits into halves usable from two tasks.
    pub fn into_split(self) -> (UdpSender, UdpReceiver) {
        (self.sender, self.receiver)
    }
}

impl UdpSender {
    /// Sends one datagram: an HTTP/3 datagram when the connection has them (dropped, as UDP
    /// may be, under congestion), else a DATAGRAM capsule on the stream. Payloads larger than
    /// [`MAX_UDP_PAYLOAD`] are refused.
    pub async fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        if payload.len() > MAX_UDP_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "UDP payload of {} bytes is over the {MAX_UDP_PAYLOAD}-byte limit",
                    payload.len()
                ),
            ));
        }
        #[cfg(feature = "h3")]
        if let Some(d) = &self.datagrams {
            // Too large for one QUIC packet: the stream carries it instead.
            if d.send(payload)? {
                return Ok(());
            }
        }
        let mut capsule = BytesMut::with_capacity(payload.len() + 8);
        codec::put_datagram_capsule(&mut capsule, payload);
        self.writer.write_chunk(capsule.freeze()).await
    }

    /// Sends what is queued (a server's answer may wait for QUIC credit).
    pub async fn flush(&mut self) -> io::Result<()> {
        tokio::io::AsyncWriteExt::flush(&mut self.writer).await
    }

    /// Ends the flow from this side (the peer's receiver sees the end).
    pub async fn close(&mut self) -> io::Result<()> {
        tokio::io::AsyncWriteExt::shutdown(&mut self.writer).await
    }

    /// Ends the flow after its receiver failed with `e`, instead of [`close`](Self::close):
    /// capsules the peer sent malformed reset the stream as a malformed message (RFC 9297
    /// §3.3: H3_MESSAGE_ERROR, HTTP/2 PROTOCOL_ERROR); any other failure with CONNECT_ERROR.
    pub fn abort_on(&mut self, e: &io::Error) {
        if is_malformed(e) {
            self.writer.abort_malformed();
        } else {
            self.writer.abort_connect_error();
        }
    }
}

/// Whether `e` is a receiver's report of a malformed capsule.
fn is_malformed(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<Malformed>())
}

/// A capsule the peer sent could not be parsed.
#[derive(Debug)]
struct Malformed(codec::CapsuleError);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed capsule: {}", self.0)
    }
}

impl std::error::Error for Malformed {}

impl UdpReceiver {
    /// The next datagram, or `None` when the peer ended the flow. A malformed capsule stops
    /// the stream's receiving side and fails with an error for [`UdpSender::abort_on`].
    pub async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            match self.capsules.next() {
                Ok(Some(p)) => return Ok(Some(p)),
                Ok(None) => {}
                Err(e) => {
                    self.reader.stop_malformed();
                    return Err(io::Error::new(io::ErrorKind::InvalidData, Malformed(e)));
                }
            }
            #[cfg(feature = "h3")]
            if let Some(d) = &mut self.datagrams {
                tokio::select! {
                    chunk = self.reader.read_chunk() => match chunk? {
                        Some(c) => self.capsules.push(c),
                        None => return Ok(None),
                    },
                    Some(p) = d.recv() => return Ok(Some(p)),
                }
                continue;
            }
            match self.reader.read_chunk().await? {
                Some(c) => self.capsules.push(c),
                None => return Ok(None),
            }
        }
    }
}
