//! Connections from the waypoint to endpoints: HBONE with the waypoint's identity to mesh pods
//! (`<pod-ip>:15008`, authority `<pod-ip>:<target-port>`), plain TCP to the others, pooled and
//! kept alive by hyper's client (one pool per endpoint `ip:port`).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ambit_hbone::{Dial, TraceParent, Tunnel};
use ambit_state::{State, TunnelProtocol};
use ambit_tls::{CredentialCell, TlsContext};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

tokio::task_local! {
    /// The span of the request being forwarded: a tunnel opened for it carries it as its
    /// `traceparent`, so the node proxy behind is a child of this waypoint's span.
    pub(crate) static TRACE: TraceParent;
}

/// Errors crossing the body boundary.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The request body sent upstream.
pub(crate) type Body = BoxBody<Bytes, BoxError>;

/// The two pooled clients: HTTP/1.1 (default) and HTTP/2 (gRPC and h2 upstreams).
#[derive(Clone)]
pub(crate) struct Upstreams {
    pub(crate) http1: Client<Connector, Body>,
    pub(crate) http2: Client<Connector, Body>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Upstreams")
    }
}

/// Opens a connection to the endpoint a request URI names.
#[derive(Clone)]
pub(crate) struct Connector {
    hbone: ambit_hbone::Client,
    identity: Arc<CredentialCell>,
    state: Arc<ArcSwap<State>>,
    network: String,
    connect_timeout: Duration,
    source_ip: Option<IpAddr>,
}

impl Upstreams {
    pub(crate) fn new(
        tls: TlsContext,
        identity: Arc<CredentialCell>,
        state: Arc<ArcSwap<State>>,
        network: String,
        connect_timeout: Duration,
        source_ip: Option<IpAddr>,
    ) -> Self {
        let connector = Connector {
            hbone: ambit_hbone::Client::new(tls, ambit_hbone::ClientSettings::default()),
            identity,
            state,
            network,
            connect_timeout,
            source_ip,
        };
        let mut b = Client::builder(TokioExecutor::new());
        b.pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256);
        let http1 = b.build(connector.clone());
        let http2 = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(connector);
        Self { http1, http2 }
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        let trace = TRACE.try_with(|t| *t).ok();
        Box::pin(async move { this.open(&uri, trace).await.map(TokioIo::new) })
    }
}

impl Connector {
    async fn open(&self, uri: &Uri, trace: Option<TraceParent>) -> io::Result<Stream> {
        let addr: SocketAddr = uri
            .authority()
            .and_then(|a| a.as_str().parse().ok())
            .ok_or_else(|| io::Error::other(format!("{uri} does not name an endpoint ip:port")))?;
        let state = self.state.load();
        let mesh = state
            .workload_by_addr(&self.network, addr.ip())
            .filter(|w| w.protocol == TunnelProtocol::Hbone)
            .cloned();
        drop(state);
        match mesh {
            Some(w) => {
                let id = w.identity().map_err(io::Error::other)?;
                let mut dial = Dial::new(
                    self.identity.clone(),
                    w.hbone_addr(addr.ip()),
                    vec![id],
                    addr.into(),
                );
                dial.source_ip = self.source_ip;
                dial.traceparent = trace;
                let t = self.hbone.connect(&dial).await.map_err(io::Error::other)?;
                Ok(Stream::Tunnel(Box::new(t)))
            }
            None => {
                let s = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
                let _ = s.set_nodelay(true);
                Ok(Stream::Tcp(s))
            }
        }
    }
}

/// An upstream connection: an HBONE tunnel or a TCP socket.
#[derive(Debug)]
pub(crate) enum Stream {
    Tunnel(Box<Tunnel>),
    Tcp(TcpStream),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tunnel(t) => Pin::new(&mut **t).poll_read(cx, buf),
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tunnel(t) => Pin::new(&mut **t).poll_write(cx, buf),
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tunnel(t) => Pin::new(&mut **t).poll_flush(cx),
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tunnel(t) => Pin::new(&mut **t).poll_shutdown(cx),
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
