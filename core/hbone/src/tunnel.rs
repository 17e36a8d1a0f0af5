//! One HBONE tunnel: a CONNECT stream as a byte stream.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use ambit_identity::SpiffeId;
use bytes::{Buf, Bytes};
use h2::{Reason, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Largest chunk handed to HTTP/2 per write: one max-size frame.
const MAX_WRITE_CHUNK: usize = crate::settings::MAX_FRAME_SIZE as usize;

/// A bidirectional byte stream carried by one HTTP/2 CONNECT stream.
///
/// - Reading yields the peer's bytes; HTTP/2 flow-control credit is returned only as the
///   bytes are read, so a slow reader stalls the sender instead of growing memory.
/// - `shutdown()` sends END_STREAM (the peer reads EOF) and reading continues: half-close
///   works both ways.
/// - A peer RST_STREAM with NO_ERROR or CANCEL reads as a clean EOF; other reasons are
///   errors. Dropping the tunnel resets the stream if it is still open.
pub struct Tunnel {
    send: SendStream<Bytes>,
    recv: RecvStream,
    pending: Bytes,
    read_eof: bool,
    write_closed: bool,
    info: TunnelInfo,
    _guard: Option<Box<dyn Send + Sync>>,
}

/// What is known about a tunnel's ends.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TunnelInfo {
    /// The verified SPIFFE id of the HBONE peer.
    pub peer_id: SpiffeId,
    /// The HBONE peer's socket address.
    pub peer_addr: SocketAddr,
    /// Our socket address on the HBONE connection.
    pub local_addr: SocketAddr,
}

impl Tunnel {
    pub(crate) fn new(
        send: SendStream<Bytes>,
        recv: RecvStream,
        info: TunnelInfo,
        guard: Option<Box<dyn Send + Sync>>,
    ) -> Self {
        Self {
            send,
            recv,
            pending: Bytes::new(),
            read_eof: false,
            write_closed: false,
            info,
            _guard: guard,
        }
    }

    /// The ends of this tunnel.
    pub fn info(&self) -> &TunnelInfo {
        &self.info
    }

    /// Reads the next chunk of peer bytes without copying (`None` at EOF). Mixing this with
    /// `AsyncRead` is fine: buffered bytes are returned first.
    pub fn poll_read_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        loop {
            if !self.pending.is_empty() {
                let chunk = std::mem::take(&mut self.pending);
                self.release(chunk.len());
                return Poll::Ready(Ok(Some(chunk)));
            }
            if self.read_eof {
                return Poll::Ready(Ok(None));
            }
            match ready!(self.recv.poll_data(cx)) {
                None => self.read_eof = true,
                Some(Ok(b)) => self.pending = b,
                Some(Err(e)) => {
                    if is_clean_reset(&e) {
                        self.read_eof = true;
                    } else {
                        return Poll::Ready(Err(h2_to_io(e)));
                    }
                }
            }
        }
    }

    /// Resets the stream with CANCEL: both directions end at once.
    pub fn abort(&mut self) {
        self.send.send_reset(Reason::CANCEL);
    }

    fn release(&mut self, n: usize) {
        // Fails only when the stream is already gone; there is no credit left to return.
        let _ = self.recv.flow_control().release_capacity(n);
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                this.release(n);
                return Poll::Ready(Ok(()));
            }
            if this.read_eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.recv.poll_data(cx)) {
                None => this.read_eof = true,
                Some(Ok(b)) => this.pending = b,
                Some(Err(e)) => {
                    if is_clean_reset(&e) {
                        this.read_eof = true;
                    } else {
                        return Poll::Ready(Err(h2_to_io(e)));
                    }
                }
            }
        }
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.write_closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "tunnel write side already shut down",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            if let Poll::Ready(reset) = this.send.poll_reset(cx) {
                return Poll::Ready(Err(match reset {
                    Ok(reason) => reset_to_io(reason),
                    Err(e) => h2_to_io(e),
                }));
            }
            let cap = this.send.capacity();
            if cap > 0 {
                let n = cap.min(buf.len());
                this.send
                    .send_data(Bytes::copy_from_slice(&buf[..n]), false)
                    .map_err(h2_to_io)?;
                return Poll::Ready(Ok(n));
            }
            this.send.reserve_capacity(buf.len().min(MAX_WRITE_CHUNK));
            match ready!(this.send.poll_capacity(cx)) {
                None => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "tunnel stream closed",
                    )));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(h2_to_io(e))),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Frames are written by the connection task as soon as they are queued.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write_closed {
            this.write_closed = true;
            this.send.reserve_capacity(0);
            this.send.send_data(Bytes::new(), true).map_err(h2_to_io)?;
        }
        Poll::Ready(Ok(()))
    }
}

impl fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tunnel")
            .field("info", &self.info)
            .field("read_eof", &self.read_eof)
            .field("write_closed", &self.write_closed)
            .finish_non_exhaustive()
    }
}

fn is_clean_reset(e: &h2::Error) -> bool {
    matches!(e.reason(), Some(Reason::NO_ERROR | Reason::CANCEL)) && e.is_reset()
}

fn reset_to_io(reason: Reason) -> io::Error {
    match reason {
        Reason::NO_ERROR | Reason::CANCEL | Reason::STREAM_CLOSED => io::Error::new(
            io::ErrorKind::BrokenPipe,
            format!("peer reset the tunnel ({reason})"),
        ),
        other => io::Error::new(
            io::ErrorKind::ConnectionReset,
            format!("peer reset the tunnel ({other})"),
        ),
    }
}

pub(crate) fn h2_to_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e
            .into_io()
            .unwrap_or_else(|| io::Error::other("HTTP/2 I/O error"));
    }
    let kind = match e.reason() {
        Some(Reason::STREAM_CLOSED) => io::ErrorKind::BrokenPipe,
        _ => io::ErrorKind::ConnectionReset,
    };
    io::Error::new(kind, e)
}
