//! rustls verifiers that check SPIFFE identities instead of DNS names.

use std::fmt;
use std::sync::Arc;

use ambit_identity::{ChainVerifier, SpiffeId, TrustDomain, Usage, VerifyError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::cell::CredentialCell;
use crate::system_time;

/// Client-side check of an HBONE server: valid chain for serverAuth, SPIFFE id in the
/// expected set. The server name is ignored.
pub struct SpiffeServerVerifier {
    creds: Arc<CredentialCell>,
    chain: ChainVerifier,
    expected: Arc<[SpiffeId]>,
}

/// Server-side check of an HBONE client: certificate required, valid chain for clientAuth,
/// SPIFFE id of an allowed trust domain.
pub struct SpiffeClientVerifier {
    creds: Arc<CredentialCell>,
    chain: ChainVerifier,
    allowed: Option<Vec<TrustDomain>>,
}

// === impl SpiffeServerVerifier ===

impl SpiffeServerVerifier {
    /// Verifies against `creds`' current bundle; accepts only ids in `expected`.
    pub fn new(
        creds: Arc<CredentialCell>,
        chain: ChainVerifier,
        expected: Arc<[SpiffeId]>,
    ) -> Self {
        Self {
            creds,
            chain,
            expected,
        }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = full_chain(end_entity, intermediates);
        let bundle = self.creds.snapshot().bundle.clone();
        let id = self
            .chain
            .verify(&bundle, &chain, Usage::ServerAuth, system_time(now))
            .map_err(refuse)?;
        if !self.expected.contains(&id) {
            return Err(refuse(VerifyError::UnexpectedIdentity {
                id,
                expected: self.expected.to_vec(),
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, self.creds.algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, self.creds.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.creds.algorithms().supported_schemes()
    }
}

impl fmt::Debug for SpiffeServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpiffeServerVerifier")
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

// === impl SpiffeClientVerifier ===

impl SpiffeClientVerifier {
    /// Verifies against `creds`' current bundle; `allowed` limits the clients' trust domains.
    pub fn new(
        creds: Arc<CredentialCell>,
        chain: ChainVerifier,
        allowed: Option<Vec<TrustDomain>>,
    ) -> Self {
        Self {
            creds,
            chain,
            allowed,
        }
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let chain = full_chain(end_entity, intermediates);
        let bundle = self.creds.snapshot().bundle.clone();
        let id = self
            .chain
            .verify(&bundle, &chain, Usage::ClientAuth, system_time(now))
            .map_err(refuse)?;
        if let Some(allowed) = &self.allowed
            && !allowed
                .iter()
                .any(|td| td.as_str() == id.trust_domain_name())
        {
            return Err(refuse(VerifyError::ForeignTrustDomain {
                trust_domain: id.trust_domain(),
                trusted: allowed
                    .iter()
                    .map(TrustDomain::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                id,
            }));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, self.creds.algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, self.creds.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.creds.algorithms().supported_schemes()
    }
}

impl fmt::Debug for SpiffeClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpiffeClientVerifier")
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

// === helpers ===

fn full_chain<'a>(
    end_entity: &CertificateDer<'a>,
    intermediates: &[CertificateDer<'a>],
) -> Vec<CertificateDer<'a>> {
    let mut chain = Vec::with_capacity(1 + intermediates.len());
    chain.push(end_entity.clone());
    chain.extend(intermediates.iter().cloned());
    chain
}

/// Wraps our error so the handshake error carries it ([`crate::verify_error`] gets it back).
fn refuse(e: VerifyError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Refusal(e)))))
}

/// Carries a [`VerifyError`] through rustls. rustls renders the inner error with `Debug`, so
/// `Debug` here prints the readable message.
pub(crate) struct Refusal(pub(crate) VerifyError);

impl fmt::Debug for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Refusal {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}
