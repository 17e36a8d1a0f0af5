//! The swappable credentials behind HBONE TLS configs.

use std::fmt;
use std::sync::Arc;

use ambit_identity::{Credentials, SpiffeId, TrustBundle};
use arc_swap::ArcSwap;
use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;

use crate::TlsError;

/// A workload's current certificate, key and trust bundle, replaceable at any time.
///
/// Every config built from a cell reads it at each handshake, so [`store`](Self::store)
/// takes effect for new connections at once, and established connections are unaffected.
pub struct CredentialCell {
    provider: Arc<CryptoProvider>,
    current: ArcSwap<Loaded>,
}

pub(crate) struct Loaded {
    pub(crate) id: SpiffeId,
    pub(crate) key: Arc<CertifiedKey>,
    pub(crate) bundle: TrustBundle,
}

impl CredentialCell {
    pub(crate) fn new(
        provider: Arc<CryptoProvider>,
        creds: &Credentials,
    ) -> Result<Self, TlsError> {
        let loaded = load(&provider, creds)?;
        Ok(Self {
            provider,
            current: ArcSwap::from_pointee(loaded),
        })
    }

    /// Replaces the certificate, key and bundle for all future handshakes.
    pub fn store(&self, creds: &Credentials) -> Result<(), TlsError> {
        let loaded = load(&self.provider, creds)?;
        self.current.store(Arc::new(loaded));
        Ok(())
    }

    /// The identity currently presented.
    pub fn id(&self) -> SpiffeId {
        self.current.load().id.clone()
    }

    /// The certificate chain currently presented.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.current.load().key.clone()
    }

    /// The bundle peers are currently verified against.
    pub fn bundle(&self) -> TrustBundle {
        self.current.load().bundle.clone()
    }

    pub(crate) fn algorithms(&self) -> &rustls::crypto::WebPkiSupportedAlgorithms {
        &self.provider.signature_verification_algorithms
    }

    pub(crate) fn snapshot(&self) -> arc_swap::Guard<Arc<Loaded>> {
        self.current.load()
    }

    /// Stores every new value published on `updates` (for example by a
    /// [`CredentialManager`](ambit_identity::CredentialManager)) until the sender goes away.
    /// Values the provider cannot load are skipped, keeping the previous credentials; the
    /// error is handed to `on_error`.
    pub async fn follow(
        self: Arc<Self>,
        mut updates: watch::Receiver<Arc<Credentials>>,
        on_error: impl Fn(TlsError) + Send,
    ) {
        loop {
            let creds = updates.borrow_and_update().clone();
            if let Err(e) = self.store(&creds) {
                on_error(e);
            }
            if updates.changed().await.is_err() {
                return;
            }
        }
    }
}

impl ResolvesServerCert for CredentialCell {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.certified_key())
    }
}

impl ResolvesClientCert for CredentialCell {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.certified_key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl fmt::Debug for CredentialCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cur = self.current.load();
        f.debug_struct("CredentialCell")
            .field("id", &cur.id)
            .field("bundle", &cur.bundle)
            .finish_non_exhaustive()
    }
}

fn load(provider: &CryptoProvider, creds: &Credentials) -> Result<Loaded, TlsError> {
    let id = creds.svid.id().clone();
    let key_err = |detail: String| TlsError::Key {
        id: id.clone(),
        detail,
    };
    let key = CertifiedKey::from_der(
        creds.svid.chain().to_vec(),
        creds.svid.key().clone_key(),
        provider,
    )
    .map_err(|e| key_err(e.to_string()))?;
    Ok(Loaded {
        id: id.clone(),
        key: Arc::new(key),
        bundle: creds.bundle.clone(),
    })
}
