//! Socket helpers: accept loops, the original destination of a captured connection, resets.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::debug;

use crate::Node;

/// Where a listener's connections belong: ended together when the scope closes (a pod that
/// is removed), or never (the default, the node's own listeners).
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope(Option<watch::Receiver<bool>>);

impl Scope {
    /// A scope that closes when `closed` turns true (or its sender is dropped).
    pub(crate) fn new(closed: watch::Receiver<bool>) -> Self {
        Self(Some(closed))
    }

    /// Resolves when the scope closes; never for the default scope.
    pub(crate) async fn closed(&mut self) {
        match &mut self.0 {
            Some(rx) => {
                let _ = rx.wait_for(|c| *c).await;
            }
            None => std::future::pending().await,
        }
    }
}

/// Runs `handle` on its own task for every accepted client, however many accepts fail
/// ([`ambit_proxy::accept`]); a client's failure is logged at debug, and its task ends when
/// `scope` closes. `band` is the size band of one client's future ([`ambit_proxy::size_between`]).
pub(crate) async fn accept_loop<F, Fut>(
    node: Arc<Node>,
    listener: TcpListener,
    what: &'static str,
    band: (usize, usize),
    scope: Scope,
    handle: F,
) where
    F: Fn(Arc<Node>, TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let errors = ambit_proxy::accept_errors(&node.metrics);
    loop {
        let (s, peer) = ambit_proxy::accept(&listener, what, &errors).await;
        let peer = ambit_hbone::canonical(peer);
        // Relayed writes must not wait for the application's delayed ACK (Nagle): a response
        // that reaches us in two pieces would otherwise stall ~40 ms.
        let _ = s.set_nodelay(true);
        let work = handle(node.clone(), s, peer);
        ambit_proxy::size_between(band.0, band.1, &work);
        let mut scope = scope.clone();
        tokio::spawn(async move {
            tokio::select! {
                r = work => if let Err(e) = r {
                    debug!(%peer, error = %e, "{what} client dropped");
                },
                () = scope.closed() => debug!(%peer, "{what} client closed with its pod"),
            }
        });
    }
}

/// Makes closing `s` send a TCP reset (SO_LINGER 0): how an abnormal end is passed on.
pub(crate) fn reset(s: &TcpStream) {
    let _ = s.set_zero_linger();
}

/// The destination an iptables REDIRECT (or TPROXY) rewrote, from `SO_ORIGINAL_DST`. On a
/// dual-stack listener an IPv4 connection has a mapped local address and IPv4's option.
pub(crate) fn original_dst(s: &TcpStream) -> std::io::Result<SocketAddr> {
    use nix::sys::socket::{getsockopt, sockopt};
    let local = ambit_hbone::canonical(s.local_addr()?);
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
