//! Where credentials come from: PEM files, the built-in CA, and later the Istio CA or SPIRE.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::bundle::TrustBundle;
use crate::ca::CertificateAuthority;
use crate::clock::Clock;
use crate::spiffe::{SpiffeId, TrustDomain};
use crate::svid::{Credentials, Svid};

/// A provider of workload credentials. Implementations must be cheap to call repeatedly:
/// the [`CredentialManager`](crate::CredentialManager) calls `fetch` at every renewal.
pub trait CredentialSource: Send + Sync + fmt::Debug {
    /// Produces current credentials for `id`.
    fn fetch(
        &self,
        id: &SpiffeId,
    ) -> Pin<Box<dyn Future<Output = Result<Credentials, CredentialError>> + Send + '_>>;

    /// How often to re-fetch to notice external changes (files rewritten by another process),
    /// on top of renewal at half-life. `None` means only at half-life.
    fn poll_interval(&self) -> Option<Duration> {
        None
    }
}

/// Why credentials could not be obtained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// A credential file could not be read or parsed.
    #[error("{}: {detail}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        detail: String,
    },
    /// The source holds credentials for another identity.
    #[error("asked for credentials of {requested} but {source_name} holds {found}")]
    IdentityMismatch {
        /// What was asked for.
        requested: SpiffeId,
        /// What the source has.
        found: SpiffeId,
        /// The source, for the message.
        source_name: String,
    },
    /// The built-in CA refused.
    #[error("built-in CA: {0}")]
    Ca(#[from] crate::ca::CaError),
    /// A remote source could not be reached or refused; retried with backoff.
    #[error("credential source unavailable: {detail}")]
    Unavailable {
        /// What happened.
        detail: String,
    },
}

/// Issues credentials from an in-process [`CertificateAuthority`].
#[derive(Debug, Clone)]
pub struct CaSource {
    ca: Arc<CertificateAuthority>,
    ttl: Duration,
    clock: Arc<dyn Clock>,
}

/// Reads an SVID and a bundle from PEM files, re-reading them to notice rotation by another
/// process (cert-manager, a SPIFFE helper, a Kubernetes secret mount).
#[derive(Debug, Clone)]
pub struct PemFileSource {
    chain: PathBuf,
    key: PathBuf,
    bundle: PathBuf,
    bundle_trust_domain: Option<TrustDomain>,
    poll: Duration,
}

// === impl CaSource ===

impl CaSource {
    /// Issues certificates of lifetime `ttl`, dated by `clock`.
    pub fn new(ca: Arc<CertificateAuthority>, ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        Self { ca, ttl, clock }
    }

    /// Issues workload certificates as Istio's CA does by default: lifetime
    /// [`DEFAULT_WORKLOAD_TTL`](crate::DEFAULT_WORKLOAD_TTL) (24 h), system clock.
    pub fn with_default_ttl(ca: Arc<CertificateAuthority>) -> Self {
        Self::new(
            ca,
            crate::DEFAULT_WORKLOAD_TTL,
            Arc::new(crate::SystemClock),
        )
    }
}

impl CredentialSource for CaSource {
    fn fetch(
        &self,
        id: &SpiffeId,
    ) -> Pin<Box<dyn Future<Output = Result<Credentials, CredentialError>> + Send + '_>> {
        let result = self
            .ca
            .issue_at(id, self.clock.now(), self.ttl)
            .map(|svid| Credentials::new(svid, self.ca.bundle()))
            .map_err(CredentialError::from);
        Box::pin(std::future::ready(result))
    }
}

// === impl PemFileSource ===

impl PemFileSource {
    /// Default interval between re-reads of the files.
    pub const DEFAULT_POLL: Duration = Duration::from_secs(5);

    /// Reads the chain (leaf first), key and bundle from these files. The bundle's roots are
    /// trusted for the trust domain of the SVID unless [`with_bundle_trust_domain`] says
    /// otherwise.
    ///
    /// [`with_bundle_trust_domain`]: Self::with_bundle_trust_domain
    pub fn new(
        chain: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        bundle: impl Into<PathBuf>,
    ) -> Self {
        Self {
            chain: chain.into(),
            key: key.into(),
            bundle: bundle.into(),
            bundle_trust_domain: None,
            poll: Self::DEFAULT_POLL,
        }
    }

    /// Trusts the bundle's roots for `td` instead of the SVID's trust domain.
    pub fn with_bundle_trust_domain(mut self, td: TrustDomain) -> Self {
        self.bundle_trust_domain = Some(td);
        self
    }

    /// Re-reads the files every `every` (default [`Self::DEFAULT_POLL`]).
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// Reads and checks the files now.
    pub fn load(&self) -> Result<Credentials, CredentialError> {
        let chain = read(&self.chain)?;
        let key = read(&self.key)?;
        let bundle_pem = read(&self.bundle)?;
        let svid = Svid::from_pem(&chain, &key).map_err(|e| CredentialError::File {
            path: match e {
                crate::svid::SvidError::NoKey => self.key.clone(),
                _ => self.chain.clone(),
            },
            detail: e.to_string(),
        })?;
        let td = self
            .bundle_trust_domain
            .clone()
            .unwrap_or_else(|| svid.id().trust_domain());
        let bundle = TrustBundle::from_pem(td, &bundle_pem).map_err(|e| CredentialError::File {
            path: self.bundle.clone(),
            detail: e.to_string(),
        })?;
        Ok(Credentials::new(svid, bundle))
    }
}

impl CredentialSource for PemFileSource {
    fn fetch(
        &self,
        id: &SpiffeId,
    ) -> Pin<Box<dyn Future<Output = Result<Credentials, CredentialError>> + Send + '_>> {
        let result = self.load().and_then(|creds| {
            if creds.svid.id() == id {
                Ok(creds)
            } else {
                Err(CredentialError::IdentityMismatch {
                    requested: id.clone(),
                    found: creds.svid.id().clone(),
                    source_name: self.chain.display().to_string(),
                })
            }
        });
        Box::pin(std::future::ready(result))
    }

    fn poll_interval(&self) -> Option<Duration> {
        Some(self.poll)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CredentialError> {
    std::fs::read(path).map_err(|e| CredentialError::File {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}
