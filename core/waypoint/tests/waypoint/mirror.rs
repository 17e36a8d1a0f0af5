//! Mirrored requests are bounded: a cap on those in flight (beyond it they are dropped and
//! counted, never queued) and a timeout, with every outcome in `ambit_mirror_requests_total`.

use super::*;

/// Routes on `reviews-v1` (mirrors with no timeout of their own) and `reviews-v2` (a 400 ms
/// request timeout, which bounds its mirrors too), both mirroring to `silent`.
const ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: held, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews-v1, port: 80}]
  rules:
  - filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: silent, port: 80}}
    backendRefs: [{name: reviews-v1, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: timed, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews-v2, port: 80}]
  rules:
  - timeouts: {request: 400ms}
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: silent, port: 80}}
    backendRefs: [{name: reviews-v2, port: 80}]
"#;

/// An app that counts each request it reads and answers none until `release` turns true.
async fn silent_app(
    addr: SocketAddr,
    seen: Arc<AtomicU32>,
    release: tokio::sync::watch::Receiver<bool>,
) {
    let l = TcpListener::bind(addr).await.expect("bind silent app");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let (seen, mut release) = (seen.clone(), release.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                seen.fetch_add(1, Ordering::SeqCst);
                if release.wait_for(|r| *r).await.is_ok() {
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                }
            });
        }
    });
}

/// The value of `ambit_mirror_requests_total{result}` (0 when absent).
fn outcome(metrics: &str, result: &str) -> u64 {
    let prefix = format!("ambit_mirror_requests_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Waits until `ready` holds for the waypoint's metrics; returns them.
async fn until(mesh: &Mesh, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    let reached = tokio::time::timeout(STEP, async {
        loop {
            last = mesh.waypoint.metrics();
            if ready(&last) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(reached.is_ok(), "never saw {what}: {last}");
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_are_capped_timed_out_and_counted() {
    let net = 64;
    let mesh = Mesh::start_with(net, ROUTES, |wc| {
        wc.max_mirrors_in_flight = 2;
        wc.mirror_timeout = Duration::from_secs(600);
    })
    .await;
    let seen = Arc::new(AtomicU32::new(0));
    let (release, held) = tokio::sync::watch::channel(false);
    silent_app(SocketAddr::new(ip(net, [2, 5]), 8080), seen.clone(), held).await;

    // The rule's timeout bounds its mirror: the silent backend never answers, the primary does.
    let (s, body) = mesh.get([100, 3], "/timed", &[]).await;
    assert_eq!(s, 200, "{body}");
    until(&mesh, "a mirror timing out", |m| outcome(m, "timeout") == 1).await;

    // Two mirrors wait on the silent backend and hold both permits; the next three are dropped
    // at once, while every primary request is answered.
    for _ in 0..2 {
        assert_eq!(mesh.get([100, 2], "/held", &[]).await.0, 200);
    }
    let seen_now = tokio::time::timeout(STEP, async {
        while seen.load(Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(seen_now.is_ok(), "the mirrors never arrived");
    for _ in 0..3 {
        assert_eq!(mesh.get([100, 2], "/held", &[]).await.0, 200);
    }
    let m = mesh.waypoint.metrics();
    assert_eq!(outcome(&m, "dropped"), 3, "{m}");
    assert_eq!(seen.load(Ordering::SeqCst), 3, "a dropped mirror was sent");

    // Once answered, the held two count as sent and their permits are back.
    release.send_replace(true);
    until(&mesh, "the held mirrors sent", |m| outcome(m, "sent") == 2).await;
    assert_eq!(mesh.get([100, 2], "/held", &[]).await.0, 200);
    let m = until(&mesh, "a third mirror sent", |m| outcome(m, "sent") == 3).await;
    assert_eq!(
        (outcome(&m, "dropped"), outcome(&m, "timeout")),
        (3, 1),
        "{m}"
    );
}
