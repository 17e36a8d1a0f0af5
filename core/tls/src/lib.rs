//! rustls configurations for HBONE mutual TLS.
//!
//! HBONE runs HTTP/2 over TLS 1.3 with a SPIFFE X.509-SVID on both sides. This crate turns
//! `ambit-identity` credentials into rustls configs that behave as Istio's ztunnel does:
//!
//! - TLS 1.3 only, suites `TLS13_AES_256_GCM_SHA384` and `TLS13_AES_128_GCM_SHA256`, ALPN `h2`,
//!   no SNI (the server picks its certificate by local address, not by name), no resumption.
//! - **Client** ([`TlsContext::client_config`]): the server's chain must be valid for the
//!   server's own trust domain in the bundle, carry EKU serverAuth, and its SPIFFE id must be
//!   one of the expected ids.
//! - **Server** ([`TlsContext::server_config`]): a client certificate is required, its chain must
//!   be valid (EKU clientAuth) and carry a SPIFFE id of an allowed trust domain. The peer id
//!   is read after the handshake with [`peer_identity`] and used for authorization.
//! - Certificates and bundles are served from a [`CredentialCell`], an atomically swapped value:
//!   rotation takes effect on the next handshake and never touches live connections.
//!
//! The crypto provider is chosen by the caller ([`Provider`] or any rustls `CryptoProvider`);
//! nothing is installed process-wide. aws-lc-rs is the default: see `README.md` for the
//! measurement behind that choice.
//!
//! ```
//! use std::time::Duration;
//! use ambit_identity::{CertificateAuthority, SpiffeId, TrustDomain};
//! use ambit_tls::{Provider, ServerOptions, TlsContext};
//!
//! let ca = CertificateAuthority::new(TrustDomain::new("cluster.local")?)?;
//! let server_id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/server")?;
//! let client_id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/client")?;
//!
//! let tls = TlsContext::new(Provider::default());
//! let server_creds = tls.credential_cell(&ca.credentials(&server_id, Duration::from_secs(3600))?)?;
//! let client_creds = tls.credential_cell(&ca.credentials(&client_id, Duration::from_secs(3600))?)?;
//!
//! let server = tls.server_config(&server_creds, &ServerOptions::default())?;
//! let client = tls.client_config(&client_creds, [server_id])?;
//! # let _ = (server, client);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cell;
mod verifier;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ambit_identity::{ChainVerifier, Clock, SpiffeId, TrustDomain, VerifyError};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::server::NoServerSessionStorage;
use rustls::time_provider::TimeProvider;
use rustls::{ClientConfig, CommonState, ServerConfig, SupportedCipherSuite};
use rustls_pki_types::{ServerName, UnixTime};

pub use cell::CredentialCell;
pub use verifier::{SpiffeClientVerifier, SpiffeServerVerifier};

/// The ALPN protocol of HBONE over TCP: HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// The ALPN protocol of HBONE over QUIC: HTTP/3 (an ambit extension).
pub const ALPN_H3: &[u8] = b"h3";

/// A crypto provider shipped with rustls, restricted to HBONE's cipher suites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Provider {
    /// aws-lc-rs (the default; what ztunnel uses by default too).
    #[cfg(feature = "aws-lc-rs")]
    AwsLcRs,
    /// ring.
    #[cfg(feature = "ring")]
    Ring,
}

/// Builds HBONE client and server configs with one crypto provider and one clock.
#[derive(Clone)]
pub struct TlsContext {
    provider: Arc<CryptoProvider>,
    time: Arc<dyn TimeProvider>,
    verifier: ChainVerifier,
}

/// Server-side options.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Trust domains whose clients are accepted; `None` accepts every domain of the bundle.
    /// ztunnel accepts only its own trust domain: pass `Some(vec![own])` for that.
    pub allowed_trust_domains: Option<Vec<TrustDomain>>,
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The private key cannot be used by the provider, or does not match the certificate.
    #[error("private key for {id} unusable: {detail}")]
    Key {
        /// The SVID's identity.
        id: SpiffeId,
        /// What the provider said.
        detail: String,
    },
    /// A client config needs at least one identity to expect from the server.
    #[error("no expected server identity given: an HBONE client must know whom it is dialing")]
    NoExpectedIdentity,
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

// === impl Provider ===

impl Provider {
    /// The rustls provider, restricted to HBONE's TLS 1.3 AES-GCM suites.
    #[cfg_attr(
        not(any(feature = "aws-lc-rs", feature = "ring")),
        allow(unreachable_code, unused_variables)
    )]
    pub fn crypto_provider(self) -> CryptoProvider {
        let base = match self {
            #[cfg(feature = "aws-lc-rs")]
            Provider::AwsLcRs => rustls::crypto::aws_lc_rs::default_provider(),
            #[cfg(feature = "ring")]
            Provider::Ring => rustls::crypto::ring::default_provider(),
        };
        hbone_provider(base)
    }
}

#[cfg(feature = "aws-lc-rs")]
#[allow(
    clippy::derivable_impls,
    reason = "the default depends on features, and a build with neither has no variant"
)]
impl Default for Provider {
    fn default() -> Self {
        Provider::AwsLcRs
    }
}

