//! HTTP upgrades through the waypoint: authorized first, then joined byte for byte.

use super::*;

const NO_PRIVATE: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-private, namespace: demo}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews-v1}]
  action: DENY
  rules: [{to: [{operation: {paths: ["/private*"]}}]}]
"#;

/// Sends an HTTP/1.1 upgrade request for `path` to `reviews-v1` through node A and the
/// waypoint; returns the response head and the stream, positioned after the head.
async fn upgrade_request(
    mesh: &Mesh,
    path: &str,
    protocol: &str,
) -> (String, tokio::net::TcpStream, Vec<u8>) {
    let proxy = mesh.a.bound().socks5.expect("socks5");
    let to = SocketAddr::new(ip(mesh.net, [100, 2]), 80);
    let mut s = socks5_connect(proxy, ip(mesh.net, [1, 2]), &SocksTarget::Addr(to))
        .await
        .expect("socks5 to the service");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: reviews-v1.demo.svc.cluster.local\r\n\
         Connection: keep-alive, Upgrade\r\nUpgrade: {protocol}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write request");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        let n = tokio::time::timeout(STEP, s.read(&mut buf))
            .await
            .expect("response head in time")
            .expect("read");
        assert!(n > 0, "closed before a response head: {got:?}");
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let rest = got.split_off(end);
    (String::from_utf8_lossy(&got).to_lowercase(), s, rest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgraded_connections_are_authorized_then_joined_byte_for_byte() {
    let mesh = Mesh::start(87, &format!("{ROUTES}---{NO_PRIVATE}")).await;

    // Denied by L7 policy: a plain 403, and nothing switches.
    let (head, _, _) = upgrade_request(&mesh, "/private/ws", "websocket").await;
    assert!(head.starts_with("http/1.1 403"), "{head}");
    assert!(!head.contains("upgrade:"), "{head}");

    // Only WebSocket is offered: an h2c (or any other) upgrade goes on as a plain request, its
    // upgrade headers removed, so the app answers it as one.
    for other in ["h2c", "ambit-echo"] {
        let (head, _, _) = upgrade_request(&mesh, "/ws", other).await;
        assert!(head.starts_with("http/1.1 200"), "{other}: {head}");
        assert!(!head.contains("upgrade:"), "{other}: {head}");
    }

    // An upstream that switches protocols unasked is a protocol error, not a tunnel.
    let (status, body) = mesh.get([100, 2], "/rogue-101", &[]).await;
    assert_eq!((status, body.as_str()), (502, "upstream protocol error"));
    let (head, _, _) = upgrade_request(&mesh, "/ws-other-protocol", "websocket").await;
    assert!(head.starts_with("http/1.1 502"), "{head}");

    // Allowed: 101 with the protocol, then 1 MiB each way, in order, and half-close both ways.
    let (head, s, early) = upgrade_request(&mesh, "/ws", "WebSocket").await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(head.contains("connection: upgrade"), "{head}");
    let payload: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (mut rd, mut wr) = s.into_split();
    let sent = payload.clone();
    let writer = tokio::spawn(async move {
        for chunk in sent.chunks(7919) {
            wr.write_all(chunk).await.expect("write");
        }
        wr.shutdown().await.expect("half-close");
    });
    let mut echoed = early;
    tokio::time::timeout(STEP, rd.read_to_end(&mut echoed))
        .await
        .expect("echo and close in time")
        .expect("read");
    writer.await.expect("writer");
    let tail = b"app=reviews-v1 done";
    assert!(echoed.ends_with(tail), "no close marker after the echo");
    assert_eq!(echoed.len(), payload.len() + tail.len());
    assert!(echoed[..payload.len()] == payload[..], "echo differs");

    // Recorded once the joined connections have closed, with the bytes that crossed them.
    let sum = |metrics: &str, name: &str| -> Option<f64> {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!("{name}_sum{{")) && l.contains("response_code=\"101\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    let deadline = tokio::time::Instant::now() + STEP;
    let metrics = loop {
        let m = mesh.waypoint.metrics();
        if sum(&m, "istio_response_bytes").is_some() || tokio::time::Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(metrics.contains("response_code=\"403\""), "{metrics}");
    let up = sum(&metrics, "istio_request_bytes").expect("101 request bytes recorded");
    let down = sum(&metrics, "istio_response_bytes").expect("101 response bytes recorded");
    assert_eq!(up, payload.len() as f64);
    assert_eq!(down, (payload.len() + tail.len()) as f64);
}
