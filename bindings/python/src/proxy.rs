//! The node proxy and the waypoint, running on the shared runtime.

use std::sync::Arc;
use std::time::Duration;

use facade::node::{NodeConfig, NodeProxy as RustNodeProxy};
use facade::waypoint::{L7Config, Waypoint as RustWaypoint, WaypointConfig};
use pyo3::prelude::*;

use crate::convert::opt_socket_addr;
use crate::errors::{AmbitError, ambit_err};
use crate::identity::{CertificateAuthority, SpiffeId, as_id};
use crate::{run_to_end, tls, wait};

/// How long `close()` lets open connections finish.
const CLOSE_DEADLINE: Duration = Duration::from_secs(1);

/// A node proxy (Istio ztunnel behaviour) running on the shared runtime.
#[pyclass(module = "ambit")]
#[derive(Debug)]
pub(crate) struct NodeProxy {
    proxy: Option<Arc<RustNodeProxy>>,
}

#[pymethods]
impl NodeProxy {
    /// Starts serving `config` (ztunnel local-config YAML) as `node`, issuing workload
    /// certificates from `ca`. Listener addresses are `ip:port` (port 0 = any) or None (off).
    #[new]
    #[pyo3(
        signature = (config, node, ca, socks5 = Some("127.0.0.1:0"), metrics = None, hbone_port = 15008),
        text_signature = "(config, node, ca, socks5='127.0.0.1:0', metrics=None, hbone_port=15008)"
    )]
    fn new(
        py: Python<'_>,
        config: &str,
        node: &str,
        ca: &CertificateAuthority,
        socks5: Option<&str>,
        metrics: Option<&str>,
        hbone_port: u16,
    ) -> PyResult<Self> {
        let config = config.to_owned();
        let mut nc = NodeConfig::new(node);
        nc.socks5 = opt_socket_addr(socks5, "socks5")?;
        nc.metrics = opt_socket_addr(metrics, "metrics")?;
        nc.readiness = None;
        nc.admin = None;
        nc.inbound_port = hbone_port;
        let ca = ca.inner();
        let proxy = wait(py, async move {
            facade::run::node_proxy(nc, &config, ca, tls().clone()).await
        })?
        .map_err(ambit_err)?;
        Ok(Self {
            proxy: Some(Arc::new(proxy)),
        })
    }

    /// The SOCKS5 address as `ip:port`, or None.
    #[getter]
    fn socks5_address(&self) -> PyResult<Option<String>> {
        Ok(self.get()?.bound().socks5.map(|a| a.to_string()))
    }

    /// The metrics address as `ip:port`, or None.
    #[getter]
    fn metrics_address(&self) -> PyResult<Option<String>> {
        Ok(self.get()?.bound().metrics.map(|a| a.to_string()))
    }

    /// Metrics in Prometheus text format.
    fn metrics(&self) -> PyResult<String> {
        Ok(self.get()?.metrics())
    }

    /// Replaces the config; invalid YAML raises ConfigError and changes nothing. Returns how
    /// many open connections the new policies closed.
    fn reload(&self, py: Python<'_>, config: &str) -> PyResult<usize> {
        let state =
            facade::run::local_state(config, facade::run::CONFIG_TEXT).map_err(ambit_err)?;
        let proxy = self.get()?.clone();
        wait(py, async move { proxy.sync(state).await })
    }

    /// Stops the node proxy (idempotent).
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        if let Some(p) = self.proxy.take()
            && let Ok(p) = Arc::try_unwrap(p)
        {
            run_to_end(py, p.shutdown(CLOSE_DEADLINE))?;
        }
        Ok(())
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __exit__(
        &mut self,
        py: Python<'_>,
        _t: Option<Py<PyAny>>,
        _v: Option<Py<PyAny>>,
        _tb: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        self.close(py)
    }
}

impl NodeProxy {
    fn get(&self) -> PyResult<&Arc<RustNodeProxy>> {
        self.proxy
            .as_ref()
            .ok_or_else(|| AmbitError::new_err("the node proxy is closed"))
    }
}

/// Loads L7 YAML (HTTPRoute, AuthorizationPolicy, RequestAuthentication in any mix).
fn load_l7(yaml: &str, root_namespace: &str) -> PyResult<(L7Config, Vec<String>)> {
    facade::run::l7_config(yaml, facade::run::L7_TEXT, root_namespace)
        .map(|(l7, w)| (l7, w.iter().map(ToString::to_string).collect()))
        .map_err(ambit_err)
}

/// A waypoint (Istio ambient's L7 proxy) running on the shared runtime: HBONE in with its own
/// identity, JWT authentication, L7 authorization, HTTPRoute, HBONE out to the endpoints.
#[pyclass(module = "ambit")]
#[derive(Debug)]
pub(crate) struct Waypoint {
    waypoint: Option<Arc<RustWaypoint>>,
    identity: SpiffeId,
    root_namespace: String,
    warnings: Vec<String>,
}

