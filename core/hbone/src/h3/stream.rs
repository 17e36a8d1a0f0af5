//! One HTTP/3 request stream as the two halves of a tunnel: DATA frames in and out.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use quinn::{ReadError, RecvStream, SendStream, VarInt, WriteError};

use super::codec::{self, FrameHeader, WireError, code, frame};

/// Largest DATA frame we write: bigger frames only cost a larger copy per write.
const MAX_DATA_FRAME: usize = 64 * 1024;
/// The longest frame header: two 8-byte varints.
const MAX_FRAME_HEADER: usize = 16;

/// The receiving half: yields the payload of DATA frames, skips unknown frames.
pub(crate) struct H3Reader {
    recv: RecvStream,
    /// Received bytes not parsed yet.
    buf: Bytes,
    /// A frame header split across received chunks.
    hdr: [u8; MAX_FRAME_HEADER],
    hdr_len: u8,
    state: ReadState,
    eof: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    /// Between frames.
    Header,
    /// Inside a DATA frame with this much payload left.
    Data(u64),
    /// Inside a frame we ignore, with this much left.
    Skip(u64),
}

/// The sending half: writes DATA frames, FIN on shutdown.
pub(crate) struct H3Writer {
    send: SendStream,
    /// Framed bytes accepted from the caller but not yet by QUIC.
    pending: [Bytes; 2],
    closed: bool,
    /// Held after the writer is dropped until the peer acknowledges the stream's end (QUIC
    /// keeps sending a dropped stream's data, but closing the connection would cut it off):
    /// the tunnel's place in its connection's count, so a drain or an idle release waits.
    linger: Option<std::sync::Arc<dyn Send + Sync>>,
}

/// How long a finished stream may hold its connection open waiting for the peer's
/// acknowledgement.
const LINGER: std::time::Duration = std::time::Duration::from_secs(10);

// === impl H3Reader ===

impl H3Reader {
    pub(crate) fn new(recv: RecvStream) -> Self {
        Self {
            recv,
            buf: Bytes::new(),
            hdr: [0; MAX_FRAME_HEADER],
            hdr_len: 0,
            state: ReadState::Header,
            eof: false,
        }
    }

    /// Reads the message's HEADERS frame (skipping unknown frames before it) and returns its
    /// payload, or `None` when the stream ended cleanly first.
    pub(crate) async fn read_headers(&mut self, max: usize) -> Result<Option<Bytes>, StreamError> {
        loop {
            let Some(h) = self.next_header().await? else {
                return Ok(None);
            };
            match h.ty {
                frame::HEADERS => {
                    let len = usize::try_from(h.len).ok().filter(|&l| l <= max).ok_or(
                        StreamError::Wire(WireError::new(
                            code::EXCESSIVE_LOAD,
                            "HEADERS frame larger than the header size limit",
                        )),
                    )?;
                    return self.read_exact(len).await.map(Some);
                }
                ty if is_unexpected_on_request(ty) || ty == frame::DATA => {
                    return Err(StreamError::Wire(WireError::new(
                        code::FRAME_UNEXPECTED,
                        "frame not allowed before HEADERS",
                    )));
                }
                _ if h.len == 0 => {}
                _ => self.state = ReadState::Skip(h.len),
            }
        }
    }

    /// The next chunk of DATA payload, without copying; `None` at the end of the stream.
    pub(crate) fn poll_read_chunk(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<Bytes>>> {
        self.poll_data(cx, usize::MAX)
    }

    /// Copies DATA payload into `out`; nothing copied means the end of the stream.
    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if let Some(chunk) = ready!(self.poll_data(cx, out.remaining()))? {
            out.put_slice(&chunk);
        }
        Poll::Ready(Ok(()))
    }

    pub(crate) fn is_eof(&self) -> bool {
        self.eof
    }

