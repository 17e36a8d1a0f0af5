//! HBONE: HTTP/2 CONNECT over mutual TLS, as Istio's ambient data plane speaks it on port
//! 15008.
//!
//! - [`Server`]: accepts TCP, terminates TLS with the certificate chosen for the local address
//!   ([`ConfigSelector`]), runs HTTP/2 with Istio's settings, validates each CONNECT (400 for
//!   a non-CONNECT, a `:path`, or a bad `:authority`) and hands it to a [`Handler`], which
//!   answers through a [`Responder`]: accept (200, the stream becomes a [`Tunnel`]) or reject
//!   with a status (401 denied, 503 unreachable...). Graceful drain with a deadline.
//! - [`Client`]: opens tunnels over pooled connections keyed by (source identity, expected
//!   destination identities, destination address): at most 100 streams per connection (or
//!   the peer's lower limit), one dial for concurrent first uses, PING keep-alive, idle
//!   release, broken connections dropped from the pool.
//! - [`Tunnel`]: `AsyncRead + AsyncWrite` over one stream, with flow control and half-close;
//!   [`copy_bidirectional`] pumps a tunnel against a TCP socket.
//! - Pure codecs: [`Authority`], `baggage`/`forwarded`/`traceparent` ([`headers`]), and
//!   PROXY protocol v2 with the 0xD0 identity TLV ([`proxy_protocol`]).
//!
//! ```no_run
//! use std::{sync::Arc, time::Duration};
//! use ambit_hbone::{Client, ClientSettings, Dial};
//! use ambit_identity::{CertificateAuthority, SpiffeId, TrustDomain};
//! use ambit_tls::{Provider, TlsContext};
//! use tokio::io::AsyncWriteExt;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let ca = CertificateAuthority::new(TrustDomain::new("cluster.local")?)?;
//! let me = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/client")?;
//! let tls = TlsContext::new(Provider::default());
//! let creds = tls.credential_cell(&ca.credentials(&me, Duration::from_secs(86400))?)?;
//!
//! let client = Client::new(tls, ClientSettings::default());
//! let dial = Dial::new(
//!     creds,
//!     "10.0.0.7:15008".parse()?,
//!     vec![SpiffeId::parse("spiffe://cluster.local/ns/default/sa/server")?],
//!     "10.0.0.7:8080".parse()?,
//! );
//! let mut tunnel = client.connect(&dial).await?;
//! tunnel.write_all(b"hello").await?;
//! tunnel.shutdown().await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod authority;
mod client;
mod copy;
mod error;
#[cfg(fuzzing)]
pub mod fuzz_logic;
#[cfg(feature = "h3")]
mod h3;
pub mod headers;
pub mod proxy_protocol;
#[cfg(unix)]
mod queue;
mod server;
mod settings;
mod tunnel;
mod udp;
mod varint;

use std::time::Duration;

pub use authority::{Authority, AuthorityError};
pub use client::{Client, ClientStats, Dial, SocketFactory, connect_from};
#[cfg(unix)]
pub use copy::bridge_to_socketpair;
pub use copy::{
    Meter, Transferred, copy_bidirectional, copy_bidirectional_metered, copy_one_way, copy_tunnel,
    copy_tunnel_tcp,
};
pub use error::HboneError;
pub use headers::{Baggage, Forwarded, TraceParent, TraceParentError};
#[cfg(unix)]
pub use queue::{QueueHandler, QueuedTunnel, TunnelQueue};
pub use server::{
    ConfigSelector, ConnectKind, ConnectRequest, Handler, Responder, Server, ServerStats, canonical,
};
pub use settings::{
    CONNECTION_WINDOW, ClientSettings, MAX_FRAME_SIZE, MAX_STREAMS_PER_CONNECTION,
    SERVER_MAX_CONCURRENT_STREAMS, STREAM_WINDOW, ServerSettings,
};
pub use tunnel::{Transport, Tunnel, TunnelInfo, TunnelReader, TunnelWriter};
#[cfg(target_os = "linux")]
pub use udp::bridge_udp_to_socketpair;
pub use udp::{MAX_UDP_PAYLOAD, UdpReceiver, UdpSender, UdpTunnel};

/// Re-exported for status codes and header maps in the API.
pub use http;

/// Completes when the peer fails to answer a PING within `timeout` (or PINGs fail); never
/// completes when keep-alive is off or unavailable.
pub(crate) async fn keepalive(
    ping_pong: Option<h2::PingPong>,
    interval: Option<Duration>,
    timeout: Duration,
) {
    let (Some(mut pp), Some(interval)) = (ping_pong, interval) else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(interval).await;
        match tokio::time::timeout(timeout, pp.ping(h2::Ping::opaque())).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
    }
}
