//! HBONE tunnels as file descriptors (the Python package wraps them as sockets): dialing, and
//! a listener handing accepted tunnels out one by one.

use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use facade::hbone::{Dial, TunnelQueue};
use facade::tls::ServerOptions;
use pyo3::exceptions::PyTimeoutError;
use pyo3::prelude::*;

use crate::convert::{self, socket_addr};
use crate::errors::{AmbitError, ambit_err, value_err};
use crate::identity::{Credentials, SpiffeId, as_id};
use crate::{SIGNAL_SLICE, client, runtime, tls, wait};

/// Opens an HBONE tunnel and returns a file descriptor bridged to it (the Python wrapper
/// turns it into a socket). `transport` is `"h2"` or `"h3"` (HTTP/3, falling back to HTTP/2
/// when the peer does not answer QUIC). Blocks without holding the GIL; Ctrl-C cancels the
/// dial.
#[pyfunction]
#[pyo3(signature = (credentials, peer, expected_id, authority, transport = "h2"))]
pub(crate) fn hbone_connect_fd(
    py: Python<'_>,
    credentials: &Credentials,
    peer: &str,
    expected_id: &Bound<'_, PyAny>,
    authority: &str,
    transport: &str,
) -> PyResult<i32> {
    let dial = dial_for(credentials, peer, expected_id, authority, transport)?;
    let bridged = wait(py, async move {
        let tunnel = client().connect(&dial).await.map_err(Failed::Dial)?;
        // On the runtime, where the bridge spawns its copy task.
        facade::hbone::bridge_to_socketpair(tunnel)
            .map(OwnedFd::from)
            .map_err(Failed::Bridge)
    })?;
    hand_out(bridged)
}

/// Opens a UDP flow (CONNECT-UDP) to `target` (`ip:port`) and returns one end of a
/// `SOCK_SEQPACKET` socketpair bridged to it: each message one datagram, a read of 0 bytes
/// the flow's end. `transport` as for `hbone_connect_fd`.
#[pyfunction]
#[pyo3(signature = (credentials, peer, expected_id, target, transport = "h2"))]
pub(crate) fn hbone_connect_udp_fd(
    py: Python<'_>,
    credentials: &Credentials,
    peer: &str,
    expected_id: &Bound<'_, PyAny>,
    target: &str,
    transport: &str,
) -> PyResult<i32> {
    let dial = dial_for(credentials, peer, expected_id, target, transport)?;
    let bridged = wait(py, async move {
        let flow = client().connect_udp(&dial).await.map_err(Failed::Dial)?;
        // On the runtime, where the bridge spawns its pump.
        facade::hbone::bridge_udp_to_socketpair(flow).map_err(Failed::Bridge)
    })?;
    hand_out(bridged)
}

/// The dial both connect functions make from their arguments.
fn dial_for(
    credentials: &Credentials,
    peer: &str,
    expected_id: &Bound<'_, PyAny>,
    authority: &str,
    transport: &str,
) -> PyResult<Dial> {
    let peer = socket_addr(peer, "peer")?;
    let authority = authority
        .parse()
        .map_err(|e| value_err(format!("authority: {e}")))?;
    let expected = as_id(expected_id)?;
    let mut dial = Dial::new(credentials.cell.clone(), peer, vec![expected], authority);
    dial.transport = match transport {
        "h2" => facade::hbone::Transport::Http2,
        "h3" => facade::hbone::Transport::Http3,
        other => {
            return Err(value_err(format!(
                "transport must be \"h2\" or \"h3\", not {other:?}"
            )));
        }
    };
    Ok(dial)
}

/// The bridged descriptor, or the dial's failure as a Python exception.
fn hand_out(bridged: Result<OwnedFd, Failed>) -> PyResult<i32> {
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

/// An HBONE server presenting `credentials` (ambit-hbone's `TunnelQueue`): every CONNECT is
/// accepted and queued, and `accept` hands the tunnels out as file descriptors with the
/// client's SPIFFE id and the requested authority.
#[pyclass(frozen, module = "ambit")]
pub(crate) struct HboneListener {
    address: SocketAddr,
    /// None once closed.
    queue: Mutex<Option<Arc<TunnelQueue>>>,
}

/// How long a closed listener's connections may carry the tunnels already handed out: as long
/// as they last (Python closes the sockets).
const DRAIN_DEADLINE: Duration = Duration::from_secs(24 * 3600);

/// How many accepted tunnels may wait for `accept` before new CONNECTs wait too.
const BACKLOG: usize = 64;

impl std::fmt::Debug for HboneListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HboneListener")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

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
        let queue = wait(py, TunnelQueue::bind(bind, config, BACKLOG))?
            .map_err(|e| AmbitError::new_err(format!("cannot listen on {bind}: {e}")))?;
        Ok(Self {
            address: queue.local_addr(),
            queue: Mutex::new(Some(Arc::new(queue))),
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
            let Some(queue) = self.queue() else {
                return Ok(None);
            };
            let slice = deadline.map_or(SIGNAL_SLICE, |d| {
                d.saturating_duration_since(Instant::now())
                    .min(SIGNAL_SLICE)
            });
            let got = py.detach(|| runtime().block_on(queue.accept(Some(slice))));
            match got {
                Ok(Some(t)) => {
                    let fd = t.socket.into_raw_fd();
                    return Ok(Some((fd, SpiffeId(t.peer_id), t.authority.to_string())));
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
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(q) = queue {
            // Without the GIL: an `accept` in another thread may hold the queue for a slice.
            py.detach(|| runtime().block_on(q.close(DRAIN_DEADLINE)));
        }
    }

    fn __repr__(&self) -> String {
        format!("HboneListener({})", self.address)
    }
}

impl HboneListener {
    fn queue(&self) -> Option<Arc<TunnelQueue>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for HboneListener {
    fn drop(&mut self) {
        if let Some(q) = self.queue.get_mut().ok().and_then(Option::take) {
            runtime().spawn(async move { q.close(DRAIN_DEADLINE).await });
        }
    }
}
