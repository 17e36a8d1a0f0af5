//! The native half of the `ambit` Python package: thin wrappers over the `ambit` facade. No
//! mesh logic lives here; types and errors are converted, the GIL is released around
//! anything that waits, and one tokio runtime is shared by the whole process.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::IntoRawFd;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use facade::hbone::{Client, ClientSettings, Dial};
use facade::identity::{
    CaSource, CertificateAuthority as RustCa, Credentials as RustCredentials, SpiffeId as RustId,
    SystemClock, TrustDomain,
};
use facade::policy::{Connection, IstioPolicies, PolicySet, Target};
use facade::proxy::{NodeConfig, NodeProxy as RustNodeProxy};
use facade::tls::{CredentialCell, Provider, TlsContext};
use facade::xds::local;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    ambit,
    AmbitError,
    PyException,
    "Base class of every ambit error."
);
create_exception!(
    ambit,
    IdentityError,
    AmbitError,
    "A SPIFFE id, certificate or credential problem."
);
create_exception!(
    ambit,
    TlsError,
    AmbitError,
    "A TLS configuration or handshake problem."
);
create_exception!(
    ambit,
    TunnelError,
    AmbitError,
    "An HBONE tunnel could not be opened; `status` holds the HTTP status when the peer refused."
);
create_exception!(
    ambit,
    ConfigError,
    AmbitError,
    "Configuration (YAML, policy) was refused; the message names the object and field."
);

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

fn identity_err(e: impl std::fmt::Display) -> PyErr {
    IdentityError::new_err(e.to_string())
}

fn config_err(e: impl std::fmt::Display) -> PyErr {
    ConfigError::new_err(e.to_string())
}

/// A SPIFFE id, e.g. `spiffe://cluster.local/ns/default/sa/web`.
#[pyclass(frozen, module = "ambit")]
#[derive(Debug, Clone)]
struct SpiffeId(RustId);

#[pymethods]
impl SpiffeId {
    /// Parses a SPIFFE id (the scheme-less principal form `td/ns/x/sa/y` is accepted too).
    #[new]
    fn new(id: &str) -> PyResult<Self> {
        RustId::from_principal(id).map(Self).map_err(identity_err)
    }

    /// The trust domain.
    #[getter]
    fn trust_domain(&self) -> &str {
        self.0.trust_domain_name()
    }

    /// The Istio namespace, or None.
    #[getter]
    fn namespace(&self) -> Option<&str> {
        self.0.namespace()
    }

    /// The Istio service account, or None.
    #[getter]
    fn service_account(&self) -> Option<&str> {
        self.0.service_account()
    }

    /// The id without `spiffe://`, as Istio policies write principals.
    #[getter]
    fn principal(&self) -> &str {
        self.0.principal()
    }

    fn __str__(&self) -> &str {
        self.0.as_str()
    }

    fn __repr__(&self) -> String {
        format!("SpiffeId({:?})", self.0.as_str())
    }

    fn __eq__(&self, other: &Self) -> bool {
        self.0 == other.0
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.0.hash(&mut h);
        h.finish()
    }
}

/// A workload's certificate chain, key and trust bundle.
#[pyclass(frozen, module = "ambit")]
#[derive(Debug)]
struct Credentials {
    creds: RustCredentials,
    cell: Arc<CredentialCell>,
}

#[pymethods]
impl Credentials {
    /// Loads credentials from PEM text: chain (leaf first), key, and trusted roots.
    #[staticmethod]
    fn from_pem(chain_pem: &str, key_pem: &str, bundle_pem: &str) -> PyResult<Self> {
        let svid = facade::identity::Svid::from_pem(chain_pem.as_bytes(), key_pem.as_bytes())
            .map_err(identity_err)?;
        let bundle = facade::identity::TrustBundle::from_pem(
            svid.id().trust_domain(),
            bundle_pem.as_bytes(),
        )
        .map_err(identity_err)?;
        Self::wrap(RustCredentials::new(svid, bundle))
    }

