//! An HBONE server whose tunnels wait in a bounded queue for a host that takes them one at a
//! time (the C ABI, Python), each bridged to a socket the host owns.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ambit_identity::SpiffeId;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::{Authority, ConnectRequest, Responder, Server, ServerSettings};

/// One accepted tunnel: a socket bridged to it (closing it ends the tunnel), the client's
/// verified identity and the authority it asked for.
#[derive(Debug)]
#[non_exhaustive]
pub struct QueuedTunnel {
    /// The host's end of the bridge.
    pub socket: UnixStream,
    /// The client's SPIFFE id (from its certificate).
    pub peer_id: SpiffeId,
    /// The CONNECT `:authority`.
    pub authority: Authority,
}

/// An HBONE server that accepts every CONNECT and queues the tunnels for
/// [`TunnelQueue::try_accept`] / [`TunnelQueue::accept`]. At most `backlog` tunnels wait; a
/// CONNECT beyond that waits for room (the client sees a slow answer, never a lost tunnel).
/// After [`TunnelQueue::close`] new CONNECTs get 503 and waiting tunnels are closed.
///
/// [`TunnelQueue::ready_fd`] polls readable while a tunnel is waiting, for hosts that run
/// their own poll loop.
#[derive(Debug)]
pub struct TunnelQueue {
    addr: SocketAddr,
    rx: tokio::sync::Mutex<Option<mpsc::Receiver<QueuedTunnel>>>,
    /// One byte per tunnel queued; one is read per tunnel taken.
    ready_read: UnixStream,
    /// The write end, whose lock makes queueing a tunnel and writing its byte one step.
    ready_write: Arc<Mutex<UnixStream>>,
    server: Server<QueueHandler>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The handler behind [`TunnelQueue`]: accept, bridge, wait for room, queue.
#[derive(Debug, Clone)]
pub struct QueueHandler {
    tx: mpsc::Sender<QueuedTunnel>,
    ready_write: Arc<Mutex<UnixStream>>,
}

impl crate::Handler for QueueHandler {
    fn handle(
        &self,
        req: ConnectRequest,
        responder: Responder,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.clone().queue(req, responder)
    }
}

impl QueueHandler {
    async fn queue(self, req: ConnectRequest, responder: Responder) {
        if self.tx.is_closed() {
            responder.reject(http::StatusCode::SERVICE_UNAVAILABLE);
            return;
        }
        // Room first, so a tunnel is only accepted when it can be queued.
        let Ok(permit) = self.tx.reserve().await else {
            responder.reject(http::StatusCode::SERVICE_UNAVAILABLE);
            return;
        };
        let Ok(tunnel) = responder.accept(Default::default()) else {
            return;
        };
        // Handlers run on the runtime, where the bridge spawns its copy task.
        let Ok(socket) = crate::bridge_to_socketpair(tunnel) else {
            return;
        };
        // The tunnel and its byte are queued under the lock takers hold too, so a reader woken
        // by the byte always finds the tunnel, and a tunnel taken always has its byte.
        let ready = self.ready_write.lock().unwrap_or_else(|p| p.into_inner());
        permit.send(QueuedTunnel {
            socket,
            peer_id: req.peer_id,
            authority: req.authority,
        });
        let _ = (&*ready).write_all(&[1]);
    }
}

impl TunnelQueue {
    /// Listens on `addr` (port 0 = any) presenting `tls`, with room for `backlog` waiting
    /// tunnels (at least 1). Call on a tokio runtime.
    pub async fn bind(
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
        backlog: usize,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (ready_read, ready_write) = UnixStream::pair()?;
        ready_read.set_nonblocking(true)?;
        ready_write.set_nonblocking(true)?;
        let (tx, rx) = mpsc::channel(backlog.max(1));
        let ready_write = Arc::new(Mutex::new(ready_write));
        let handler = QueueHandler {
            tx,
            ready_write: ready_write.clone(),
        };
        let server = Server::new(tls, handler, ServerSettings::default());
        let serving = server.clone();
        // HBONE over HTTP/3 on the same port over UDP, when built in and the port is free.
        #[cfg(feature = "h3")]
        let udp = std::net::UdpSocket::bind(addr).ok();
        let task = tokio::spawn(async move {
            #[cfg(feature = "h3")]
            if let Some(udp) = udp {
                let _ = tokio::join!(serving.serve(listener), serving.serve_udp(udp));
                return;
            }
            let _ = serving.serve(listener).await;
        });
        Ok(Self {
            addr,
            rx: tokio::sync::Mutex::new(Some(rx)),
            ready_read,
            ready_write,
            server,
            task: Mutex::new(Some(task)),
        })
    }

    /// The address bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A descriptor that polls readable while a tunnel is waiting. Do not read it or close it.
    pub fn ready_fd(&self) -> BorrowedFd<'_> {
        self.ready_read.as_fd()
    }

    /// The next waiting tunnel, without waiting; `None` when none is (or the queue is closed).
    pub fn try_accept(&self) -> Option<QueuedTunnel> {
        let mut rx = self.rx.try_lock().ok()?;
        let _handoff = self.handoff();
        let t = rx.as_mut()?.try_recv().ok()?;
        self.consume_ready_byte();
        Some(t)
    }

    /// The next tunnel, waiting up to `timeout` (`None`: forever). `Ok(None)` once closed;
    /// `Err(TimedOut)` when the time ran out.
    pub async fn accept(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Option<QueuedTunnel>, tokio::time::error::Elapsed> {
        let next = async {
            let mut rx = self.rx.lock().await;
            match rx.as_mut() {
                Some(rx) => rx.recv().await,
                None => None,
            }
        };
        let next = match timeout {
            Some(t) => tokio::time::timeout(t, next).await?,
            None => next.await,
        };
        if next.is_some() {
            // The handler that queued it holds this lock until its byte is written.
            let _handoff = self.handoff();
            self.consume_ready_byte();
        }
        Ok(next)
    }

    /// Stops accepting connections, closes the tunnels still waiting, and lets the ones already
    /// handed out finish (their connections close when they have; at most `drain` is waited
    /// for in the background).
    pub async fn close(&self, drain: Duration) {
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = task {
            t.abort();
            let _ = t.await;
        }
        drop(self.rx.lock().await.take());
        let server = self.server.clone();
        tokio::spawn(async move { server.drain(drain).await });
    }

    fn handoff(&self) -> std::sync::MutexGuard<'_, UnixStream> {
        self.ready_write.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn consume_ready_byte(&self) {
        let mut b = [0u8; 1];
        let _ = (&self.ready_read).read(&mut b);
    }
}

impl Drop for TunnelQueue {
    fn drop(&mut self) {
        if let Some(t) = self.task.get_mut().ok().and_then(Option::take) {
            t.abort();
        }
    }
}