    /// Asks the peer to stop sending, with `code`; nothing more is read.
    pub(crate) fn stop(&mut self, code: u32) {
        self.eof = true;
        let _ = self.recv.stop(VarInt::from_u32(code));
    }

    /// At most `max` bytes of DATA payload.
    fn poll_data(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<io::Result<Option<Bytes>>> {
        loop {
            match self.state {
                ReadState::Data(left) if !self.buf.is_empty() => {
                    let n = self
                        .buf
                        .len()
                        .min(max)
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    let chunk = self.buf.split_to(n);
                    self.state = match left - n as u64 {
                        0 => ReadState::Header,
                        rest => ReadState::Data(rest),
                    };
                    return Poll::Ready(Ok(Some(chunk)));
                }
                ReadState::Skip(left) if !self.buf.is_empty() => self.skip(left),
                ReadState::Header if !self.buf.is_empty() => {
                    if let Some(h) = self.take_header() {
                        self.state = match h.ty {
                            frame::DATA if h.len > 0 => ReadState::Data(h.len),
                            frame::DATA => ReadState::Header,
                            ty if is_unexpected_on_request(ty) => {
                                return Poll::Ready(Err(to_io(StreamError::Wire(WireError::new(
                                    code::FRAME_UNEXPECTED,
                                    "control frame on a request stream",
                                )))));
                            }
                            // Trailers and unknown frames carry nothing for a tunnel.
                            _ if h.len == 0 => ReadState::Header,
                            _ => ReadState::Skip(h.len),
                        };
                    }
                }
                _ => {
                    if self.eof {
                        return Poll::Ready(Ok(None));
                    }
                    ready!(self.poll_fill(cx)).map_err(to_io)?;
                }
            }
        }
    }

    async fn next_header(&mut self) -> Result<Option<FrameHeader>, StreamError> {
        loop {
            match self.state {
                ReadState::Header if !self.buf.is_empty() => {
                    if let Some(h) = self.take_header() {
                        return Ok(Some(h));
                    }
                }
                ReadState::Skip(left) if !self.buf.is_empty() => self.skip(left),
                _ if self.eof => return Ok(None),
                _ => std::future::poll_fn(|cx| self.poll_fill(cx)).await?,
            }
        }
    }

    async fn read_exact(&mut self, len: usize) -> Result<Bytes, StreamError> {
        let mut out = BytesMut::with_capacity(len);
        while out.len() < len {
            if self.buf.is_empty() {
                if self.eof {
                    return Err(StreamError::Wire(WireError::new(
                        code::FRAME_ERROR,
                        "stream ended inside a frame",
                    )));
                }
                std::future::poll_fn(|cx| self.poll_fill(cx)).await?;
                continue;
            }
            let n = (len - out.len()).min(self.buf.len());
            out.put_slice(&self.buf.split_to(n));
        }
        self.state = ReadState::Header;
        Ok(out.freeze())
    }

    /// Discards up to `left` bytes of an ignored frame from `buf`.
    fn skip(&mut self, left: u64) {
        let n = self
            .buf
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        self.buf.advance(n);
        self.state = match left - n as u64 {
            0 => ReadState::Header,
            rest => ReadState::Skip(rest),
        };
    }

    /// Parses a frame header from `hdr` + `buf`, keeping a partial one in `hdr`.
    fn take_header(&mut self) -> Option<FrameHeader> {
        let old = usize::from(self.hdr_len);
        if old == 0
            && let Some((h, n)) = codec::get_frame_header(&self.buf)
        {
            self.buf.advance(n);
            return Some(h);
        }
        let take = (MAX_FRAME_HEADER - old).min(self.buf.len());
        self.hdr[old..old + take].copy_from_slice(&self.buf[..take]);
        match codec::get_frame_header(&self.hdr[..old + take]) {
            Some((h, n)) => {
                self.buf.advance(n - old);
                self.hdr_len = 0;
                Some(h)
            }
            None => {
                self.buf.advance(take);
                self.hdr_len = (old + take) as u8;
                None
            }
        }
    }

    /// Waits for more stream bytes into `buf`, or the end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamError>> {
        let read = ready!(pin!(self.recv.read_chunk(usize::MAX, true)).poll(cx));
        match read {
            Ok(Some(chunk)) => self.buf = chunk.bytes,
            Ok(None) => {
                if self.hdr_len != 0 || !matches!(self.state, ReadState::Header) {
                    return Poll::Ready(Err(StreamError::Wire(WireError::new(
                        code::FRAME_ERROR,
                        "stream ended inside a frame",
                    ))));
                }
                self.eof = true;
            }
            // A clean reset ends the tunnel only between frames: inside one, the stream was
            // cut short (QUIC also drops what was received and not yet read).
            Err(ReadError::Reset(c))
                if is_clean(c) && self.hdr_len == 0 && self.state == ReadState::Header =>
            {
                self.eof = true
            }
            Err(e) => return Poll::Ready(Err(StreamError::Read(e))),
        }
        Poll::Ready(Ok(()))
    }
}

