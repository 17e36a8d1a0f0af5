//! One HBONE tunnel: a CONNECT stream as a byte stream.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
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
/// - [`into_split`](Self::into_split) gives owned halves for use from two tasks without a
///   lock; the halves also move [`Bytes`] without copying.
pub struct Tunnel {
    reader: TunnelReader,
    writer: TunnelWriter,
}

/// The receiving half of a [`Tunnel`].
pub struct TunnelReader {
    inner: ReadInner,
    _guard: Option<Arc<dyn Send + Sync>>,
}

/// The sending half of a [`Tunnel`].
pub struct TunnelWriter {
    inner: WriteInner,
    /// Shared by every tunnel of one HBONE connection.
    info: Arc<TunnelInfo>,
    _guard: Option<Arc<dyn Send + Sync>>,
}

/// The transport under a tunnel. HTTP/3 halves are boxed so the HTTP/2 tunnel, the common
/// one, does not grow by their size.
enum ReadInner {
    H2(H2Reader),
    #[cfg(feature = "h3")]
    H3(Box<crate::h3::stream::H3Reader>),
}

enum WriteInner {
    H2(H2Writer),
    #[cfg(feature = "h3")]
    H3(Box<crate::h3::stream::H3Writer>),
}

struct H2Reader {
    recv: RecvStream,
    pending: Bytes,
    eof: bool,
}

struct H2Writer {
    send: SendStream<Bytes>,
    closed: bool,
}

/// Which HTTP version carries a tunnel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// HTTP/2 over TCP and TLS: the Istio wire.
    #[default]
    Http2,
    /// HTTP/3 over QUIC: ambit's extension.
    Http3,
}

impl Transport {
    /// `"h2"` or `"h3"`, as metrics and access logs name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Http2 => "h2",
            Transport::Http3 => "h3",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// The HTTP version carrying the connection.
    pub transport: Transport,
}

// === impl Tunnel ===

impl Tunnel {
    pub(crate) fn new(
        send: SendStream<Bytes>,
        recv: RecvStream,
        info: Arc<TunnelInfo>,
        guard: Option<Arc<dyn Send + Sync>>,
    ) -> Self {
        Self {
            reader: TunnelReader {
                inner: ReadInner::H2(H2Reader {
                    recv,
                    pending: Bytes::new(),
                    eof: false,
                }),
                _guard: guard.clone(),
            },
            writer: TunnelWriter {
                inner: WriteInner::H2(H2Writer {
                    send,
                    closed: false,
                }),
                info,
                _guard: guard,
            },
        }
    }

    #[cfg(feature = "h3")]
    pub(crate) fn from_h3(
        reader: crate::h3::stream::H3Reader,
        mut writer: crate::h3::stream::H3Writer,
        info: Arc<TunnelInfo>,
        guard: Option<Arc<dyn Send + Sync>>,
    ) -> Self {
        writer.linger(guard.clone());
        Self {
            reader: TunnelReader {
                inner: ReadInner::H3(Box::new(reader)),
                _guard: guard.clone(),
            },
            writer: TunnelWriter {
                inner: WriteInner::H3(Box::new(writer)),
                info,
                _guard: guard,
            },
        }
    }

    /// The ends of this tunnel.
    pub fn info(&self) -> &TunnelInfo {
        &self.writer.info
    }

    /// Splits into owned halves usable from different tasks.
    pub fn into_split(self) -> (TunnelReader, TunnelWriter) {
        (self.reader, self.writer)
    }

    /// Both halves, borrowed: for a copy that works on the tunnel in place (a moved tunnel is
    /// stored again in each future it is moved into).
    pub fn halves_mut(&mut self) -> (&mut TunnelReader, &mut TunnelWriter) {
        (&mut self.reader, &mut self.writer)
    }

    /// Resets the stream with CANCEL: both directions end at once.
    pub fn abort(&mut self) {
        self.writer.abort();
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A server that reads first (HTTP) must still send its answer's headers, which may
        // wait for QUIC credit: reading drives them too. A failure shows at the next write.
        let _ = Pin::new(&mut this.writer).poll_flush(cx);
        Pin::new(&mut this.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().writer).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_shutdown(cx)
    }
}

impl fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tunnel")
            .field("info", &self.writer.info)
            .field("read_eof", &self.reader.is_eof())
            .field("write_closed", &self.writer.is_closed())
            .finish_non_exhaustive()
    }
}

