//! Entry points for the fuzz targets in `fuzz/`; compiled only with `--cfg fuzzing`.

use std::net::SocketAddr;

use ambit_identity::SpiffeId;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::server::{Handler, Server};
use crate::tunnel::TunnelInfo;

/// Serves HTTP/2 on `io` exactly as [`Server::serve`] does after the TLS handshake of a
/// client authenticated as `peer_id`. Returns when the connection ends; fails only when the
/// HTTP/2 handshake does.
pub async fn serve_established<H, IO>(
    server: &Server<H>,
    io: IO,
    peer_id: SpiffeId,
    peer_addr: SocketAddr,
    local_addr: SocketAddr,
) -> Result<(), String>
where
    H: Handler,
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let info = TunnelInfo {
        peer_id,
        peer_addr,
        local_addr,
        transport: crate::Transport::Http2,
    };
    server.serve_established(io, info).await
}