// === impl H3Writer ===

impl H3Writer {
    pub(crate) fn new(send: SendStream) -> Self {
        Self {
            send,
            pending: [Bytes::new(), Bytes::new()],
            closed: false,
            linger: None,
        }
    }

    /// Sends one whole frame (used for HEADERS).
    pub(crate) async fn write_frame(&mut self, ty: u64, payload: &[u8]) -> io::Result<()> {
        self.send
            .write_chunk(codec::frame(ty, payload))
            .await
            .map_err(write_to_io)
    }

    /// Accepts up to one frame's worth of `buf` as a DATA frame; the bytes are QUIC's or
    /// pending here once this returns.
    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_drain(cx))?;
        if self.closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "tunnel write side already shut down",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(MAX_DATA_FRAME);
        let mut framed = BytesMut::with_capacity(n + 8);
        codec::put_frame_header(&mut framed, frame::DATA, n as u64);
        framed.put_slice(&buf[..n]);
        self.pending[0] = framed.freeze();
        // Start sending now; what QUIC does not take yet goes at the next call.
        if let Poll::Ready(Err(e)) = self.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    /// Sends `data` as one DATA frame without copying it.
    pub(crate) async fn write_chunk(&mut self, data: Bytes) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_drain(cx)).await?;
        if data.is_empty() {
            return Ok(());
        }
        let mut hdr = BytesMut::with_capacity(MAX_FRAME_HEADER);
        codec::put_frame_header(&mut hdr, frame::DATA, data.len() as u64);
        self.pending = [hdr.freeze(), data];
        std::future::poll_fn(|cx| self.poll_drain(cx)).await
    }

    pub(crate) fn set_pending(&mut self, first: Bytes, second: Bytes) {
        self.pending = [first, second];
    }

    /// Hands pending bytes to QUIC.
    pub(crate) fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pending.iter().any(|b| !b.is_empty()) {
            let bufs = if self.pending[0].is_empty() {
                &mut self.pending[1..]
            } else {
                &mut self.pending[..]
            };
            ready!(pin!(self.send.write_chunks(bufs)).poll(cx)).map_err(write_to_io)?;
        }
        Poll::Ready(Ok(()))
    }

    /// Flushes what is pending, then sends FIN. A peer that already stopped the stream with
    /// H3_NO_ERROR wants nothing more: that is a clean end too.
    pub(crate) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.closed {
            return Poll::Ready(Ok(()));
        }
        match ready!(self.poll_drain(cx)) {
            Ok(()) => {}
            Err(e) if stopped_cleanly(&e) => {
                self.closed = true;
                return Poll::Ready(Ok(()));
            }
            Err(e) => return Poll::Ready(Err(e)),
        }
        self.closed = true;
        // Fails only when the peer already stopped or reset the stream.
        let _ = self.send.finish();
        Poll::Ready(Ok(()))
    }

    /// Resets the stream with `code`.
    pub(crate) fn reset(&mut self, code: u32) {
        self.closed = true;
        self.pending = [Bytes::new(), Bytes::new()];
        let _ = self.send.reset(VarInt::from_u32(code));
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Keeps `guard` alive after the writer is dropped, until the peer acknowledges the end.
    pub(crate) fn linger(&mut self, guard: Option<std::sync::Arc<dyn Send + Sync>>) {
        self.linger = guard;
    }

    /// The request stream's id (HTTP/3 datagrams name it).
    pub(crate) fn stream_id(&self) -> u64 {
        self.send.id().into()
    }
}

