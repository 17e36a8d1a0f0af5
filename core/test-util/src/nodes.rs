//! Node proxies for tests and harnesses: node A and node B of a loopback mesh, set up the one
//! way every test and bench uses them.

use std::net::SocketAddr;

use ambit_node::{NodeConfig, NodeProxy, ProxyError};
use ambit_state::State;

use crate::TestPki;
use crate::mesh::ip;

/// Which of a test node's listeners are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listeners {
    /// SOCKS5 only (the way in for a test's clients).
    Socks5,
    /// SOCKS5, HTTP CONNECT, metrics, readiness and admin.
    All,
}

/// Settings for test node `node` listening on `127.<net>.0.<host>` (any port).
pub fn node_config(net: u8, node: &str, host: u8, listeners: Listeners) -> NodeConfig {
    let mut c = NodeConfig::new(node);
    let local = Some(SocketAddr::new(ip(net, [0, host]), 0));
    let all = listeners == Listeners::All;
    c.socks5 = local;
    c.http_connect = local.filter(|_| all);
    c.metrics = local.filter(|_| all);
    c.readiness = local.filter(|_| all);
    c.admin = local.filter(|_| all);
    c
}

/// Node A (`node-a` on `127.<net>.0.1`) and node B (`node-b` on `127.<net>.0.2`) serving
/// `state`, with certificates from `pki`.
pub async fn two_nodes(
    net: u8,
    state: State,
    pki: &TestPki,
    listeners: Listeners,
) -> Result<(NodeProxy, NodeProxy), ProxyError> {
    let source = pki.source();
    let a = NodeProxy::start(
        node_config(net, "node-a", 1, listeners),
        state.clone(),
        source.clone(),
        pki.tls.clone(),
    )
    .await?;
    let b = NodeProxy::start(
        node_config(net, "node-b", 2, listeners),
        state,
        source,
        pki.tls.clone(),
    )
    .await?;
    Ok((a, b))
}
