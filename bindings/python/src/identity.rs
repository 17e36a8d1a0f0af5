//! SPIFFE ids, credentials and the built-in CA.

use std::sync::Arc;

use facade::identity::{
    CertificateAuthority as RustCa, Credentials as RustCredentials, SpiffeId as RustId, TrustDomain,
};
use facade::tls::CredentialCell;
use pyo3::prelude::*;

use crate::errors::ambit_err;
use crate::tls;

/// A SPIFFE id, e.g. `spiffe://cluster.local/ns/default/sa/web`.
#[pyclass(frozen, module = "ambit")]
#[derive(Debug, Clone)]
pub(crate) struct SpiffeId(pub(crate) RustId);

#[pymethods]
impl SpiffeId {
    /// Parses a SPIFFE id (the scheme-less principal form `td/ns/x/sa/y` is accepted too).
    #[new]
    fn new(id: &str) -> PyResult<Self> {
        RustId::from_principal(id).map(Self).map_err(ambit_err)
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
pub(crate) struct Credentials {
    creds: RustCredentials,
    pub(crate) cell: Arc<CredentialCell>,
}

#[pymethods]
impl Credentials {
    /// Loads credentials from PEM text: chain (leaf first), key, and trusted roots.
    #[staticmethod]
    fn from_pem(chain_pem: &str, key_pem: &str, bundle_pem: &str) -> PyResult<Self> {
        let svid = facade::identity::Svid::from_pem(chain_pem.as_bytes(), key_pem.as_bytes())
            .map_err(ambit_err)?;
        let bundle = facade::identity::TrustBundle::from_pem(
            svid.id().trust_domain(),
            bundle_pem.as_bytes(),
        )
        .map_err(ambit_err)?;
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
        let cell = tls().credential_cell(&creds).map_err(ambit_err)?;
        Ok(Self { creds, cell })
    }
}

/// A built-in certificate authority issuing Istio-shaped workload certificates.
#[pyclass(frozen, module = "ambit")]
#[derive(Debug)]
pub(crate) struct CertificateAuthority(Arc<RustCa>);

#[pymethods]
impl CertificateAuthority {
    /// A new CA for `trust_domain`.
    #[new]
    #[pyo3(signature = (trust_domain = "cluster.local"))]
    fn new(trust_domain: &str) -> PyResult<Self> {
        let td = TrustDomain::new(trust_domain).map_err(ambit_err)?;
        RustCa::new(td)
            .map(|ca| Self(Arc::new(ca)))
            .map_err(ambit_err)
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
        let ttl = crate::convert::duration(ttl.max(1.0), "ttl")?;
        let ca = self.0.clone();
        let creds = py
            .detach(move || ca.credentials(&id, ttl))
            .map_err(ambit_err)?;
        Credentials::wrap(creds)
    }
}

impl CertificateAuthority {
    /// A credential source issuing day-long certificates from this CA (for the proxies).
    /// The CA itself, shared.
    pub(crate) fn inner(&self) -> Arc<RustCa> {
        self.0.clone()
    }
}

/// A SpiffeId, or a string parsed as one.
pub(crate) fn as_id(v: &Bound<'_, PyAny>) -> PyResult<RustId> {
    if let Ok(id) = v.extract::<PyRef<'_, SpiffeId>>() {
        return Ok(id.0.clone());
    }
    let s: String = v.extract()?;
    RustId::from_principal(&s).map_err(ambit_err)
}
