//! HBONE tunnels as file descriptors (the Python package wraps them as sockets): dialing, and
//! a listener handing accepted tunnels out one by one.

use std::net::SocketAddr;
use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use facade::hbone::{ConnectRequest, Dial, Responder, Server, ServerSettings};
use facade::tls::ServerOptions;
use pyo3::exceptions::PyTimeoutError;
use pyo3::prelude::*;
use tokio::sync::mpsc;

use crate::convert::{self, socket_addr};
use crate::errors::{AmbitError, ambit_err, value_err};
use crate::identity::{Credentials, SpiffeId, as_id};
use crate::{SIGNAL_SLICE, client, runtime, tls, wait};

/// Opens an HBONE tunnel and returns a file descriptor bridged to it (the Python wrapper
/// turns it into a socket). Blocks without holding the GIL; Ctrl-C cancels the dial.
#[pyfunction]
pub(crate) fn hbone_connect_fd(
    py: Python<'_>,
    credentials: &Credentials,
    peer: &str,
    expected_id: &Bound<'_, PyAny>,
    authority: &str,
) -> PyResult<i32> {
    let peer = socket_addr(peer, "peer")?;
    let authority = authority
        .parse()
        .map_err(|e| value_err(format!("authority: {e}")))?;
    let expected = as_id(expected_id)?;
    let dial = Dial::new(credentials.cell.clone(), peer, vec![expected], authority);
    let bridged = wait(py, async move {
        let tunnel = client().connect(&dial).await.map_err(Failed::Dial)?;
        // On the runtime, where the bridge spawns its copy task.
        facade::hbone::bridge_to_socketpair(tunnel).map_err(Failed::Bridge)
    })?;
    let bridged = bridged.map_err(|e| match e {
        Failed::Dial(e) => ambit_err(e),
        Failed::Bridge(e) => AmbitError::new_err(format!("cannot bridge the tunnel: {e}")),
    })?;
    Ok(bridged.into_raw_fd())
}

/// Why a dial failed (turned into a Python exception back on the calling thread).
enum Failed {
    Dial(facade::hbone::HboneError),
    Bridge(std::io::Error),
}

/// One accepted tunnel waiting for Python.
struct Accepted {
    socket: UnixStream,
    peer: SpiffeId,
    authority: String,
}

/// An HBONE server presenting `credentials`: every CONNECT is accepted and queued, and
/// `accept` hands the tunnels out as file descriptors with the client's SPIFFE id and the
/// requested authority.
#[pyclass(frozen, module = "ambit")]
pub(crate) struct HboneListener {
    address: SocketAddr,
    /// None once closed.
    queue: Mutex<Option<mpsc::Receiver<Accepted>>>,
    /// The accept loop; ends when the server drains.
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Starts the server's drain (taken once).
    drain: Mutex<Option<Drain>>,
}

/// Starts a graceful drain of the listener's server on the runtime.
type Drain = Box<dyn FnOnce() + Send>;

/// How long a closed listener's connections may carry the tunnels already handed out.
const DRAIN_DEADLINE: Duration = Duration::from_secs(24 * 3600);

impl std::fmt::Debug for HboneListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HboneListener")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accepted")
            .field("peer", &self.peer)
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

/// How many accepted tunnels may wait for `accept` before new CONNECTs wait too.
const BACKLOG: usize = 64;

