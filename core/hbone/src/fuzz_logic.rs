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

/// CONNECT-UDP capsules on arbitrary bytes: no panic, and the payloads found do not depend on
/// how the bytes were split on arrival (the first byte picks the split).
pub fn capsules(data: &[u8]) {
    use crate::udp::codec::CapsuleReader;
    let drain = |pieces: &[&[u8]]| {
        let mut r = CapsuleReader::default();
        let mut out = Vec::new();
        for p in pieces {
            r.push(bytes::Bytes::copy_from_slice(p));
            loop {
                match r.next() {
                    Ok(Some(d)) => {
                        assert!(d.len() <= crate::udp::codec::MAX_CAPSULE);
                        out.push(d);
                    }
                    Ok(None) => break,
                    Err(_) => return (out, true),
                }
            }
        }
        (out, false)
    };
    let at = data
        .first()
        .map_or(0, |b| usize::from(*b) % (data.len() + 1));
    let whole = drain(&[data]);
    let split = drain(&[&data[..at], &data[at..]]);
    assert_eq!(whole, split, "split at {at}");
    let _ = crate::udp::codec::parse_h3_datagram(bytes::Bytes::copy_from_slice(data));
    if let Ok(s) = std::str::from_utf8(data)
        && let Some(t) = crate::udp::codec::parse_path(s)
    {
        assert_eq!(
            crate::udp::codec::parse_path(&crate::udp::codec::path(t)),
            Some(t)
        );
    }
}

/// HTTP/3 wire decoding on arbitrary bytes: frame headers, SETTINGS and QPACK field sections
/// never panic; a decoded response's status and headers re-encode and decode to themselves.
#[cfg(feature = "h3")]
pub fn h3_wire(data: &[u8]) {
    use crate::h3::{codec, qpack};
    if let Some((h, n)) = codec::get_frame_header(data) {
        assert!(n <= data.len() && n <= 16);
        if h.ty == codec::frame::SETTINGS {
            let _ = codec::parse_settings(&data[n..]);
        }
    }
    let _ = codec::parse_settings(data);
    let Ok(f) = qpack::decode(data, 64 * 1024) else {
        return;
    };
    let mut again = bytes::BytesMut::new();
    let status = f.status.unwrap_or(http::StatusCode::OK);
    qpack::encode_response(status, &f.headers, &mut again);
    let back = qpack::decode(&again, 1 << 20).expect("our encoding decodes");
    assert_eq!(back.status, Some(status));
    assert_eq!(back.headers, f.headers);
}
