//! HTTP/2 and timing settings, defaulting to Istio's values (reference §0 and §1.4).

use std::time::Duration;

/// Initial HTTP/2 stream window: 4 MiB.
pub const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
/// Initial HTTP/2 connection window: 16 MiB (4× the stream window, against cross-stream stalls).
pub const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
/// Largest HTTP/2 frame: 1 MiB.
pub const MAX_FRAME_SIZE: u32 = 1024 * 1024;
/// Streams per pooled client connection before another connection is opened.
pub const MAX_STREAMS_PER_CONNECTION: usize = 100;
/// SETTINGS_MAX_CONCURRENT_STREAMS the server advertises.
pub const SERVER_MAX_CONCURRENT_STREAMS: u32 = 200;

/// Knobs of the HBONE client.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientSettings {
    /// Streams per connection (further capped by the peer's SETTINGS).
    pub max_streams_per_connection: usize,
    /// TCP + TLS + HTTP/2 handshake budget.
    pub connect_timeout: Duration,
    /// A pooled connection unused this long is released.
    pub idle_timeout: Duration,
    /// PING interval; `None` disables keep-alive pings.
    pub ping_interval: Option<Duration>,
    /// A PING unanswered this long kills the connection.
    pub ping_timeout: Duration,
    /// Max header list size we accept (responses).
    pub max_header_list_size: u32,
    /// How long a QUIC handshake may take before an HTTP/3 dial falls back to HTTP/2.
    pub quic_handshake_timeout: Duration,
    /// After a peer's QUIC handshake failed, how long to use HTTP/2 to it before trying
    /// HTTP/3 again.
    pub quic_retry_after: Duration,
    /// Send QUIC packets in batches through UDP segmentation offload (GSO), which saves a
    /// system call per packet. Some receivers read such a batch, when it arrives coalesced
    /// (loopback, veth, GRO), into one packet's buffer and drop it: Envoy 1.40's QUIC
    /// listener does. Turn it off to dial such peers.
    pub quic_segmentation_offload: bool,
}

/// Knobs of the HBONE server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerSettings {
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub max_concurrent_streams: u32,
    /// Max header list size we accept (requests).
    pub max_header_list_size: u32,
    /// Per-connection send buffer.
    pub max_send_buffer_size: usize,
    /// Time allowed for the TLS and HTTP/2 handshakes of a new connection.
    pub handshake_timeout: Duration,
    /// PING interval; `None` disables keep-alive pings.
    pub ping_interval: Option<Duration>,
    /// A PING unanswered this long kills the connection.
    pub ping_timeout: Duration,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            max_streams_per_connection: MAX_STREAMS_PER_CONNECTION,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            ping_interval: Some(Duration::from_secs(10)),
            ping_timeout: Duration::from_secs(20),
            max_header_list_size: 16 * 1024,
            quic_handshake_timeout: Duration::from_secs(2),
            quic_retry_after: Duration::from_secs(300),
            quic_segmentation_offload: true,
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            max_concurrent_streams: SERVER_MAX_CONCURRENT_STREAMS,
            max_header_list_size: 64 * 1024,
            max_send_buffer_size: 400 * 1024,
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Some(Duration::from_secs(10)),
            ping_timeout: Duration::from_secs(20),
        }
    }
}
