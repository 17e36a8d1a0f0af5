//! The `response_flags` of Istio's telemetry, as one type.

use std::fmt;

/// Why a connection or request did not go as asked: the `response_flags` metric label and
/// access-log field. Istio's dashboards read these strings, so they are exactly ztunnel's
/// (TCP) and Envoy's (HTTP) spellings; nowhere else in ambit is a flag written as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ResponseFlag {
    /// Nothing went wrong: `-`.
    #[default]
    None,
    // --- ztunnel's flags, on TCP metrics ---
    /// Refused by authorization policy: `DENY`.
    Deny,
    /// The upstream connection could not be made: `CONNECT`.
    Connect,
    /// The TLS handshake with the peer failed: `TLS_FAILURE`.
    TlsFailure,
    /// The HTTP/2 handshake with the peer failed: `H2_HANDSHAKE_FAILURE`.
    H2HandshakeFailure,
    /// Connecting to HBONE port 15008 timed out, maybe a NetworkPolicy: `NETWORK_POLICY`.
    NetworkPolicy,
    /// A workload had no usable identity or certificate: `IDENTITY_ERROR`.
    IdentityError,
    // --- Envoy's flags, on HTTP metrics of the waypoint ---
    /// No route matched: `NR`.
    NoRouteFound,
    /// No healthy upstream (no backend with weight, no endpoint): `UH`.
    NoHealthyUpstream,
    /// Refused by the local rate limit: `RL`.
    RateLimited,
    /// Aborted by fault injection: `FI`.
    FaultInjected,
    /// Delayed by fault injection: `DI`.
    DelayInjected,
    /// The downstream request was malformed or cut short: `DPE`.
    DownstreamProtocolError,
    /// The upstream connection ended before the response did: `UC`.
    UpstreamConnectionTermination,
    /// Every retry failed to connect: `URX`.
    UpstreamRetryLimitExceeded,
    /// Connecting upstream failed: `UF`.
    UpstreamConnectionFailure,
    /// The upstream did not answer in time: `UT`.
    UpstreamRequestTimeout,
    /// The upstream broke the protocol (an unasked-for 101): `UPE`.
    UpstreamProtocolError,
}

impl ResponseFlag {
    /// The label value: `-`, `DENY`, `UH`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseFlag::None => "-",
            ResponseFlag::Deny => "DENY",
            ResponseFlag::Connect => "CONNECT",
            ResponseFlag::TlsFailure => "TLS_FAILURE",
            ResponseFlag::H2HandshakeFailure => "H2_HANDSHAKE_FAILURE",
            ResponseFlag::NetworkPolicy => "NETWORK_POLICY",
            ResponseFlag::IdentityError => "IDENTITY_ERROR",
            ResponseFlag::NoRouteFound => "NR",
            ResponseFlag::NoHealthyUpstream => "UH",
            ResponseFlag::RateLimited => "RL",
            ResponseFlag::FaultInjected => "FI",
            ResponseFlag::DelayInjected => "DI",
            ResponseFlag::DownstreamProtocolError => "DPE",
            ResponseFlag::UpstreamConnectionTermination => "UC",
            ResponseFlag::UpstreamRetryLimitExceeded => "URX",
            ResponseFlag::UpstreamConnectionFailure => "UF",
            ResponseFlag::UpstreamRequestTimeout => "UT",
            ResponseFlag::UpstreamProtocolError => "UPE",
        }
    }

    /// Whether the flag means the connection failed (`istio_tcp_connections_failed_total`).
    pub fn is_failure(self) -> bool {
        self != ResponseFlag::None && self != ResponseFlag::DelayInjected
    }
}

impl fmt::Display for ResponseFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