impl Drop for H3Writer {
    fn drop(&mut self) {
        if !self.closed {
            // Dropped while open: the peer must not take what it got as complete.
            let _ = self.send.reset(VarInt::from_u32(code::CONNECT_ERROR));
            return;
        }
        if let (Some(linger), Ok(rt)) = (self.linger.take(), tokio::runtime::Handle::try_current())
        {
            let acked = self.send.stopped();
            rt.spawn(async move {
                let _ = tokio::time::timeout(LINGER, acked).await;
                drop(linger);
            });
        }
    }
}

impl Drop for H3Reader {
    fn drop(&mut self) {
        if !self.eof {
            // Not read to the end: tell the peer to stop, as a clean end (quinn's default
            // code 0 would read as an error).
            let _ = self.recv.stop(VarInt::from_u32(code::NO_ERROR));
        }
    }
}

// === errors ===

/// Why a request stream failed.
#[derive(Debug)]
pub(crate) enum StreamError {
    Wire(WireError),
    Read(ReadError),
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamError::Wire(e) => e.fmt(f),
            StreamError::Read(e) => e.fmt(f),
        }
    }
}

impl From<ReadError> for StreamError {
    fn from(e: ReadError) -> Self {
        StreamError::Read(e)
    }
}

/// H3_NO_ERROR and H3_REQUEST_CANCELLED end a tunnel cleanly, as NO_ERROR and CANCEL do in
/// HTTP/2; so do codes HTTP/3 does not define (RFC 9114 §9: unknown codes mean no error).
fn is_clean(c: VarInt) -> bool {
    let c = c.into_inner();
    let known = (0x100..=0x110).contains(&c) || (0x200..=0x202).contains(&c) || c == 0x33;
    !known || c == u64::from(code::NO_ERROR) || c == u64::from(code::REQUEST_CANCELLED)
}

fn is_unexpected_on_request(ty: u64) -> bool {
    frame::is_http2_only(ty)
        || matches!(
            ty,
            frame::SETTINGS | frame::GOAWAY | frame::MAX_PUSH_ID | frame::CANCEL_PUSH
        )
        || ty == frame::PUSH_PROMISE
}

fn stopped_cleanly(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|e| e.downcast_ref::<WriteError>())
        .is_some_and(|w| matches!(w, WriteError::Stopped(c) if is_clean(*c)))
}

pub(crate) fn to_io(e: StreamError) -> io::Error {
    match e {
        StreamError::Wire(w) => io::Error::new(io::ErrorKind::InvalidData, w.to_string()),
        StreamError::Read(ReadError::Reset(c)) => io::Error::new(
            io::ErrorKind::ConnectionReset,
            format!("peer reset the tunnel (HTTP/3 error {:#x})", c.into_inner()),
        ),
        StreamError::Read(e) => io::Error::new(io::ErrorKind::ConnectionReset, e),
    }
}

fn write_to_io(e: WriteError) -> io::Error {
    let kind = match e {
        WriteError::Stopped(_) | WriteError::ClosedStream => io::ErrorKind::BrokenPipe,
        _ => io::ErrorKind::ConnectionReset,
    };
    io::Error::new(kind, e)
}
