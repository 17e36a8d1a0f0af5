//! Trust bundles: the root certificates of each trusted trust domain.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, TrustAnchor};

use crate::spiffe::TrustDomain;
use crate::verify::VerifyError;

/// Roots keyed by trust domain. More than one trust domain means federation: a peer is checked
/// against the roots of the trust domain in its own SPIFFE id, never against another domain's.
///
/// Immutable once built; clone is cheap (shared).
#[derive(Clone, Default)]
pub struct TrustBundle {
    domains: Arc<BTreeMap<TrustDomain, Roots>>,
}

#[derive(Clone)]
struct Roots {
    certs: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
}

/// Builds a [`TrustBundle`] root by root.
#[derive(Default)]
pub struct TrustBundleBuilder {
    domains: BTreeMap<TrustDomain, Roots>,
}

// === impl TrustBundle ===

impl TrustBundle {
    /// Starts an empty bundle.
    pub fn builder() -> TrustBundleBuilder {
        TrustBundleBuilder::default()
    }

    /// A bundle of one trust domain from PEM text holding one or more root certificates.
    pub fn from_pem(trust_domain: TrustDomain, pem: &[u8]) -> Result<Self, VerifyError> {
        let mut b = Self::builder();
        b.add_pem(trust_domain, pem)?;
        Ok(b.build())
    }

    /// The roots for a trust domain name, as DER.
    pub fn roots(&self, trust_domain: &str) -> &[CertificateDer<'static>] {
        self.domains
            .get(trust_domain)
            .map(|r| r.certs.as_slice())
            .unwrap_or_default()
    }

    /// The trust anchors for a trust domain name, or `None` if the domain is not trusted.
    pub fn anchors(&self, trust_domain: &str) -> Option<&[TrustAnchor<'static>]> {
        self.domains.get(trust_domain).map(|r| r.anchors.as_slice())
    }

    /// The trusted trust domains, in order.
    pub fn trust_domains(&self) -> impl Iterator<Item = &TrustDomain> {
        self.domains.keys()
    }

    /// Whether the bundle trusts no domain at all.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// Every root of every domain, in domain order, as PEM text.
    pub fn to_pem(&self) -> String {
        let pems: Vec<pem::Pem> = self
            .domains
            .values()
            .flat_map(|r| r.certs.iter())
            .map(|c| pem::Pem::new("CERTIFICATE", c.to_vec()))
            .collect();
        pem::encode_many(&pems)
    }
}

impl PartialEq for TrustBundle {
    fn eq(&self, other: &Self) -> bool {
        self.domains.len() == other.domains.len()
            && self
                .domains
                .iter()
                .zip(other.domains.iter())
                .all(|((a, ra), (b, rb))| a == b && ra.certs == rb.certs)
    }
}

impl Eq for TrustBundle {}

impl std::fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.domains
                    .iter()
                    .map(|(td, r)| (td.as_str(), r.certs.len())),
            )
            .finish()
    }
}

// === impl TrustBundleBuilder ===

impl TrustBundleBuilder {
    /// Adds one DER root certificate for a trust domain.
    pub fn add_root(
        &mut self,
        trust_domain: TrustDomain,
        der: CertificateDer<'static>,
    ) -> Result<&mut Self, VerifyError> {
        let anchor = webpki::anchor_from_trusted_cert(&der)
            .map_err(|e| VerifyError::Malformed {
                detail: format!("root certificate for {trust_domain}: {e}"),
            })?
            .to_owned();
        let roots = self.domains.entry(trust_domain).or_insert_with(|| Roots {
            certs: Vec::new(),
            anchors: Vec::new(),
        });
        if !roots.certs.contains(&der) {
            roots.certs.push(der);
            roots.anchors.push(anchor);
        }
        Ok(self)
    }

    /// Adds every certificate in PEM text as a root of `trust_domain`; returns how many.
    pub fn add_pem(&mut self, trust_domain: TrustDomain, pem: &[u8]) -> Result<usize, VerifyError> {
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| VerifyError::Malformed {
                detail: format!("bad PEM in trust bundle: {e}"),
            })?;
            self.add_root(trust_domain.clone(), cert)?;
            n += 1;
        }
        if n == 0 {
            return Err(VerifyError::Malformed {
                detail: "trust bundle PEM holds no CERTIFICATE block".into(),
            });
        }
        Ok(n)
    }

    /// Adds every domain of another bundle (federation).
    pub fn merge(&mut self, other: &TrustBundle) -> &mut Self {
        for (td, roots) in other.domains.iter() {
            let entry = self.domains.entry(td.clone()).or_insert_with(|| Roots {
                certs: Vec::new(),
                anchors: Vec::new(),
            });
            for (c, a) in roots.certs.iter().zip(&roots.anchors) {
                if !entry.certs.contains(c) {
                    entry.certs.push(c.clone());
                    entry.anchors.push(a.clone());
                }
            }
        }
        self
    }

    /// Finishes the bundle.
    pub fn build(&mut self) -> TrustBundle {
        TrustBundle {
            domains: Arc::new(std::mem::take(&mut self.domains)),
        }
    }
}

impl std::fmt::Debug for TrustBundleBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustBundleBuilder")
            .field("domains", &self.domains.len())
            .finish()
    }
}
