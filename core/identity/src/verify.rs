//! Verifying a peer's X.509-SVID chain against a trust bundle.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};

use crate::bundle::TrustBundle;
use crate::spiffe::{SpiffeId, SpiffeIdError, TrustDomain};
use crate::x509::{format_time, spiffe_id_of};

/// What the peer certificate must be good for (its extended key usage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Usage {
    /// A client certificate (EKU `clientAuth`): what an HBONE server checks.
    ClientAuth,
    /// A server certificate (EKU `serverAuth`): what an HBONE client checks.
    ServerAuth,
}

/// Why a peer certificate or chain was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The peer sent no certificate.
    #[error("peer presented no certificate")]
    EmptyChain,
    /// A certificate could not be parsed.
    #[error("malformed certificate: {detail}")]
    Malformed {
        /// What was wrong.
        detail: String,
    },
    /// The leaf has no `spiffe://` URI SAN.
    #[error("certificate has no SPIFFE id (no spiffe:// URI subject alternative name)")]
    NoSpiffeId,
    /// The leaf has more than one `spiffe://` URI SAN (an X.509-SVID must have exactly one).
    #[error("certificate has {count} SPIFFE ids; an X.509-SVID must have exactly one")]
    MultipleSpiffeIds {
        /// How many were found.
        count: usize,
    },
    /// The SPIFFE URI SAN is not a valid SPIFFE id.
    #[error("certificate SPIFFE id {uri:?} is invalid: {source}")]
    InvalidSpiffeId {
        /// The URI as found in the certificate.
        uri: String,
        /// Why it is invalid.
        source: SpiffeIdError,
    },
    /// The peer's trust domain has no roots in the bundle (or is not allowed here).
    #[error(
        "peer {id} belongs to trust domain \"{trust_domain}\", which is not trusted here (trusted: {trusted})"
    )]
    ForeignTrustDomain {
        /// The peer's claimed id.
        id: SpiffeId,
        /// Its trust domain.
        trust_domain: TrustDomain,
        /// The trusted domains, comma-separated, for the message.
        trusted: String,
    },
    /// No path from the chain to a root of the peer's trust domain.
    #[error(
        "certificate for {id} is not signed by a trusted root of trust domain \"{trust_domain}\""
    )]
    UntrustedRoot {
        /// The peer's claimed id.
        id: SpiffeId,
        /// Its trust domain.
        trust_domain: TrustDomain,
    },
    /// The certificate expired.
    #[error("certificate for {id} expired at {} (now {})", format_time(*not_after), format_time(*now))]
    Expired {
        /// The peer's claimed id.
        id: SpiffeId,
        /// End of validity.
        not_after: SystemTime,
        /// The verification time.
        now: SystemTime,
    },
    /// The certificate is not valid yet.
    #[error("certificate for {id} is not valid before {} (now {}); check the clocks", format_time(*not_before), format_time(*now))]
    NotYetValid {
        /// The peer's claimed id.
        id: SpiffeId,
        /// Start of validity.
        not_before: SystemTime,
        /// The verification time.
        now: SystemTime,
    },
    /// The certificate lacks the extended key usage the role needs.
    #[error("certificate for {id} is not valid for {usage} (extended key usage missing)")]
    WrongUsage {
        /// The peer's claimed id.
        id: SpiffeId,
        /// The usage that was required.
        usage: Usage,
    },
    /// A signature in the chain does not verify.
    #[error(
        "certificate chain for {id} has a signature that does not verify \
         (a forged certificate, or one from another CA using a trusted CA's name)"
    )]
    BadSignature {
        /// The peer's claimed id.
        id: SpiffeId,
    },
    /// The peer is valid but not one of the identities this connection expects.
    #[error("peer identity {id} is not the expected {}", list(expected))]
    UnexpectedIdentity {
        /// The verified peer id.
        id: SpiffeId,
        /// What was expected.
        expected: Vec<SpiffeId>,
    },
    /// Any other chain-validation failure, as reported by the validator.
    #[error("certificate chain for {id} is invalid: {detail}")]
    Invalid {
        /// The peer's claimed id.
        id: SpiffeId,
        /// The validator's description.
        detail: String,
    },
}