// === impl TunnelReader ===

impl TunnelReader {
    /// The next chunk of peer bytes, without copying; `None` at EOF. Flow-control credit for
    /// the chunk is returned to the peer when it is handed out.
    pub fn poll_read_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        match &mut self.inner {
            ReadInner::H2(r) => r.poll_read_chunk(cx),
            #[cfg(feature = "h3")]
            ReadInner::H3(r) => r.poll_read_chunk(cx),
        }
    }

    /// Async form of [`poll_read_chunk`](Self::poll_read_chunk).
    pub async fn read_chunk(&mut self) -> io::Result<Option<Bytes>> {
        poll_fn(|cx| self.poll_read_chunk(cx)).await
    }

    /// Stops reading a malformed message (RFC 9114 §4.1.2): STOP_SENDING with H3_MESSAGE_ERROR
    /// over HTTP/3. HTTP/2 has no reader-side reset: the writer's reset ends both directions.
    pub(crate) fn stop_malformed(&mut self) {
        match &mut self.inner {
            ReadInner::H2(_) => {}
            #[cfg(feature = "h3")]
            ReadInner::H3(r) => r.stop(crate::h3::codec::code::MESSAGE_ERROR),
        }
    }

    fn is_eof(&self) -> bool {
        match &self.inner {
            ReadInner::H2(r) => r.eof,
            #[cfg(feature = "h3")]
            ReadInner::H3(r) => r.is_eof(),
        }
    }
}

impl H2Reader {
    fn poll_read_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        loop {
            if !self.pending.is_empty() {
                let chunk = std::mem::take(&mut self.pending);
                self.release(chunk.len());
                return Poll::Ready(Ok(Some(chunk)));
            }
            if self.eof {
                return Poll::Ready(Ok(None));
            }
            ready!(self.poll_fill(cx))?;
        }
    }

    /// Waits for the next DATA frame (or the end) into `pending`.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(self.recv.poll_data(cx)) {
            None => self.eof = true,
            Some(Ok(b)) => self.pending = b,
            Some(Err(e)) if is_clean_reset(&e) => self.eof = true,
            Some(Err(e)) => return Poll::Ready(Err(h2_to_io(e))),
        }
        Poll::Ready(Ok(()))
    }

    fn release(&mut self, n: usize) {
        // Fails only when the stream is already gone; there is no credit left to return.
        let _ = self.recv.flow_control().release_capacity(n);
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                self.release(n);
                return Poll::Ready(Ok(()));
            }
            if self.eof {
                return Poll::Ready(Ok(()));
            }
            ready!(self.poll_fill(cx))?;
        }
    }
}

impl AsyncRead for TunnelReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            ReadInner::H2(r) => r.poll_read(cx, buf),
            #[cfg(feature = "h3")]
            ReadInner::H3(r) => r.poll_read(cx, buf),
        }
    }
}

impl fmt::Debug for TunnelReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelReader")
            .field("eof", &self.is_eof())
            .finish_non_exhaustive()
    }
}

// === impl TunnelWriter ===

impl TunnelWriter {
    /// The ends of this tunnel.
    pub fn info(&self) -> &TunnelInfo {
        &self.info
    }

    /// Sends `data` without copying it, waiting for flow-control credit as needed.
    pub async fn write_chunk(&mut self, data: Bytes) -> io::Result<()> {
        match &mut self.inner {
            WriteInner::H2(w) => w.write_chunk(data).await,
            #[cfg(feature = "h3")]
            WriteInner::H3(w) => w.write_chunk(data).await,
        }
    }

    /// Resets the stream with CANCEL (H3_REQUEST_CANCELLED over HTTP/3).
    pub fn abort(&mut self) {
        match &mut self.inner {
            WriteInner::H2(w) => w.send.send_reset(Reason::CANCEL),
            #[cfg(feature = "h3")]
            WriteInner::H3(w) => w.reset(crate::h3::codec::code::REQUEST_CANCELLED),
        }
    }

