//! Socket helpers: accept loops, the original destination of a captured connection, resets.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

use crate::Node;

/// Runs `handle` on its own task for every accepted client; failures are logged at debug.
/// `band` is the size band of one client's future ([`ambit_proxy::size_between`]).
pub(crate) async fn accept_loop<F, Fut>(
    node: Arc<Node>,
    listener: TcpListener,
    what: &'static str,
    band: (usize, usize),
    handle: F,
) where
    F: Fn(Arc<Node>, TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    while let Ok((s, peer)) = listener.accept().await {
        // Relayed writes must not wait for the application's delayed ACK (Nagle): a response
        // that reaches us in two pieces would otherwise stall ~40 ms.
        let _ = s.set_nodelay(true);
        let work = handle(node.clone(), s, peer);
        ambit_proxy::size_between(band.0, band.1, &work);
        tokio::spawn(async move {
            if let Err(e) = work.await {
                debug!(%peer, error = %e, "{what} client dropped");
            }
        });
    }
}

/// Makes closing `s` send a TCP reset (SO_LINGER 0): how an abnormal end is passed on.
pub(crate) fn reset(s: &TcpStream) {
    let _ = s.set_zero_linger();
}

/// The destination an iptables REDIRECT (or TPROXY) rewrote, from `SO_ORIGINAL_DST`.
pub(crate) fn original_dst(s: &TcpStream) -> std::io::Result<SocketAddr> {
    use nix::sys::socket::{getsockopt, sockopt};
    let local = s.local_addr()?;
    if local.is_ipv4() {
        let a = getsockopt(s, sockopt::OriginalDst).map_err(std::io::Error::from)?;
        Ok(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
            u16::from_be(a.sin_port),
        )))
    } else {
        let a = getsockopt(s, sockopt::Ip6tOriginalDst).map_err(std::io::Error::from)?;
        Ok(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(a.sin6_addr.s6_addr),
            u16::from_be(a.sin6_port),
            0,
            0,
        )))
    }
}