    /// The SPIFFE id in the certificate.
    #[getter]
    fn id(&self) -> SpiffeId {
        SpiffeId(self.creds.svid.id().clone())
    }

    /// The certificate chain as PEM.
    #[getter]
    fn chain_pem(&self) -> String {
        self.creds.svid.chain_pem()
    }

    /// The private key as PEM.
    #[getter]
    fn key_pem(&self) -> String {
        self.creds.svid.key_pem()
    }

    /// The trusted roots as PEM.
    #[getter]
    fn bundle_pem(&self) -> String {
        self.creds.bundle.to_pem()
    }

    fn __repr__(&self) -> String {
        format!("Credentials({})", self.creds.svid.id())
    }
}

impl Credentials {
    fn wrap(creds: RustCredentials) -> PyResult<Self> {
        let cell = tls()
            .credential_cell(&creds)
            .map_err(|e| TlsError::new_err(e.to_string()))?;
        Ok(Self { creds, cell })
    }
}

/// A built-in certificate authority issuing Istio-shaped workload certificates.
#[pyclass(frozen, module = "ambit")]
#[derive(Debug)]
struct CertificateAuthority(Arc<RustCa>);

#[pymethods]
impl CertificateAuthority {
    /// A new CA for `trust_domain`.
    #[new]
    #[pyo3(signature = (trust_domain = "cluster.local"))]
    fn new(trust_domain: &str) -> PyResult<Self> {
        let td = TrustDomain::new(trust_domain).map_err(identity_err)?;
        RustCa::new(td)
            .map(|ca| Self(Arc::new(ca)))
            .map_err(identity_err)
    }

    /// The trust domain.
    #[getter]
    fn trust_domain(&self) -> &str {
        self.0.trust_domain().as_str()
    }

    /// The root certificate as PEM.
    #[getter]
    fn root_pem(&self) -> String {
        self.0.bundle().to_pem()
    }

    /// Issues credentials for `id` (a SpiffeId or string), valid for `ttl` seconds.
    #[pyo3(signature = (id, ttl = 86400.0))]
    fn issue(&self, py: Python<'_>, id: &Bound<'_, PyAny>, ttl: f64) -> PyResult<Credentials> {
        let id = as_id(id)?;
        let ca = self.0.clone();
        let creds = py
            .detach(move || ca.credentials(&id, Duration::from_secs_f64(ttl.max(1.0))))
            .map_err(identity_err)?;
        Credentials::wrap(creds)
    }
}

fn as_id(v: &Bound<'_, PyAny>) -> PyResult<RustId> {
    if let Ok(id) = v.extract::<PyRef<'_, SpiffeId>>() {
        return Ok(id.0.clone());
    }
    let s: String = v.extract()?;
    RustId::from_principal(&s).map_err(identity_err)
}

/// The outcome of one authorization decision.
#[pyclass(frozen, module = "ambit", get_all)]
#[derive(Debug, Clone)]
struct Decision {
    /// Whether the connection may proceed.
    allowed: bool,
    /// The deciding policy (`namespace/name`), or None.
    policy: Option<String>,
    /// Why, in words.
    reason: String,
}

#[pymethods]
impl Decision {
    fn __repr__(&self) -> String {
        format!(
            "Decision(allowed={}, policy={:?}, reason={:?})",
            self.allowed, self.policy, self.reason
        )
    }

    fn __bool__(&self) -> bool {
        self.allowed
    }
}

/// Compiled Istio L4 authorization policies (AuthorizationPolicy, PeerAuthentication).
#[pyclass(frozen, module = "ambit")]
#[derive(Debug)]
struct Policy {
    set: Arc<PolicySet>,
    warnings: Vec<String>,
}