    /// Resets the stream with CONNECT_ERROR (RFC 9113 §8.5, RFC 9114 §4.4): the connection
    /// behind the tunnel was reset or closed abnormally, so the peer must not take the stream
    /// as complete (CANCEL and NO_ERROR read as a clean end, as in ztunnel).
    pub fn abort_connect_error(&mut self) {
        match &mut self.inner {
            WriteInner::H2(w) => w.send.send_reset(Reason::CONNECT_ERROR),
            #[cfg(feature = "h3")]
            WriteInner::H3(w) => w.reset(crate::h3::codec::code::CONNECT_ERROR),
        }
    }

    /// Resets the stream as a malformed message: PROTOCOL_ERROR (RFC 9113 §8.1.1),
    /// H3_MESSAGE_ERROR over HTTP/3 (RFC 9114 §4.1.2).
    pub(crate) fn abort_malformed(&mut self) {
        match &mut self.inner {
            WriteInner::H2(w) => w.send.send_reset(Reason::PROTOCOL_ERROR),
            #[cfg(feature = "h3")]
            WriteInner::H3(w) => w.reset(crate::h3::codec::code::MESSAGE_ERROR),
        }
    }

    fn is_closed(&self) -> bool {
        match &self.inner {
            WriteInner::H2(w) => w.closed,
            #[cfg(feature = "h3")]
            WriteInner::H3(w) => w.is_closed(),
        }
    }
}

impl H2Writer {
    async fn write_chunk(&mut self, mut data: Bytes) -> io::Result<()> {
        while !data.is_empty() {
            let cap = poll_fn(|cx| self.poll_capacity(cx, data.len())).await?;
            let part = data.split_to(cap.min(data.len()));
            self.send.send_data(part, false).map_err(h2_to_io)?;
        }
        Ok(())
    }

    /// Waits until at least one byte of send credit is available; returns how much.
    fn poll_capacity(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        if self.closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "tunnel write side already shut down",
            )));
        }
        loop {
            if let Poll::Ready(reset) = self.send.poll_reset(cx) {
                return Poll::Ready(Err(match reset {
                    Ok(reason) => reset_to_io(reason),
                    Err(e) => h2_to_io(e),
                }));
            }
            let cap = self.send.capacity();
            if cap > 0 {
                return Poll::Ready(Ok(cap));
            }
            // h2 wakes the stream's waker, this task's since `poll_reset`, when
            // `reserve_capacity` assigns credit at once; tokio answers a task woken inside its
            // own poll by queueing it again and waking the other worker to take it (two futex
            // calls and a thread hop per small write). A no-op waker stands in while credit is
            // asked for; `poll_capacity` registers this task if it has to wait.
            let _ = self
                .send
                .poll_reset(&mut Context::from_waker(std::task::Waker::noop()));
            self.send.reserve_capacity(want.min(MAX_WRITE_CHUNK));
            match ready!(self.send.poll_capacity(cx)) {
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

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let cap = ready!(self.poll_capacity(cx, buf.len()))?;
        let n = cap.min(buf.len());
        self.send
            .send_data(Bytes::copy_from_slice(&buf[..n]), false)
            .map_err(h2_to_io)?;
        Poll::Ready(Ok(n))
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.closed {
            self.closed = true;
            self.send.reserve_capacity(0);
            if let Err(e) = self.send.send_data(Bytes::new(), true) {
                // The peer closed the stream with NO_ERROR or CANCEL: it wants nothing more
                // (RFC 9113 §8.1; h2 resets so after a complete response, or when its side
                // is done first). As when reading, those read as a clean end; any other
                // reason is an error.
                if let Poll::Ready(Ok(Reason::NO_ERROR | Reason::CANCEL)) = self.send.poll_reset(cx)
                {
                    return Poll::Ready(Ok(()));
                }
                return Poll::Ready(Err(h2_to_io(e)));
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for TunnelWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            WriteInner::H2(w) => w.poll_write(cx, buf),
            #[cfg(feature = "h3")]
            WriteInner::H3(w) => w.poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            // Frames are written by the connection task as soon as they are queued.
            WriteInner::H2(_) => {
                let _ = cx;
                Poll::Ready(Ok(()))
            }
            #[cfg(feature = "h3")]
            WriteInner::H3(w) => w.poll_drain(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            WriteInner::H2(w) => w.poll_shutdown(cx),
            #[cfg(feature = "h3")]
            WriteInner::H3(w) => w.poll_shutdown(cx),
        }
    }
}

impl fmt::Debug for TunnelWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelWriter")
            .field("info", &self.info)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

// === helpers ===

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