#[pymethods]
impl Waypoint {
    /// Starts the waypoint `namespace/name` for the mesh in `config` (ztunnel local-config
    /// YAML, the same shape NodeProxy takes: services and workloads name their waypoint with
    /// `waypoint: {destination: "network/IP"}`), enforcing `l7` (HTTPRoute, AuthorizationPolicy
    /// and RequestAuthentication YAML). HBONE listens on `hbone` (`ip:port`: the waypoint's
    /// address in `config`, port 15008 unless the config says otherwise). Its identity
    /// defaults to `spiffe://<trust domain>/ns/<namespace>/sa/<name>`, issued by `ca`.
    /// Raises ConfigError for bad YAML.
    #[new]
    #[pyo3(signature = (
        config, l7, ca, hbone, *, name = "waypoint", namespace = "default", identity = None,
        metrics = None, network = "", root_namespace = "istio-system"
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        config: &str,
        l7: &str,
        ca: &CertificateAuthority,
        hbone: &str,
        name: &str,
        namespace: &str,
        identity: Option<&Bound<'_, PyAny>>,
        metrics: Option<&str>,
        network: &str,
        root_namespace: &str,
    ) -> PyResult<Self> {
        let (config, l7) = (config.to_owned(), l7.to_owned());
        let identity = match identity {
            Some(id) => as_id(id)?,
            None => {
                facade::run::waypoint_identity(&ca.inner(), namespace, name).map_err(ambit_err)?
            }
        };
        let mut wc = WaypointConfig::new(name, namespace, identity.clone());
        wc.network = network.to_owned();
        wc.hbone = crate::convert::socket_addr(hbone, "hbone")?;
        wc.metrics = opt_socket_addr(metrics, "metrics")?;
        wc.readiness = None;
        let (ca, root) = (ca.inner(), root_namespace.to_owned());
        let (waypoint, warnings) = wait(py, async move {
            facade::run::waypoint(wc, &config, &l7, &root, ca, tls().clone()).await
        })?
        .map_err(ambit_err)?;
        let warnings = warnings.iter().map(ToString::to_string).collect();
        Ok(Self {
            waypoint: Some(Arc::new(waypoint)),
            identity: SpiffeId(identity),
            root_namespace: root_namespace.to_owned(),
            warnings,
        })
    }

    /// The HBONE address as `ip:port`.
    #[getter]
    fn hbone_address(&self) -> PyResult<Option<String>> {
        Ok(self.get()?.bound().hbone.map(|a| a.to_string()))
    }

    /// The metrics address as `ip:port`, or None.
    #[getter]
    fn metrics_address(&self) -> PyResult<Option<String>> {
        Ok(self.get()?.bound().metrics.map(|a| a.to_string()))
    }

    /// The waypoint's SPIFFE id.
    #[getter]
    fn identity(&self) -> SpiffeId {
        self.identity.clone()
    }

    /// What the L7 YAML last loaded had that was skipped or accepted with a caveat.
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    /// Metrics in Prometheus text format (`istio_requests_total{reporter="waypoint",...}`...).
    fn metrics(&self) -> PyResult<String> {
        Ok(self.get()?.metrics())
    }

    /// Replaces the mesh state (local-config YAML); invalid YAML raises ConfigError and
    /// changes nothing.
    fn reload(&self, config: &str) -> PyResult<()> {
        let state =
            facade::run::local_state(config, facade::run::CONFIG_TEXT).map_err(ambit_err)?;
        self.get()?.update_state(state);
        Ok(())
    }

    /// Replaces the routes and policies; invalid YAML raises ConfigError and changes nothing.
    /// Returns the new config's warnings. Key sets already fetched stay in use.
    fn reload_l7(&mut self, l7: &str) -> PyResult<Vec<String>> {
        let (l7, warnings) = load_l7(l7, &self.root_namespace)?;
        self.get()?.update_l7(l7);
        self.warnings = warnings.clone();
        Ok(warnings)
    }

    /// Fetches every remote JWKS (`jwksUri`) the config names now; raises AmbitError with the
    /// first failure.
    fn refresh_jwks(&self, py: Python<'_>) -> PyResult<()> {
        let w = self.get()?.clone();
        wait(py, async move { w.refresh_jwks().await })?.map_err(AmbitError::new_err)
    }

    /// Stops the waypoint (idempotent).
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        if let Some(w) = self.waypoint.take()
            && let Ok(w) = Arc::try_unwrap(w)
        {
            run_to_end(py, w.shutdown(CLOSE_DEADLINE))?;
        }
        Ok(())
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __exit__(
        &mut self,
        py: Python<'_>,
        _t: Option<Py<PyAny>>,
        _v: Option<Py<PyAny>>,
        _tb: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        self.close(py)
    }
}

impl Waypoint {
    fn get(&self) -> PyResult<&Arc<RustWaypoint>> {
        self.waypoint
            .as_ref()
            .ok_or_else(|| AmbitError::new_err("the waypoint is closed"))
    }
}