#[pymethods]
impl Policy {
    /// Loads Istio YAML (one or more documents). Raises ConfigError naming object and field.
    #[staticmethod]
    #[pyo3(signature = (yaml, root_namespace = "istio-system"))]
    fn from_yaml(yaml: &str, root_namespace: &str) -> PyResult<Self> {
        let mut set = PolicySet::with_root_namespace(root_namespace);
        let loaded = IstioPolicies::parse(yaml, root_namespace).map_err(config_err)?;
        loaded.apply_to(&mut set);
        Ok(Self {
            set: Arc::new(set),
            warnings: loaded.warnings.iter().map(ToString::to_string).collect(),
        })
    }

    /// What the node proxy cannot enforce (HTTP attributes, waypoint-only policies...).
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    fn __len__(&self) -> usize {
        self.set.len()
    }

    /// Decides one connection to a workload in `namespace` (with `labels`) from `source`
    /// (a SpiffeId, principal string, or None for plaintext).
    #[pyo3(signature = (namespace, source, port, source_ip = "10.0.0.1", destination_ip = "10.0.0.2", labels = None))]
    fn evaluate(
        &self,
        namespace: &str,
        source: Option<&Bound<'_, PyAny>>,
        port: u16,
        source_ip: &str,
        destination_ip: &str,
        labels: Option<BTreeMap<String, String>>,
    ) -> PyResult<Decision> {
        let id = source.map(as_id).transpose()?;
        let parse_ip = |s: &str| {
            s.parse::<IpAddr>().map_err(|_| {
                pyo3::exceptions::PyValueError::new_err(format!("{s:?} is not an IP address"))
            })
        };
        let labels = labels.unwrap_or_default();
        let d = self.set.evaluate(
            Target {
                namespace,
                labels: &labels,
                policy_keys: &[],
            },
            &Connection {
                source_id: id.as_ref(),
                source_ip: parse_ip(source_ip)?,
                destination_ip: parse_ip(destination_ip)?,
                destination_port: port,
            },
        );
        Ok(Decision {
            allowed: d.allowed,
            reason: d.to_string(),
            policy: d.policy,
        })
    }
}

/// Opens an HBONE tunnel and returns a file descriptor bridged to it (the Python wrapper
/// turns it into a socket). Blocks without holding the GIL.
#[pyfunction]
fn hbone_connect_fd(
    py: Python<'_>,
    credentials: &Credentials,
    peer: &str,
    expected_id: &Bound<'_, PyAny>,
    authority: &str,
) -> PyResult<i32> {
    let peer: SocketAddr = peer.parse().map_err(|_| {
        pyo3::exceptions::PyValueError::new_err(format!("peer {peer:?} must be ip:port"))
    })?;
    let authority = authority
        .parse()
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("authority: {e}")))?;
    let expected = as_id(expected_id)?;
    let dial = Dial::new(credentials.cell.clone(), peer, vec![expected], authority);
    let rt = runtime();
    let mut task = rt.spawn(async move { client().connect(&dial).await });
    // Wait without the GIL, waking every 50 ms to let Python deliver Ctrl-C (KeyboardInterrupt
    // then cancels the dial instead of waiting out the connect timeout).
    let joined = loop {
        let waited = py.detach(|| {
            rt.block_on(async { tokio::time::timeout(Duration::from_millis(50), &mut task).await })
        });
        match waited {
            Ok(done) => break done,
            Err(_) => {
                if let Err(e) = py.check_signals() {
                    task.abort();
                    return Err(e);
                }
            }
        }
    };
    let result = py.detach(move || {
        let tunnel = joined
            .map_err(|e| (None, e.to_string()))?
            .map_err(|e| (e.status().map(|s| s.as_u16()), e.to_string()))?;
        let (ours, theirs) =
            std::os::unix::net::UnixStream::pair().map_err(|e| (None, e.to_string()))?;
        ours.set_nonblocking(true)
            .map_err(|e| (None, e.to_string()))?;
        let _g = rt.enter();
        let ours = tokio::net::UnixStream::from_std(ours).map_err(|e| (None, e.to_string()))?;
        rt.spawn(async move {
            let _ = facade::hbone::copy_tunnel(tunnel, ours).await;
        });
        Ok::<_, (Option<u16>, String)>(theirs.into_raw_fd())
    });
    result.map_err(|(status, msg)| {
        let err = TunnelError::new_err(msg);
        Python::attach(|py| {
            let _ = err.value(py).setattr("status", status);
        });
        err
    })
}

