//! HBONE over HTTP/3 (QUIC, RFC 9114): ambit's extension to the Istio wire. One QUIC
//! connection per peer and source identity, one bidirectional stream per tunnel, classic
//! CONNECT (§4.4) with the same headers and status codes as HTTP/2. The HTTP/3 layer is our
//! own, over quinn: the h3 crate's client sends `:scheme` and `:path` on every CONNECT, which
//! makes a classic CONNECT malformed, and tunnels need a write path that does not wait per
//! frame. The codec modules are pure and fuzzed.

pub(crate) mod client;
pub(crate) mod codec;
pub(crate) mod conn;
pub(crate) mod datagram;
pub(crate) mod qpack;
pub(crate) mod server;
pub(crate) mod stream;

use std::net::SocketAddr;

use quinn::crypto::rustls::HandshakeData;
use rustls_pki_types::CertificateDer;

use crate::tunnel::{Transport, TunnelInfo};

/// Checks an established QUIC connection (ALPN h3, a SPIFFE identity) and describes it.
pub(crate) fn established(
    quic: &quinn::Connection,
    local: SocketAddr,
) -> Result<TunnelInfo, String> {
    let alpn = quic
        .handshake_data()
        .and_then(|d| d.downcast::<HandshakeData>().ok())
        .and_then(|d| d.protocol);
    if alpn.as_deref() != Some(ambit_tls::ALPN_H3) {
        return Err("peer did not negotiate ALPN h3".into());
    }
    let certs = quic
        .peer_identity()
        .and_then(|c| c.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or("peer presented no certificate")?;
    let leaf = certs.first().ok_or("peer presented no certificate")?;
    let peer_id = ambit_identity::spiffe_id_of(leaf).map_err(|e| e.to_string())?;
    Ok(TunnelInfo {
        peer_id,
        peer_addr: crate::canonical(quic.remote_address()),
        local_addr: crate::canonical(local),
        transport: Transport::Http3,
    })
}
