//! The native half of the `ambit` Python package: thin wrappers over the `ambit` facade. No
//! mesh logic lives here; types and errors are converted, the GIL is released around
//! anything that waits, and one tokio runtime is shared by the whole process.
//!
//! | module | Python |
//! |---|---|
//! | `errors` | `AmbitError` and its subclasses, built from `ambit::Error` |
//! | `identity` | `SpiffeId`, `Credentials`, `CertificateAuthority` |
//! | `policy` | `Policy` (L4), `L7Policies`, `Authenticators` (JWT), `RequestAuth` |
//! | `route` | `Router` (Gateway API HTTPRoute) |
//! | `hbone` | `hbone_connect_fd`, `hbone_connect_udp_fd`, `HboneListener` (wrapped as `ambit.hbone`) |
//! | `proxy` | `NodeProxy`, `Waypoint` |
#![forbid(unsafe_code)]

mod convert;
mod errors;
mod hbone;
mod identity;
mod policy;
mod proxy;
mod route;

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use facade::hbone::{Client, ClientSettings};
use facade::tls::{Provider, TlsContext};
use pyo3::prelude::*;

use crate::errors::AmbitError;

/// How often a blocking wait wakes up to let Python deliver Ctrl-C.
const SIGNAL_SLICE: Duration = Duration::from_millis(50);

/// The process-wide runtime all bindings share (created on first use).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ambit")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("ambit: cannot start the tokio runtime: {e}"))
    })
}

fn tls() -> &'static TlsContext {
    static TLS: OnceLock<TlsContext> = OnceLock::new();
    TLS.get_or_init(|| TlsContext::new(Provider::default()))
}

fn client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| Client::new(tls().clone(), ClientSettings::default()))
}

/// Runs `fut` on the shared runtime and waits for it without the GIL, waking every 50 ms so
/// that Ctrl-C raises KeyboardInterrupt promptly (the task is then aborted).
fn wait<T: Send + 'static>(
    py: Python<'_>,
    fut: impl Future<Output = T> + Send + 'static,
) -> PyResult<T> {
    let rt = runtime();
    let mut task = rt.spawn(fut);
    loop {
        let waited = py
            .detach(|| rt.block_on(async { tokio::time::timeout(SIGNAL_SLICE, &mut task).await }));
        match waited {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => return Err(AmbitError::new_err(format!("ambit task failed: {e}"))),
            Err(_) => {
                if let Err(e) = py.check_signals() {
                    task.abort();
                    return Err(e);
                }
            }
        }
    }
}

/// Runs `fut` on the shared runtime to completion without the GIL and without interruption
/// (for shutdowns, which must not be left half done).
fn run_to_end<T: Send + 'static>(
    py: Python<'_>,
    fut: impl Future<Output = T> + Send + 'static,
) -> PyResult<T> {
    py.detach(move || {
        let rt = runtime();
        rt.block_on(rt.spawn(fut))
    })
    .map_err(|e| AmbitError::new_err(format!("ambit task failed: {e}")))
}

/// The native module behind `import ambit`.
#[pymodule(gil_used = false)]
mod _native {
    #[pymodule_export]
    use super::errors::{AmbitError, ConfigError, IdentityError, TlsError, TunnelError};
    #[pymodule_export]
    use super::hbone::{HboneListener, hbone_connect_fd, hbone_connect_udp_fd};
    #[pymodule_export]
    use super::identity::{CertificateAuthority, Credentials, SpiffeId};
    #[pymodule_export]
    use super::policy::{
        Authenticators, AuthnResult, Decision, L7Decision, L7Policies, Policy, RequestAuth,
    };
    #[pymodule_export]
    use super::proxy::{NodeProxy, Waypoint};
    #[pymodule_export]
    use super::route::{Retry, RouteResult, Router};

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        use pyo3::types::PyModuleMethods;
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
