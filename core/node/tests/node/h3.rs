//! Node to node over HBONE/HTTP3: chosen per destination workload (`hbone_http3`) or per node
//! (`dial_h3`), and HTTP/2 when the peer node does not serve QUIC.

use std::net::SocketAddr;
use std::time::Duration;

use ambit_node::{NodeConfig, NodeProxy};
use ambit_state::State;
use ambit_test_util::TestPki;
use ambit_test_util::apps::{echo_through, tcp_echo};
use ambit_test_util::mesh::{ip, workload};
use ambit_test_util::nodes::{Listeners, node_config};
use ambit_test_util::socks5::{SocksTarget, socks5_connect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STEP: Duration = Duration::from_secs(30);

pub(super) fn state(net: u8, server_h3: bool) -> State {
    let mut s = State::new();
    s.insert_workload(workload(net, "client", "demo", "client", "node-a", [1, 2]))
        .expect("w");
    let mut server = workload(net, "server", "demo", "server", "node-b", [2, 2]);
    server.hbone_http3 = server_h3;
    s.insert_workload(server).expect("w");
    s
}

/// `ambit_hbone_tunnels_total{direction,transport}` of `node`.
fn tunnels(node: &NodeProxy, direction: &str, transport: &str) -> u64 {
    counter(
        node,
        &format!(
            "ambit_hbone_tunnels_total{{direction=\"{direction}\",transport=\"{transport}\"}} "
        ),
    )
}

/// The value of the series whose line starts with `series` (name, labels and a space).
pub(super) fn counter(node: &NodeProxy, series: &str) -> u64 {
    node.metrics()
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

/// Node A and node B on `127.<net>.0.1/2` serving `state`, their configs adjusted by `a` and
/// `b` first.
pub(super) async fn nodes(
    net: u8,
    state: State,
    a: impl FnOnce(&mut NodeConfig),
    b: impl FnOnce(&mut NodeConfig),
) -> (NodeProxy, NodeProxy) {
    let pki = TestPki::new();
    let mut ca = node_config(net, "node-a", 1, Listeners::All);
    a(&mut ca);
    let mut cb = node_config(net, "node-b", 2, Listeners::All);
    b(&mut cb);
    let source = pki.source();
    let a = NodeProxy::start(ca, state.clone(), source.clone(), pki.tls.clone())
        .await
        .expect("node A");
    let b = NodeProxy::start(cb, state, source, pki.tls.clone())
        .await
        .expect("node B");
    (a, b)
}

/// The two nodes after `echoes` 200 kB echoes from the client to a TCP app on the server:
/// the server workload marked for HTTP/3 or not, node B serving it or not, node A dialling
/// it for every peer or not.
async fn after_echoes(
    net: u8,
    server_h3: bool,
    b_serves_h3: bool,
    a_dials_h3: bool,
    echoes: usize,
) -> (NodeProxy, NodeProxy) {
    let (a, b) = nodes(
        net,
        state(net, server_h3),
        |a| a.dial_h3 = a_dials_h3,
        |b| b.serve_h3 = b_serves_h3,
    )
    .await;
    tcp_echo(SocketAddr::new(ip(net, [2, 2]), 8080))
        .await
        .expect("echo app");
    for _ in 0..echoes {
        echo(&a, net).await;
    }
    (a, b)
}

/// A 200 kB echo from the client through node A to the server on node B, half-closed.
async fn echo(a: &NodeProxy, net: u8) {
    let server = SocketAddr::new(ip(net, [2, 2]), 8080);
    let proxy = a.bound().socks5.expect("socks5");
    let mut s = tokio::time::timeout(
        STEP,
        socks5_connect(proxy, ip(net, [1, 2]), &SocksTarget::Addr(server)),
    )
    .await
    .expect("in time")
    .expect("allowed");
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(echo_through(&mut s, &payload).await.expect("echo"), payload);
    s.shutdown().await.expect("half-close");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.expect("clean end");
    assert!(rest.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_marked_for_http3_is_reached_over_quic() {
    let (a, b) = after_echoes(41, true, true, false, 1).await;
    assert_eq!(tunnels(&a, "outbound", "h3"), 1, "{}", a.metrics());
    assert_eq!(tunnels(&a, "outbound", "h2"), 0);
    assert_eq!(tunnels(&b, "inbound", "h3"), 1, "{}", b.metrics());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmarked_workloads_stay_on_http2() {
    let (a, b) = after_echoes(42, false, true, false, 1).await;
    assert_eq!(tunnels(&a, "outbound", "h2"), 1, "{}", a.metrics());
    assert_eq!(tunnels(&b, "inbound", "h2"), 1);
    assert_eq!(tunnels(&b, "inbound", "h3"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_dialling_http3_falls_back_to_http2_when_the_peer_has_no_quic() {
    let (a, b) = after_echoes(43, false, false, true, 2).await;
    assert_eq!(tunnels(&a, "outbound", "h2"), 2, "{}", a.metrics());
    assert_eq!(tunnels(&a, "outbound", "h3"), 0);
    assert_eq!(tunnels(&b, "inbound", "h2"), 2);
}
