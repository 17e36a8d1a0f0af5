//! Errors of the HBONE client and server.

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;

/// Why a tunnel could not be opened or served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HboneError {
    /// The TCP connection to the HBONE peer failed.
    #[error("cannot connect to HBONE peer {addr}: {source}")]
    Connect {
        /// The peer.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// Connecting (TCP + TLS + HTTP/2) took longer than the connect timeout.
    #[error(
        "timed out after {after:?} connecting to HBONE peer {addr}; \
         maybe a NetworkPolicy or firewall is blocking HBONE port {}",
        addr.port()
    )]
    ConnectTimeout {
        /// The peer.
        addr: SocketAddr,
        /// The timeout that expired.
        after: Duration,
    },
    /// The TLS handshake failed (wrong identity, untrusted peer, protocol mismatch...).
    #[error("TLS handshake with HBONE peer {addr} failed: {source}")]
    Tls {
        /// The peer.
        addr: SocketAddr,
        /// The handshake error; see [`HboneError::verify_error`].
        source: std::io::Error,
    },
    /// The HTTP/2 layer failed.
    #[error("HTTP/2 error with HBONE peer {addr}: {source}")]
    Http2 {
        /// The peer.
        addr: SocketAddr,
        /// The protocol error.
        source: h2::Error,
    },
    /// The QUIC connection or the HTTP/3 layer failed.
    #[error("HTTP/3 error with HBONE peer {addr}: {reason}")]
    Http3 {
        /// The peer.
        addr: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// The peer answered the CONNECT with a status other than 200.
    #[error("HBONE peer {addr} refused the tunnel to {authority}: HTTP {status}")]
    Rejected {
        /// The peer.
        addr: SocketAddr,
        /// The requested target.
        authority: String,
        /// The status it answered.
        status: StatusCode,
    },
    /// The CONNECT request could not be built (bad authority or header value).
    #[error("invalid CONNECT request: {0}")]
    Request(String),
    /// The TLS configuration could not be built from the credentials.
    #[error(transparent)]
    Credentials(#[from] ambit_tls::TlsError),
}

impl HboneError {
    /// The HTTP status, when the peer refused the tunnel.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            HboneError::Rejected { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether authorization refused the tunnel (401, as ztunnel answers, or 403).
    pub fn is_denied(&self) -> bool {
        matches!(
            self.status(),
            Some(StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
        )
    }

    /// The identity verification failure behind a TLS error, if that is what failed.
    pub fn verify_error(&self) -> Option<&ambit_identity::VerifyError> {
        match self {
            HboneError::Tls { source, .. } => source
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
                .and_then(ambit_tls::verify_error),
            _ => None,
        }
    }
}
