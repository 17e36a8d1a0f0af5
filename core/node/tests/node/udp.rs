//! UDP through two node proxies: a forward listener on node A, CONNECT-UDP to node B, the
//! datagrams delivered to a UDP app and its answers back; L4 policy applies to flows.

use std::net::SocketAddr;
use std::time::Duration;

use ambit_node::NodeProxy;

use super::h3::{counter, state};
use ambit_node::udp::UdpForward;
use ambit_state::State;
use ambit_test_util::apps::udp_echo;
use ambit_test_util::mesh::ip;
use tokio::net::UdpSocket;

const STEP: Duration = Duration::from_secs(30);

async fn nodes(net: u8, state: State) -> (NodeProxy, NodeProxy) {
    let forward = |a: &mut ambit_node::NodeConfig| {
        a.udp_forwards = vec![UdpForward::new(
            SocketAddr::new(ip(net, [0, 1]), 0),
            ip(net, [1, 2]),
            SocketAddr::new(ip(net, [2, 2]), 5353),
        )];
        a.udp_idle_timeout = Duration::from_millis(300);
    };
    super::h3::nodes(net, state, forward, |_| {}).await
}

async fn wait_for(node: &NodeProxy, series: &str, at_least: u64) {
    let reached = tokio::time::timeout(STEP, async {
        while counter(node, series) < at_least {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "{series} never reached {at_least}:\n{}",
        node.metrics()
    );
}

/// Sends `n` datagrams through node A's forward and returns the answers.
async fn exchange(a: &NodeProxy, n: usize) -> Vec<String> {
    let fwd = a.bound().udp_forwards[0];
    let client = UdpSocket::bind(SocketAddr::new(fwd.ip(), 0))
        .await
        .expect("client socket");
    let mut answers = Vec::new();
    let mut buf = [0u8; 2048];
    for i in 0..n {
        client
            .send_to(format!("query {i}").as_bytes(), fwd)
            .await
            .expect("send");
        let got = tokio::time::timeout(STEP, client.recv_from(&mut buf))
            .await
            .expect("answer in time")
            .expect("recv");
        answers.push(String::from_utf8_lossy(&buf[..got.0]).into_owned());
    }
    answers
}

async fn carried(net: u8, h3: bool) {
    let (a, b) = nodes(net, state(net, h3)).await;
    udp_echo(SocketAddr::new(ip(net, [2, 2]), 5353))
        .await
        .expect("UDP app");
    let answers = exchange(&a, 3).await;
    for (i, got) in answers.iter().enumerate() {
        // The app sees the client workload's address, as node B relays from it.
        assert_eq!(got, &format!("{}|query {i}", ip(net, [1, 2])));
    }
    let transport = if h3 { "h3" } else { "h2" };
    let outbound =
        format!("ambit_hbone_tunnels_total{{direction=\"inbound\",transport=\"{transport}\"}} ");
    assert_eq!(counter(&b, &outbound), 1, "one flow for three datagrams");
    // The flow idles out on node A; node B sees its end and counts it.
    wait_for(
        &a,
        "ambit_udp_flows_total{direction=\"outbound\",result=\"ok\"} ",
        1,
    )
    .await;
    wait_for(
        &b,
        "ambit_udp_flows_total{direction=\"inbound\",result=\"ok\"} ",
        1,
    )
    .await;
    // Payload bytes, by the end they went toward, the same on both nodes.
    let queries: usize = (0..3).map(|i| format!("query {i}").len()).sum();
    let answered: usize = answers.iter().map(String::len).sum();
    for (node, direction) in [(&a, "outbound"), (&b, "inbound")] {
        for (toward, n) in [("destination", queries), ("source", answered)] {
            let series =
                format!("ambit_udp_bytes_total{{direction=\"{direction}\",toward=\"{toward}\"}} ");
            assert_eq!(counter(node, &series), n as u64, "{series}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_forward_over_http3_datagrams() {
    carried(51, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_forward_over_http2_capsules() {
    carried(52, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l4_policy_denies_udp_flows() {
    let net = 53;
    let yaml = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-dns, namespace: demo}
spec:
  action: DENY
  rules:
  - to:
    - operation: {ports: [\"5353\"]}
";
    let mut s = state(net, true);
    let loaded = ambit_authz::IstioPolicies::parse(yaml, "", "istio-system").expect("policy");
    loaded.apply_to(s.policies_mut());
    let (a, b) = nodes(net, s).await;
    udp_echo(SocketAddr::new(ip(net, [2, 2]), 5353))
        .await
        .expect("UDP app");
    let fwd = a.bound().udp_forwards[0];
    let client = UdpSocket::bind(SocketAddr::new(fwd.ip(), 0))
        .await
        .expect("socket");
    client.send_to(b"query", fwd).await.expect("send");
    wait_for(
        &a,
        "ambit_udp_flows_total{direction=\"outbound\",result=\"failed\"} ",
        1,
    )
    .await;
    let mut buf = [0u8; 64];
    assert!(
        client.try_recv_from(&mut buf).is_err(),
        "a denied flow delivers nothing"
    );
    assert_eq!(
        counter(
            &b,
            "ambit_hbone_tunnels_total{direction=\"inbound\",transport=\"h3\"} "
        ),
        0
    );
}

/// A SOCKS5 UDP ASSOCIATE (RFC 1928 §7) from the client workload, in raw bytes: the relay's
/// address in the reply; a datagram per target, each answer behind a header naming the target
/// it came from; fragments and strangers dropped; the flows end with the control connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_udp_associate_carries_one_flow_per_target() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let net = 54;
    // Flows that never idle out: only the association's end can end them.
    let (a, b) = super::h3::nodes(
        net,
        state(net, true),
        |a| a.udp_idle_timeout = Duration::from_secs(3600),
        |_| {},
    )
    .await;
    let std::net::IpAddr::V4(me) = ip(net, [1, 2]) else {
        unreachable!("IPv4 test addresses")
    };
    let targets = [5353, 5354].map(|p| SocketAddr::new(ip(net, [2, 2]), p));
    for t in targets {
        udp_echo(t).await.expect("UDP app");
    }
    let control = tokio::net::TcpSocket::new_v4().expect("socket");
    control
        .bind(SocketAddr::new(ip(net, [1, 2]), 0))
        .expect("bind");
    let mut control = control
        .connect(a.bound().socks5.expect("socks5"))
        .await
        .expect("connect");
    let client = UdpSocket::bind(SocketAddr::new(ip(net, [1, 2]), 0))
        .await
        .expect("client socket");
    let port = client.local_addr().expect("addr").port().to_be_bytes();
    control.write_all(&[5, 1, 0]).await.expect("greeting");
    let mut r = [0u8; 2];
    control.read_exact(&mut r).await.expect("method");
    assert_eq!(r, [5, 0]);
    // UDP ASSOCIATE, naming the address the datagrams will come from.
    let mut req = vec![5, 3, 0, 1];
    req.extend_from_slice(&me.octets());
    req.extend_from_slice(&port);
    control.write_all(&req).await.expect("request");
    let mut rep = [0u8; 10];
    control.read_exact(&mut rep).await.expect("reply");
    assert_eq!(rep[..4], [5, 0, 0, 1], "succeeded, IPv4 relay address");
    let relay = SocketAddr::from((
        [rep[4], rep[5], rep[6], rep[7]],
        u16::from_be_bytes([rep[8], rep[9]]),
    ));
    let header = |t: SocketAddr, frag: u8| {
        let SocketAddr::V4(t) = t else {
            unreachable!("IPv4 targets")
        };
        let mut h = vec![0, 0, frag, 1];
        h.extend_from_slice(&t.ip().octets());
        h.extend_from_slice(&t.port().to_be_bytes());
        h
    };
    // A fragment is dropped; were it carried, the first answer would be its echo.
    let mut d = header(targets[0], 1);
    d.extend_from_slice(b"fragment");
    client.send_to(&d, relay).await.expect("send");
    // A stranger's datagram (another port on the same address) is dropped: were it carried,
    // the flow to the first target would answer the stranger, not the client.
    let stranger = UdpSocket::bind(SocketAddr::new(ip(net, [1, 2]), 0))
        .await
        .expect("socket");
    let mut d = header(targets[0], 0);
    d.extend_from_slice(b"stranger");
    stranger.send_to(&d, relay).await.expect("send");
    let mut buf = [0u8; 2048];
    for (i, t) in targets.iter().enumerate() {
        let mut d = header(*t, 0);
        d.extend_from_slice(format!("query {i}").as_bytes());
        client.send_to(&d, relay).await.expect("send");
        let (n, from) = tokio::time::timeout(STEP, client.recv_from(&mut buf))
            .await
            .expect("answer in time")
            .expect("recv");
        assert_eq!(from, relay);
        let mut want = header(*t, 0);
        want.extend_from_slice(format!("{}|query {i}", ip(net, [1, 2])).as_bytes());
        assert_eq!(buf[..n], want[..], "answer {i} names its target");
    }
    drop(control);
    wait_for(
        &a,
        "ambit_udp_flows_total{direction=\"outbound\",result=\"ok\"} ",
        2,
    )
    .await;
    assert_eq!(
        counter(
            &b,
            "ambit_hbone_tunnels_total{direction=\"inbound\",transport=\"h3\"} "
        ),
        2,
        "one flow per target, the fragment and the stranger opened none"
    );
    assert!(
        stranger.try_recv_from(&mut buf).is_err(),
        "the stranger got no answer"
    );
}