#[pymethods]
impl HboneListener {
    /// Listens on `address` (`ip:port`, port 0 = any) with `credentials`.
    #[new]
    #[pyo3(signature = (credentials, address = "127.0.0.1:0"))]
    fn new(py: Python<'_>, credentials: &Credentials, address: &str) -> PyResult<Self> {
        let bind = socket_addr(address, "address")?;
        let config = tls()
            .server_config(&credentials.cell, &ServerOptions::default())
            .map_err(ambit_err)?;
        let listener = wait(py, tokio::net::TcpListener::bind(bind))?
            .map_err(|e| AmbitError::new_err(format!("cannot listen on {bind}: {e}")))?;
        let address = listener
            .local_addr()
            .map_err(|e| AmbitError::new_err(format!("listener address: {e}")))?;
        let (tx, rx) = mpsc::channel::<Accepted>(BACKLOG);
        let handler = move |req: ConnectRequest, responder: Responder| {
            let tx = tx.clone();
            async move {
                if tx.is_closed() {
                    responder.reject(facade::hbone::http::StatusCode::SERVICE_UNAVAILABLE);
                    return;
                }
                let Ok(tunnel) = responder.accept(Default::default()) else {
                    return;
                };
                // Handlers run on the runtime, where the bridge spawns its copy task.
                let Ok(socket) = facade::hbone::bridge_to_socketpair(tunnel) else {
                    return;
                };
                // A closed listener drops the socket, which ends the tunnel.
                let _ = tx
                    .send(Accepted {
                        socket,
                        peer: SpiffeId(req.peer_id),
                        authority: req.authority.to_string(),
                    })
                    .await;
            }
        };
        let server = Server::new(config, handler, ServerSettings::default());
        let serving = server.clone();
        let task = runtime().spawn(async move {
            let _ = serving.serve(listener).await;
        });
        // Draining stops the accept loop and sends GOAWAY on every connection: no new tunnels,
        // and each connection closes once the tunnels it carries have ended.
        let drain: Drain = Box::new(move || {
            runtime().spawn(async move { server.drain(DRAIN_DEADLINE).await });
        });
        Ok(Self {
            address,
            queue: Mutex::new(Some(rx)),
            task: Mutex::new(Some(task)),
            drain: Mutex::new(Some(drain)),
        })
    }

    /// The bound address as `ip:port`.
    #[getter]
    fn address(&self) -> String {
        self.address.to_string()
    }

    /// The next tunnel as `(fd, peer SpiffeId, authority)`; the fd is yours to close. Waits
    /// up to `timeout` seconds (None: forever; TimeoutError after) without the GIL; Ctrl-C
    /// interrupts. Returns None once the listener is closed.
    #[pyo3(signature = (timeout = None))]
    fn accept(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
    ) -> PyResult<Option<(i32, SpiffeId, String)>> {
        let deadline = timeout
            .map(|t| convert::duration(t, "timeout").map(|d| Instant::now() + d))
            .transpose()?;
        loop {
            let slice = deadline.map_or(SIGNAL_SLICE, |d| {
                d.saturating_duration_since(Instant::now())
                    .min(SIGNAL_SLICE)
            });
            let got = py.detach(|| {
                let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                let Some(rx) = queue.as_mut() else {
                    return Ok(None);
                };
                runtime().block_on(async { tokio::time::timeout(slice, rx.recv()).await })
            });
            match got {
                Ok(Some(a)) => {
                    return Ok(Some((a.socket.into_raw_fd(), a.peer, a.authority)));
                }
                Ok(None) => return Ok(None),
                Err(_) => {
                    py.check_signals()?;
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(PyTimeoutError::new_err("no HBONE tunnel in time"));
                    }
                }
            }
        }
    }

    /// Stops listening: no new connections; tunnels not yet accepted are closed; tunnels
    /// already handed out keep working (idempotent).
    fn close(&self, py: Python<'_>) {
        // The locks are taken without the GIL: an `accept` in another thread holds the queue
        // for up to one wait slice.
        py.detach(|| {
            let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
            let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(t) = task {
                t.abort();
                // Wait for the accept loop to let go of the listening socket.
                let _ = runtime()
                    .block_on(async { tokio::time::timeout(Duration::from_secs(1), t).await });
            }
            drop(queue);
        });
    }

    fn __repr__(&self) -> String {
        format!("HboneListener({})", self.address)
    }
}

impl Drop for HboneListener {
    fn drop(&mut self) {
        if let Some(drain) = self.drain.get_mut().ok().and_then(Option::take) {
            drain();
        }
    }
}
