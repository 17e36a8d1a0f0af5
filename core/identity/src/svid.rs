//! X.509-SVIDs: a workload's certificate chain and private key, plus the trust bundle it uses.

use std::fmt;
use std::time::SystemTime;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::bundle::TrustBundle;
use crate::spiffe::SpiffeId;
use crate::verify::VerifyError;
use crate::x509::{spiffe_id_of, validity_of};

/// A workload's X.509-SVID: its SPIFFE id, certificate chain (leaf first) and private key.
pub struct Svid {
    id: SpiffeId,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    not_before: SystemTime,
    not_after: SystemTime,
}

/// An SVID together with the trust bundle its holder verifies peers with.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Credentials {
    /// The workload's own certificate and key.
    pub svid: Svid,
    /// The roots it trusts.
    pub bundle: TrustBundle,
}

/// Why an SVID could not be assembled from its parts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SvidError {
    /// The certificate PEM holds no certificate.
    #[error("no CERTIFICATE block in the certificate chain PEM")]
    NoCertificate,
    /// The key PEM holds no private key.
    #[error("no private key (PKCS#8, SEC1 or PKCS#1 block) in the key PEM")]
    NoKey,
    /// The PEM text could not be decoded.
    #[error("bad PEM: {detail}")]
    Pem {
        /// What the decoder said.
        detail: String,
    },
    /// The leaf certificate is unusable as an SVID.
    #[error(transparent)]
    Certificate(#[from] VerifyError),
}

// === impl Svid ===

impl Svid {
    /// Assembles an SVID from a DER chain (leaf first) and its private key.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, SvidError> {
        let leaf = chain.first().ok_or(SvidError::NoCertificate)?;
        let id = spiffe_id_of(leaf)?;
        let (not_before, not_after) = validity_of(leaf)?;
        Ok(Self {
            id,
            chain,
            key,
            not_before,
            not_after,
        })
    }

    /// Assembles an SVID from PEM text: the chain (leaf first) and the private key.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, SvidError> {
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SvidError::Pem {
                detail: e.to_string(),
            })?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => SvidError::NoKey,
            e => SvidError::Pem {
                detail: e.to_string(),
            },
        })?;
        Self::new(chain, key)
    }

    /// The SPIFFE id in the leaf certificate.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The leaf certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        // `new` refuses an empty chain.
        &self.chain[0]
    }

    /// The private key of the leaf.
    pub fn key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// Start of the leaf's validity.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// End of the leaf's validity.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// When to renew: half-way through the validity window (Istio's rule).
    pub fn refresh_at(&self) -> SystemTime {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        self.not_before + lifetime / 2
    }

    /// The chain as PEM text, leaf first.
    pub fn chain_pem(&self) -> String {
        let pems: Vec<pem::Pem> = self
            .chain
            .iter()
            .map(|c| pem::Pem::new("CERTIFICATE", c.to_vec()))
            .collect();
        pem::encode_many(&pems)
    }

    /// The private key as PEM text (PKCS#8 `PRIVATE KEY` for keys this crate generates).
    pub fn key_pem(&self) -> String {
        let tag = match &self.key {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        pem::encode(&pem::Pem::new(tag, self.key.secret_der().to_vec()))
    }
}

impl Clone for Svid {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            not_before: self.not_before,
            not_after: self.not_after,
        }
    }
}

impl PartialEq for Svid {
    /// Two SVIDs are equal when their chains are; the key follows from the leaf.
    fn eq(&self, other: &Self) -> bool {
        self.chain == other.chain
    }
}

impl fmt::Debug for Svid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Svid")
            .field("id", &self.id)
            .field("chain_len", &self.chain.len())
            .field("not_before", &crate::format_time(self.not_before))
            .field("not_after", &crate::format_time(self.not_after))
            .finish_non_exhaustive()
    }
}

// === impl Credentials ===

impl Credentials {
    /// Pairs an SVID with the bundle its holder trusts.
    pub fn new(svid: Svid, bundle: TrustBundle) -> Self {
        Self { svid, bundle }
    }
}

impl PartialEq for Credentials {
    fn eq(&self, other: &Self) -> bool {
        self.svid == other.svid && self.bundle == other.bundle
    }
}
