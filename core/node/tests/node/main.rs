//! Two node proxies on loopback: a client workload on node A reaches a server workload on
//! node B through SOCKS5 → HBONE → inbound, with policy, metrics and live policy changes.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ambit_node::NodeProxy;
use ambit_state::State;
use ambit_test_util::TestPki;
use ambit_test_util::apps::{echo_through, tcp_echo};
use ambit_test_util::mesh::{ip, workload};
use ambit_test_util::nodes::{Listeners, two_nodes};
use ambit_test_util::socks5::{SocksError, SocksTarget, socks5_connect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

mod h3;
mod hardening;
mod udp;

const STEP: Duration = Duration::from_secs(30);

/// A two-node mesh on `127.<net>.0.0/16`: node A hosts clients on 127.<net>.1.x, node B hosts
/// servers on 127.<net>.2.x.
struct Mesh {
    a: NodeProxy,
    b: NodeProxy,
}

impl Mesh {
    async fn start(net: u8, state: State) -> Self {
        let (a, b) = two_nodes(net, state, &TestPki::new(), Listeners::All)
            .await
            .expect("nodes");
        Self { a, b }
    }

    async fn set(&self, state: State) -> (usize, usize) {
        (self.a.sync(state.clone()).await, self.b.sync(state).await)
    }

    /// SOCKS5 CONNECT from `from` (a client workload address) via node A to `to`; the error
    /// is the SOCKS5 reply code.
    async fn socks(&self, from: IpAddr, to: SocketAddr) -> Result<TcpStream, u8> {
        let proxy = self.a.bound().socks5.expect("socks5");
        match socks5_connect(proxy, from, &SocksTarget::Addr(to)).await {
            Ok(s) => Ok(s),
            Err(SocksError::Refused(code)) => Err(code),
            Err(SocksError::Io(e)) => panic!("SOCKS5 through node A failed: {e}"),
        }
    }
}

fn base_state(net: u8) -> State {
    let mut s = State::new();
    s.insert_workload(workload(net, "client", "demo", "client", "node-a", [1, 2]))
        .expect("w");
    s.insert_workload(workload(net, "server", "demo", "server", "node-b", [2, 2]))
        .expect("w");
    s
}

fn with_policies(mut s: State, yaml: &str) -> State {
    let loaded = ambit_authz::IstioPolicies::parse(yaml, "", "istio-system").expect("policies");
    loaded.apply_to(s.policies_mut());
    s
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_through_two_nodes_with_metrics_that_match_the_bytes() {
    let net = 11;
    let mesh = Mesh::start(net, base_state(net)).await;
    let server = SocketAddr::new(ip(net, [2, 2]), 8080);
    tcp_echo(server).await.expect("echo app");
    let mut s = mesh.socks(ip(net, [1, 2]), server).await.expect("allowed");
    let payload = vec![7u8; 100_000];
    assert_eq!(echo_through(&mut s, &payload).await.expect("echo"), payload);
    s.shutdown().await.expect("half-close");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.expect("clean end");
    drop(s);

    // Both nodes count the connection once it is closed; bytes match what was sent.
    let closed = "istio_tcp_connections_closed_total";
    let done = (
        wait_for_sum(&mesh.a, "source", closed, 1.0).await,
        wait_for_sum(&mesh.b, "destination", closed, 1.0).await,
    );
    for (text, reporter) in [(&done.0, "source"), (&done.1, "destination")] {
        let samples = parse_prometheus(text);
        let get = |name: &str| {
            samples
                .iter()
                .filter(|(n, l, _)| {
                    n == name && l.get("reporter").map(String::as_str) == Some(reporter)
                })
                .map(|(_, _, v)| *v)
                .sum::<f64>()
        };
        assert_eq!(get("istio_tcp_connections_opened_total"), 1.0, "{text}");
        assert_eq!(get("istio_tcp_connections_closed_total"), 1.0, "{text}");
        assert_eq!(
            get("istio_tcp_sent_bytes_total"),
            100_000.0,
            "{reporter}: {text}"
        );
        assert_eq!(
            get("istio_tcp_received_bytes_total"),
            100_000.0,
            "{reporter}: {text}"
        );
        let (_, labels, _) = samples
            .iter()
            .find(|(n, _, _)| n == "istio_tcp_sent_bytes_total")
            .expect("series");
        assert_eq!(labels["source_workload"], "client");
        assert_eq!(labels["destination_workload"], "server");
        assert_eq!(
            labels["source_principal"],
            "spiffe://cluster.local/ns/demo/sa/client"
        );
        assert_eq!(
            labels["destination_principal"],
            "spiffe://cluster.local/ns/demo/sa/server"
        );
        assert_eq!(labels["connection_security_policy"], "mutual_tls");
        assert_eq!(labels["request_protocol"], "tcp");
        assert_eq!(labels["response_flags"], "-");
    }
    // And over HTTP, as Prometheus scrapes it.
    let scraped = http_get(
        mesh.b.bound().metrics.expect("metrics"),
        "/stats/prometheus",
    )
    .await;
    assert!(scraped.starts_with("HTTP/1.1 200 OK"), "{scraped}");
    assert!(
        scraped.contains("istio_tcp_received_bytes_total{reporter=\"destination\""),
        "{scraped}"
    );
    let ready = http_get(
        mesh.a.bound().readiness.expect("readiness"),
        "/healthz/ready",
    )
    .await;
    assert!(ready.starts_with("HTTP/1.1 200 OK"), "{ready}");
    let dump = http_get(mesh.a.bound().admin.expect("admin"), "/config_dump").await;
    assert!(
        dump.contains("\"identity\":\"spiffe://cluster.local/ns/demo/sa/server\""),
        "{dump}"
    );
}

/// A stream longer than tokio's cooperative budget, in both directions at once: every byte
/// comes back in order. A copy loop that retried a budget-refused read without yielding spun
/// here for ever: the timeout then fails the read, but the spinning task also keeps the test's
/// runtime from shutting down, so such a regression shows as a hung test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_stream_crosses_both_nodes_whole() {
    let net = 17;
    let mesh = Mesh::start(net, base_state(net)).await;
    let server = SocketAddr::new(ip(net, [2, 2]), 8080);
    tcp_echo(server).await.expect("echo app");
    let s = mesh.socks(ip(net, [1, 2]), server).await.expect("allowed");
    let (mut r, mut w) = tokio::io::split(s);
    let payload = ambit_test_util::payload(32 << 20, 17);
    let sent = payload.clone();
    let writer = tokio::spawn(async move {
        for chunk in sent.chunks(4096) {
            w.write_all(chunk).await?;
        }
        w.shutdown().await
    });
    let mut back = Vec::with_capacity(payload.len());
    tokio::time::timeout(Duration::from_secs(120), r.read_to_end(&mut back))
        .await
        .expect("the stream ends (no copy loop spins)")
        .expect("clean end");
    writer.await.expect("writer").expect("written");
    assert!(
        back == payload,
        "{} of {} bytes, or out of order",
        back.len(),
        payload.len()
    );
}

/// Parses Prometheus text exposition strictly enough to catch malformed output.
fn parse_prometheus(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        assert!(!line.starts_with('#'), "stray comment: {line}");
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (
                n,
                rest.strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed: {line}")),
            ),
            None => (series, ""),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name: {line}"
        );
        let mut map = BTreeMap::new();
        let mut rest = labels;
        while !rest.is_empty() {
            let (k, after) = rest
                .split_once("=\"")
                .unwrap_or_else(|| panic!("bad label: {line}"));
            let mut value = String::new();
            let mut chars = after.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end.unwrap_or_else(|| panic!("unterminated label: {line}"));
            map.insert(k.to_owned(), value);
            rest = after[end + 1..]
                .strip_prefix(',')
                .unwrap_or(&after[end + 1..]);
        }
        out.push((name.to_owned(), map, value));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_connections_get_socks_not_allowed_and_a_deny_metric() {
    let net = 12;
    let state = with_policies(
        base_state(net),
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-frontend, namespace: demo}
spec:
  rules:
  - from: [{source: {principals: ["cluster.local/ns/demo/sa/frontend"]}}]
"#,
    );
    let mesh = Mesh::start(net, state).await;
    let server = SocketAddr::new(ip(net, [2, 2]), 8080);
    tcp_echo(server).await.expect("echo app");
    let err = mesh
        .socks(ip(net, [1, 2]), server)
        .await
        .expect_err("denied");
    assert_eq!(err, 2, "SOCKS5 'connection not allowed by ruleset'");
    let text = mesh.b.metrics();
    assert!(text.contains("response_flags=\"DENY\""), "{text}");
    assert!(
        text.contains("istio_tcp_connections_failed_total{reporter=\"destination\""),
        "{text}"
    );
    // An address that is not a mesh workload on node A cannot use its SOCKS port.
    let stranger = mesh
        .socks(ip(net, [1, 99]), server)
        .await
        .expect_err("unknown source");
    assert_eq!(stranger, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_change_closes_a_now_denied_open_connection() {
    let net = 13;
    let mesh = Mesh::start(net, base_state(net)).await;
    let server = SocketAddr::new(ip(net, [2, 2]), 8080);
    tcp_echo(server).await.expect("echo app");
    let mut s = mesh
        .socks(ip(net, [1, 2]), server)
        .await
        .expect("allowed at first");
    assert_eq!(
        echo_through(&mut s, b"hello").await.expect("echo"),
        b"hello"
    );
    assert_eq!(mesh.b.open_connections(), 1);
    // The open connection's bytes are in both nodes' metrics before it closes.
    for (node, reporter) in [(&mesh.a, "source"), (&mesh.b, "destination")] {
        let seen = wait_for_sum(node, reporter, "istio_tcp_received_bytes_total", 5.0).await;
        assert_eq!(
            sum(&seen, reporter, "istio_tcp_sent_bytes_total"),
            5.0,
            "{seen}"
        );
        assert_eq!(
            sum(&seen, reporter, "istio_tcp_connections_closed_total"),
            0.0,
            "{seen}"
        );
    }
    let deny = with_policies(
        base_state(net),
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-client, namespace: demo}
spec:
  action: DENY
  rules:
  - from: [{source: {principals: ["cluster.local/ns/demo/sa/client"]}}]
"#,
    );
    let (_, closed_on_b) = mesh.set(deny).await;
    assert_eq!(closed_on_b, 1);
    // The client sees its connection end.
    let mut buf = [0u8; 16];
    let outcome = tokio::time::timeout(STEP, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        outcome.is_ok(),
        "connection stayed open after the policy change"
    );
    // And a new one is refused.
    assert_eq!(mesh.socks(ip(net, [1, 2]), server).await.err(), Some(2));
    // The revoked connection is counted as failed with the bytes it carried, not zero.
    let seen = wait_for_sum(
        &mesh.b,
        "destination",
        "istio_tcp_connections_failed_total",
        2.0,
    )
    .await;
    assert_eq!(
        sum(&seen, "destination", "istio_tcp_sent_bytes_total"),
        5.0,
        "{seen}"
    );
    assert_eq!(
        sum(&seen, "destination", "istio_tcp_received_bytes_total"),
        5.0,
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_are_counted_in_the_direction_they_cross() {
    // A short request and a longer answer: each reporter counts from its own side, so the
    // source sent the request and the destination sent the answer.
    let net = 16;
    let mesh = Mesh::start(net, base_state(net)).await;
    let server = SocketAddr::new(ip(net, [2, 2]), 8080);
    ambit_test_util::apps::http_hello(server, "server")
        .await
        .expect("app");
    let mut s = mesh.socks(ip(net, [1, 2]), server).await.expect("allowed");
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    s.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.expect("answer");
    assert!(answer.len() > request.len() * 2, "{answer:?}");
    drop(s);
    let (req, resp) = (request.len() as f64, answer.len() as f64);
    let a = wait_for_sum(&mesh.a, "source", "istio_tcp_connections_closed_total", 1.0).await;
    assert_eq!(sum(&a, "source", "istio_tcp_sent_bytes_total"), req, "{a}");
    assert_eq!(
        sum(&a, "source", "istio_tcp_received_bytes_total"),
        resp,
        "{a}"
    );
    let b = wait_for_sum(
        &mesh.b,
        "destination",
        "istio_tcp_connections_closed_total",
        1.0,
    )
    .await;
    assert_eq!(
        sum(&b, "destination", "istio_tcp_sent_bytes_total"),
        resp,
        "{b}"
    );
    assert_eq!(
        sum(&b, "destination", "istio_tcp_received_bytes_total"),
        req,
        "{b}"
    );
}

/// The sum of `name`'s series reported by `reporter` in `text`.
fn sum(text: &str, reporter: &str, name: &str) -> f64 {
    parse_prometheus(text)
        .iter()
        .filter(|(n, l, _)| n == name && l.get("reporter").map(String::as_str) == Some(reporter))
        .map(|(_, _, v)| *v)
        .sum()
}

/// `node`'s metrics once `name`'s sum for `reporter` reaches `at_least`.
async fn wait_for_sum(node: &NodeProxy, reporter: &str, name: &str, at_least: f64) -> String {
    let mut text = String::new();
    let reached = tokio::time::timeout(STEP, async {
        loop {
            text = node.metrics();
            if sum(&text, reporter, name) >= at_least {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(reached.is_ok(), "{name} never reached {at_least}: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_l4_table_end_to_end_through_two_node_proxies() {
    let cases = ambit_test_util::cases::l4();
    let net = 14;
    let mesh = Mesh::start(net, State::new()).await;
    let mut ran = 0;
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        // Over HBONE every source has a cluster.local identity and a loopback address; the
        // plaintext and foreign-address cases are covered by the engine test.
        let Some(principal) = case.connection.source.as_deref() else {
            continue;
        };
        if case.connection.source_ip.is_some() || !principal.starts_with("cluster.local/") {
            continue;
        }
        let id = ambit_identity::SpiffeId::from_principal(principal).expect("principal");
        let (Some(ns), Some(sa)) = (id.namespace(), id.service_account()) else {
            continue;
        };
        let host = u8::try_from(10 + i).expect("few cases");
        let mut state = State::new();
        let client = workload(net, &format!("client-{i}"), ns, sa, "node-a", [1, host]);
        let mut server = workload(
            net,
            &format!("server-{i}"),
            &case.workload.namespace,
            "server",
            "node-b",
            [2, host],
        );
        server.labels = case.workload.labels.clone();
        state.insert_workload(client).expect("client");
        state.insert_workload(server).expect("server");
        let state = with_policies(state, &case.policies);
        mesh.set(state).await;
        let target = SocketAddr::new(ip(net, [2, host]), case.connection.port);
        tcp_echo(target).await.expect("echo app");
        let outcome = mesh.socks(ip(net, [1, host]), target).await;
        let allowed = match outcome {
            Ok(mut s) => echo_through(&mut s, b"ping").await.is_ok(),
            Err(2) => false,
            Err(code) => {
                failures.push(format!("{}: unexpected SOCKS5 code {code}", case.name));
                continue;
            }
        };
        ran += 1;
        if allowed != case.expect.allow {
            failures.push(format!(
                "{}: allowed={allowed}, want {}",
                case.name, case.expect.allow
            ));
        }
    }
    eprintln!("{ran} of {} table cases ran end to end", cases.len());
    assert!(ran >= 30, "only {ran} cases ran end to end");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connect_listener_tunnels_and_refuses_with_403() {
    let net = 15;
    let state = with_policies(
        base_state(net),
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-only-8080, namespace: demo}
spec:
  rules:
  - to: [{operation: {ports: ["8080"]}}]
"#,
    );
    let mesh = Mesh::start(net, state).await;
    let proxy = mesh.a.bound().http_connect.expect("http connect");
    for (port, want) in [(8080u16, "HTTP/1.1 200"), (9090, "HTTP/1.1 403")] {
        let target = SocketAddr::new(ip(net, [2, 2]), port);
        tcp_echo(target).await.expect("echo app");
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(ip(net, [1, 2]), 0))
            .expect("bind");
        let mut s = socket.connect(proxy).await.expect("connect");
        s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
            .await
            .expect("request");
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = tokio::time::timeout(STEP, s.read(&mut b))
                .await
                .expect("in time")
                .expect("read");
            assert_eq!(n, 1, "proxy closed before answering");
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with(want), "port {port}: {head}");
        if port == 8080 {
            assert_eq!(
                echo_through(&mut s, b"over connect").await.expect("echo"),
                b"over connect"
            );
        }
    }
}

/// A gate the embedder names in the config holds `/healthz/ready` at 503 from the moment the
/// listener is up (no probe can see 200 before, say, the first control-plane sync), until the
/// embedder lifts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_gates_hold_from_the_first_probe_until_lifted() {
    let net = 56;
    let mut c = ambit_test_util::nodes::node_config(net, "node-a", 1, Listeners::All);
    c.readiness_gates
        .push(("xds".into(), "waiting for the first sync".into()));
    let pki = TestPki::new();
    let node = NodeProxy::start(c, base_state(net), pki.source(), pki.tls.clone())
        .await
        .expect("node");
    let addr = node.bound().readiness.expect("readiness");
    let held = http_get(addr, "/healthz/ready").await;
    assert!(held.starts_with("HTTP/1.1 503"), "{held}");
    assert!(
        held.contains("xds") && held.contains("waiting for the first sync"),
        "{held}"
    );
    node.readiness().unblock("xds");
    let ready = http_get(addr, "/healthz/ready").await;
    assert!(ready.starts_with("HTTP/1.1 200 OK"), "{ready}");
}

/// `Updater::settled` returns only once a pushed local workload's HBONE port is bound: a
/// daemon that says ready after it never sends peers to a closed port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settled_means_a_pushed_local_workload_is_listening() {
    let net = 57;
    let (a, b) = two_nodes(net, State::new(), &TestPki::new(), Listeners::Socks5)
        .await
        .expect("nodes");
    let server = SocketAddr::new(ip(net, [2, 2]), 8080);
    tcp_echo(server).await.expect("echo app");
    let updater = b.updater();
    updater.update(base_state(net));
    updater.settled().await;
    let hbone = SocketAddr::new(ip(net, [2, 2]), 15008);
    TcpStream::connect(hbone)
        .await
        .expect("node B's HBONE port for the pushed workload is bound once settled");
    a.sync(base_state(net)).await;
    let proxy = a.bound().socks5.expect("socks5");
    let mut s = socks5_connect(proxy, ip(net, [1, 2]), &SocksTarget::Addr(server))
        .await
        .expect("through the mesh");
    assert_eq!(
        echo_through(&mut s, b"settled").await.expect("echo"),
        b"settled"
    );
}