/// A node proxy (Istio ztunnel behaviour) running on the shared runtime.
#[pyclass(module = "ambit")]
#[derive(Debug)]
struct NodeProxy {
    proxy: Option<Arc<RustNodeProxy>>,
}

#[pymethods]
impl NodeProxy {
    /// Starts serving `config` (ztunnel local-config YAML) as `node`, issuing workload
    /// certificates from `ca`. Listener addresses are `ip:port` (port 0 = any) or None (off).
    #[new]
    #[pyo3(signature = (config, node, ca, socks5 = Some("127.0.0.1:0"), metrics = None, hbone_port = 15008))]
    fn new(
        py: Python<'_>,
        config: &str,
        node: &str,
        ca: &CertificateAuthority,
        socks5: Option<&str>,
        metrics: Option<&str>,
        hbone_port: u16,
    ) -> PyResult<Self> {
        let cfg = local::parse(config, "<config>").map_err(config_err)?;
        let addr = |s: Option<&str>| -> PyResult<Option<SocketAddr>> {
            s.map(|s| {
                s.parse().map_err(|_| {
                    pyo3::exceptions::PyValueError::new_err(format!("{s:?} must be ip:port"))
                })
            })
            .transpose()
        };
        let mut nc = NodeConfig::new(node);
        nc.socks5 = addr(socks5)?;
        nc.metrics = addr(metrics)?;
        nc.readiness = None;
        nc.admin = None;
        nc.inbound_port = hbone_port;
        let source = Arc::new(CaSource::new(
            ca.0.clone(),
            Duration::from_secs(24 * 3600),
            Arc::new(SystemClock),
        ));
        let started = py.detach(move || {
            let rt = runtime();
            rt.block_on(rt.spawn(async move {
                RustNodeProxy::start(nc, cfg.state, source, tls().clone()).await
            }))
        });
        match started {
            Ok(Ok(p)) => Ok(Self {
                proxy: Some(Arc::new(p)),
            }),
            Ok(Err(e)) => Err(AmbitError::new_err(e.to_string())),
            Err(e) => Err(AmbitError::new_err(e.to_string())),
        }
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
        let cfg = local::parse(config, "<config>").map_err(config_err)?;
        let proxy = self.get()?.clone();
        py.detach(move || {
            let rt = runtime();
            rt.block_on(rt.spawn(async move { proxy.sync(cfg.state).await }))
        })
        .map_err(|e| AmbitError::new_err(e.to_string()))
    }

    /// Stops the node proxy (idempotent).
    fn close(&mut self, py: Python<'_>) {
        if let Some(p) = self.proxy.take()
            && let Ok(p) = Arc::try_unwrap(p)
        {
            py.detach(move || {
                let rt = runtime();
                let _ = rt.block_on(rt.spawn(p.shutdown(Duration::from_secs(1))));
            });
        }
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
    ) {
        self.close(py);
    }
}

impl NodeProxy {
    fn get(&self) -> PyResult<&Arc<RustNodeProxy>> {
        self.proxy
            .as_ref()
            .ok_or_else(|| AmbitError::new_err("the node proxy is closed"))
    }
}

/// The native module behind `import ambit`.
#[pymodule(gil_used = false)]
mod _native {
    #[pymodule_export]
    use super::{
        AmbitError, CertificateAuthority, ConfigError, Credentials, Decision, IdentityError,
        NodeProxy, Policy, SpiffeId, TlsError, TunnelError, hbone_connect_fd,
    };

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        use pyo3::types::PyModuleMethods;
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
