//! SPIFFE workload identity for ambit.
//!
//! This crate is the identity layer under ambit's HBONE mutual TLS:
//!
//! - [`SpiffeId`] and [`TrustDomain`]: strict parsing per the SPIFFE ID specification, with
//!   Istio's `ns/<namespace>/sa/<service-account>` accessors and the scheme-less principal form
//!   used in `AuthorizationPolicy`.
//! - [`TrustBundle`]: root certificates keyed by trust domain (several domains = federation).
//! - [`ChainVerifier`]: verifies a peer's certificate chain against a bundle at a given time,
//!   for client or server use, and returns the peer's [`SpiffeId`]. Failures are specific
//!   [`VerifyError`]s (expired, foreign trust domain, untrusted root, no SPIFFE id, ...).
//! - [`CertificateAuthority`]: a built-in CA issuing Istio-shaped X.509-SVIDs (ECDSA P-256, one
//!   URI SAN), for development, demos and tests; PEM in and out.
//! - [`CredentialSource`] ([`PemFileSource`], [`CaSource`]) and [`CredentialManager`], which
//!   renews credentials at half of their lifetime and publishes them to subscribers. Time comes
//!   from a [`Clock`], so rotation is testable without sleeping.
//!
//! Parsing and verification are pure functions with no I/O. Only [`PemFileSource`] touches the
//! file system and only [`CredentialManager::run`] needs a tokio runtime.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use ambit_identity::{CertificateAuthority, ChainVerifier, SpiffeId, TrustDomain, Usage};
//!
//! let td = TrustDomain::new("cluster.local")?;
//! let ca = CertificateAuthority::new(td.clone())?;
//! let id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/web")?;
//! let svid = ca.issue(&id, Duration::from_secs(3600))?;
//!
//! let peer = ChainVerifier::default().verify(
//!     &ca.bundle(),
//!     svid.chain(),
//!     Usage::ClientAuth,
//!     SystemTime::now(),
//! )?;
//! assert_eq!(peer, id);
//! assert_eq!(peer.namespace(), Some("default"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bundle;
mod ca;
mod clock;
mod rotation;
mod source;
mod spiffe;
mod svid;
mod verify;
mod x509;

pub use bundle::{TrustBundle, TrustBundleBuilder};
pub use ca::{
    CaError, CaFiles, CaOptions, CertificateAuthority, DEFAULT_INTERMEDIATE_TTL, DEFAULT_ROOT_TTL,
    DEFAULT_WORKLOAD_TTL, IssuedCertificate, LeafRequest,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use rotation::{
    CertificateStatus, CredentialManager, INITIAL_BACKOFF, MAX_BACKOFF, RefreshReport,
};
pub use source::{CaSource, CredentialError, CredentialSource, PemFileSource};
pub use spiffe::{
    MAX_ID_LEN, MAX_TRUST_DOMAIN_LEN, SCHEME_PREFIX, SpiffeId, SpiffeIdError, TrustDomain,
};
pub use svid::{Credentials, Svid, SvidError};
pub use verify::{ChainVerifier, Usage, VerifyError};
pub use x509::{CertificateInfo, format_time, spiffe_id_of, validity_of};

/// Re-exported so callers can name certificate and key types without a direct dependency.
pub use rustls_pki_types as pki_types;