/// Verifies peer chains against a [`TrustBundle`] with a fixed set of signature algorithms.
///
/// Pure and cheap to copy: it holds only the algorithm table (normally the rustls provider's).
#[derive(Clone, Copy)]
pub struct ChainVerifier {
    algs: &'static [&'static dyn SignatureVerificationAlgorithm],
}

// === impl ChainVerifier ===

impl ChainVerifier {
    /// A verifier using the given signature algorithms (e.g. a rustls provider's
    /// `signature_verification_algorithms.all`).
    pub const fn with_algorithms(
        algs: &'static [&'static dyn SignatureVerificationAlgorithm],
    ) -> Self {
        Self { algs }
    }

    /// Verifies `chain` (leaf first, then intermediates) for `usage` at time `now`, and returns
    /// the peer's SPIFFE id.
    ///
    /// The roots used are those of the trust domain named in the leaf's SPIFFE id, so a peer of
    /// one trust domain can never be vouched for by another domain's root.
    pub fn verify(
        &self,
        bundle: &TrustBundle,
        chain: &[CertificateDer<'_>],
        usage: Usage,
        now: SystemTime,
    ) -> Result<SpiffeId, VerifyError> {
        let (leaf, intermediates) = chain.split_first().ok_or(VerifyError::EmptyChain)?;
        let id = spiffe_id_of(leaf)?;
        let Some(anchors) = bundle.anchors(id.trust_domain_name()) else {
            return Err(VerifyError::ForeignTrustDomain {
                trust_domain: id.trust_domain(),
                trusted: bundle
                    .trust_domains()
                    .map(TrustDomain::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                id,
            });
        };
        let ee = webpki::EndEntityCert::try_from(leaf).map_err(|e| VerifyError::Malformed {
            detail: e.to_string(),
        })?;
        let key_usage = match usage {
            Usage::ClientAuth => webpki::KeyUsage::client_auth(),
            Usage::ServerAuth => webpki::KeyUsage::server_auth(),
        };
        let unix = UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default());
        match ee.verify_for_usage(
            self.algs,
            anchors,
            intermediates,
            unix,
            key_usage,
            None,
            None,
        ) {
            Ok(_) => Ok(id),
            Err(e) => Err(map_webpki_error(e, id, usage, now)),
        }
    }
}

impl Default for ChainVerifier {
    /// Every algorithm of the crypto backends compiled in (see the crate features).
    fn default() -> Self {
        Self::with_algorithms(webpki::ALL_VERIFICATION_ALGS)
    }
}

impl fmt::Debug for ChainVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainVerifier")
            .field("algorithms", &self.algs.len())
            .finish()
    }
}

// === impl Usage ===

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Usage::ClientAuth => "client authentication",
            Usage::ServerAuth => "server authentication",
        })
    }
}

// === helpers ===

fn map_webpki_error(e: webpki::Error, id: SpiffeId, usage: Usage, now: SystemTime) -> VerifyError {
    use webpki::Error as W;
    let to_system = |t: UnixTime| UNIX_EPOCH + std::time::Duration::from_secs(t.as_secs());
    match e {
        W::CertExpired { not_after, .. } => VerifyError::Expired {
            id,
            not_after: to_system(not_after),
            now,
        },
        W::CertNotValidYet { not_before, .. } => VerifyError::NotYetValid {
            id,
            not_before: to_system(not_before),
            now,
        },
        W::UnknownIssuer => VerifyError::UntrustedRoot {
            trust_domain: id.trust_domain(),
            id,
        },
        W::RequiredEkuNotFoundContext(_) => VerifyError::WrongUsage { id, usage },
        W::InvalidSignatureForPublicKey | W::SignatureAlgorithmMismatch => {
            VerifyError::BadSignature { id }
        }
        other => VerifyError::Invalid {
            id,
            detail: format!("{other:?}"),
        },
    }
}

fn list(ids: &[SpiffeId]) -> String {
    match ids {
        [] => "(none)".into(),
        [one] => one.to_string(),
        many => format!(
            "one of {}",
            many.iter()
                .map(SpiffeId::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
