//! Socket helpers: accept loops, the original destination of a captured connection, resets.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

use crate::Node;

/// Where a listener's connection tasks belong: the node's (they run on their own), or a pod's
/// (the listener's loop owns them, so stopping the loop, as removing the pod does, ends them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The node's own listeners.
    #[default]
    Node,
    /// A pod's listeners (in-pod mode).
    Pod,
}

/// Spawns connection tasks in a [`Scope`].
#[derive(Debug, Default)]
pub(crate) struct Spawner {
    scope: Scope,
    pod: tokio::task::JoinSet<()>,
}

impl Spawner {
    pub(crate) fn new(scope: Scope) -> Self {
        Self {
            scope,
            pod: tokio::task::JoinSet::new(),
        }
    }

    /// Runs `task` for one connection: detached for the node, owned (and aborted with this
    /// spawner) for a pod. Pass the connection's future itself, not a wrapper around a moved
    /// one: a future moved into an `async` block is stored twice in it (measured: 7.9 KB per
    /// captured connection instead of 3.8 KB).
    pub(crate) fn spawn<T>(&mut self, task: T)
    where
        T: std::future::Future<Output = ()> + Send + 'static,
    {
        match self.scope {
            Scope::Node => drop(tokio::spawn(task)),
            Scope::Pod => {
                while self.pod.try_join_next().is_some() {}
                self.pod.spawn(task);
            }
        }
    }
}

/// Runs `handle` on its own task for every accepted client, however many accepts fail
/// ([`ambit_proxy::accept`]); a client's failure is logged at debug. In a pod's `scope` the
/// clients' tasks end when this loop does. `band` is the size band of one client's task
/// ([`ambit_proxy::size_between`]).
pub(crate) async fn accept_loop<F, Fut>(
    node: Arc<Node>,
    listener: TcpListener,
    what: &'static str,
    band: (usize, usize),
    scope: Scope,
    handle: F,
) where
    F: Fn(Arc<Node>, TcpStream, SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let errors = ambit_proxy::accept_errors(&node.metrics);
    let mut spawner = Spawner::new(scope);
    loop {
        let (s, peer) = ambit_proxy::accept(&listener, what, &errors).await;
        let peer = ambit_hbone::canonical(peer);
        // Relayed writes must not wait for the application's delayed ACK (Nagle): a response
        // that reaches us in two pieces would otherwise stall ~40 ms.
        let _ = s.set_nodelay(true);
        let (handle, node) = (handle.clone(), node.clone());
        // `handle` is called inside the task, so its future is stored once.
        let task = async move {
            if let Err(e) = handle(node, s, peer).await {
                debug!(%peer, error = %e, "{what} client dropped");
            }
        };
        ambit_proxy::size_between(band.0, band.1, &task);
        spawner.spawn(task);
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
