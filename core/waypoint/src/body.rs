//! Body wrappers: count the bytes that pass, and report once the body is done (sent in full,
//! or dropped because a side went away) so metrics and the access log see whole requests; and
//! the same count for the connections an upgrade joins.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Counts data bytes into a shared counter.
#[derive(Debug)]
pub(crate) struct Counted<B> {
    inner: B,
    count: Arc<AtomicU64>,
}

impl<B> Counted<B> {
    pub(crate) fn new(inner: B, count: Arc<AtomicU64>) -> Self {
        Self { inner, count }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r
            && let Some(d) = f.data_ref()
        {
            this.count.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Runs `done(bytes, complete)` once, when the body ends or is dropped.
pub(crate) struct Finish<B> {
    inner: B,
    bytes: u64,
    /// An empty body may be dropped unpolled; that still counts as complete.
    empty: bool,
    done: Option<Box<dyn FnOnce(u64, bool) + Send + Sync>>,
}

impl<B> std::fmt::Debug for Finish<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finish")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl<B: Body> Finish<B> {
    pub(crate) fn new(inner: B, done: impl FnOnce(u64, bool) + Send + Sync + 'static) -> Self {
        Self {
            empty: inner.is_end_stream(),
            inner,
            bytes: 0,
            done: Some(Box::new(done)),
        }
    }
}

impl<B> Finish<B> {
    fn finish(&mut self, complete: bool) {
        if let Some(d) = self.done.take() {
            d(self.bytes, complete);
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Finish<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.bytes += d.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.finish(true);
                }
            }
            Poll::Ready(None) => this.finish(true),
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Finish<B> {
    fn drop(&mut self) {
        let complete = self.empty;
        self.finish(complete);
    }
}

/// An upgraded connection that counts the bytes read from it (for the request's metrics and
/// log once the joined connections close).
#[derive(Debug)]
pub(crate) struct CountReads<T> {
    inner: T,
    pub(crate) read: u64,
}

impl<T> CountReads<T> {
    pub(crate) fn new(inner: T) -> Self {
        Self { inner, read: 0 }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CountReads<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.read += (buf.filled().len() - before) as u64;
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CountReads<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