#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
impl Default for Provider {
    fn default() -> Self {
        Provider::Ring
    }
}

/// Restricts any provider to `TLS13_AES_256_GCM_SHA384` and `TLS13_AES_128_GCM_SHA256`, in that
/// order (Istio's list). Use it to bring your own provider (FIPS builds, say).
pub fn hbone_provider(mut base: CryptoProvider) -> CryptoProvider {
    use rustls::CipherSuite as C;
    let rank = |s: &SupportedCipherSuite| match s.suite() {
        C::TLS13_AES_256_GCM_SHA384 => Some(0),
        C::TLS13_AES_128_GCM_SHA256 => Some(1),
        _ => None,
    };
    base.cipher_suites.retain(|s| rank(s).is_some());
    base.cipher_suites.sort_by_key(rank);
    base
}

// === impl TlsContext ===

impl TlsContext {
    /// A context using one of rustls's providers and the system clock.
    pub fn new(provider: Provider) -> Self {
        Self::with_provider(Arc::new(provider.crypto_provider()))
    }

    /// A context using any rustls provider, as is (see [`hbone_provider`]).
    pub fn with_provider(provider: Arc<CryptoProvider>) -> Self {
        let verifier =
            ChainVerifier::with_algorithms(provider.signature_verification_algorithms.all);
        Self {
            provider,
            time: Arc::new(rustls::time_provider::DefaultTimeProvider),
            verifier,
        }
    }

    /// Uses `clock` for certificate validity checks instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.time = Arc::new(ClockTime(clock));
        self
    }

    /// The crypto provider in use.
    pub fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }

    /// Loads credentials into a new swappable cell.
    pub fn credential_cell(
        &self,
        creds: &ambit_identity::Credentials,
    ) -> Result<Arc<CredentialCell>, TlsError> {
        CredentialCell::new(self.provider.clone(), creds).map(Arc::new)
    }

    /// A server config presenting `creds`' current certificate and verifying clients against
    /// its current bundle.
    pub fn server_config(
        &self,
        creds: &Arc<CredentialCell>,
        opts: &ServerOptions,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let verifier = SpiffeClientVerifier::new(
            creds.clone(),
            self.verifier,
            opts.allowed_trust_domains.clone(),
        );
        let mut config =
            ServerConfig::builder_with_details(self.provider.clone(), self.time.clone())
                .with_protocol_versions(&[&rustls::version::TLS13])?
                .with_client_cert_verifier(Arc::new(verifier))
                .with_cert_resolver(creds.clone());
        // Both: one config serves TCP (which takes h2) and QUIC (which takes h3).
        config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_H3.to_vec()];
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
    }

    /// A client config presenting `creds`' current certificate and accepting only a server
    /// whose SPIFFE id is in `expected`.
    pub fn client_config(
        &self,
        creds: &Arc<CredentialCell>,
        expected: impl IntoIterator<Item = SpiffeId>,
    ) -> Result<Arc<ClientConfig>, TlsError> {
        let expected: Arc<[SpiffeId]> = expected.into_iter().collect();
        if expected.is_empty() {
            return Err(TlsError::NoExpectedIdentity);
        }
        let verifier = SpiffeServerVerifier::new(creds.clone(), self.verifier, expected);
        let mut config =
            ClientConfig::builder_with_details(self.provider.clone(), self.time.clone())
                .with_protocol_versions(&[&rustls::version::TLS13])?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_client_cert_resolver(creds.clone());
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        config.enable_sni = false;
        config.resumption = Resumption::disabled();
        Ok(Arc::new(config))
    }
}

impl fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsContext")
            .field(
                "cipher_suites",
                &self
                    .provider
                    .cipher_suites
                    .iter()
                    .map(|s| s.suite())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

// === free functions ===

/// The name passed to rustls when dialing: unused (SNI is off and the verifier checks SPIFFE
/// ids), so it is the placeholder `0.0.0.0`, as ztunnel does.
pub fn server_name() -> ServerName<'static> {
    ServerName::IpAddress(IpAddr::V4(Ipv4Addr::UNSPECIFIED).into())
}

/// The SPIFFE id of the peer of an established connection (client or server side).
pub fn peer_identity(conn: &CommonState) -> Result<SpiffeId, VerifyError> {
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or(VerifyError::EmptyChain)?;
    ambit_identity::spiffe_id_of(leaf)
}

/// The identity verification failure inside a handshake error, if that is what failed.
pub fn verify_error(err: &rustls::Error) -> Option<&VerifyError> {
    match err {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            other.0.downcast_ref::<verifier::Refusal>().map(|r| &r.0)
        }
        _ => None,
    }
}

/// Adapts an ambit [`Clock`] to rustls's time source.
#[derive(Debug)]
struct ClockTime(Arc<dyn Clock>);

impl TimeProvider for ClockTime {
    fn current_time(&self) -> Option<UnixTime> {
        let since = self.0.now().duration_since(UNIX_EPOCH).ok()?;
        Some(UnixTime::since_unix_epoch(since))
    }
}

pub(crate) fn system_time(t: UnixTime) -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_secs(t.as_secs())
}
