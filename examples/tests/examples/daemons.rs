//! The example daemons as a user runs them: `ambit-demo` end to end, and two `ambit-ztunnel`
//! processes with Debian's curl going through node A's SOCKS5 port to an HTTP server behind
//! node B, across live config reloads (a broken file keeps the last good config).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStderr, Command};

const STEP: Duration = Duration::from_secs(60);

#[tokio::test]
async fn demo_runs_the_tour_and_exits_zero() {
    let out = tokio::time::timeout(
        STEP,
        Command::new(env!("CARGO_BIN_EXE_ambit-demo"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("demo finished in time")
    .expect("run demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "frontend       cart (svc:80)   allowed   allowed by shop/cart-from-frontend",
        "hello from cart (connection from 127.0.1.10)",
        "batch          cart (svc:80)   DENIED    denied: allow policies exist, but none allowed",
        "legacy-report  cart (svc:80)   DENIED    denied by istio-system/deny-legacy",
        "cart           db :5432        allowed   allowed by shop/db-from-cart",
        "source_workload=batch destination_workload=cart response_flags=DENY => 1",
        "all data-path results match the policy engine.",
        "GET / with x-feature: beta      -> HTTP 200: hello from reviews-v2",
        "GET /admin without a token      -> HTTP 403: RBAC: access denied",
        "GET /admin with a demo JWT      -> HTTP 200",
        "GET /admin with an expired JWT  -> HTTP 401: Jwt is expired",
        "reporter=waypoint source_workload=frontend destination_workload=reviews-v2 response_code=200",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

/// A CA for `cluster.local` in `dir/ca`, made by `ambitctl ca init` as a user would.
async fn ca_init(dir: &Path) {
    let ctl = Command::new(env!("CARGO_BIN_EXE_ambitctl"))
        .args(["ca", "init", "--trust-domain", "cluster.local", "--dir"])
        .arg(dir.join("ca"))
        .output()
        .await
        .expect("ambitctl");
    assert!(
        ctl.status.success(),
        "{}",
        String::from_utf8_lossy(&ctl.stderr)
    );
}

fn config(net: u8, policies: &str) -> String {
    format!(
        r#"workloads:
- {{uid: t/client, name: client, namespace: demo, serviceAccount: client, workloadIps: [127.{net}.1.2], node: node-a}}
- {{uid: t/web, name: web, namespace: demo, serviceAccount: web, workloadIps: [127.{net}.2.2], node: node-b}}
{policies}"#
    )
}

struct Daemon {
    _child: Child,
    stderr: Lines<BufReader<ChildStderr>>,
    name: &'static str,
    /// Every line read so far.
    log: Vec<String>,
}

/// `bin` as the tests run a daemon: info logs on a piped stderr (no `NO_COLOR`: a daemon must
/// see for itself that stderr is not a terminal), killed when dropped.
fn daemon(bin: &str) -> Command {
    let mut c = Command::new(bin);
    c.env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

impl Daemon {
    /// Starts `bin` with `args` and waits for its ready line.
    async fn spawn(name: &'static str, bin: &str, args: &[String], ready: &str) -> Self {
        let mut child = daemon(bin)
            .args(args)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut d = Self {
            _child: child,
            stderr,
            name,
            log: Vec::new(),
        };
        d.wait_for(ready).await;
        d
    }

    async fn start(dir: &Path, node: &str, host: u8, net: u8) -> Self {
        Self::start_logging(dir, node, host, net, "text").await
    }

    /// [`Daemon::start`] with `LOG_FORMAT` set to `format`.
    async fn start_logging(dir: &Path, node: &str, host: u8, net: u8, format: &str) -> Self {
        let at = |port: u16| format!("127.{net}.0.{host}:{port}");
        let mut child = daemon(env!("CARGO_BIN_EXE_ambit-ztunnel"))
            .env("LOG_FORMAT", format)
            .arg("--config")
            .arg(dir.join("local.yaml"))
            .args(["--node", node, "--ca-dir"])
            .arg(dir.join("ca"))
            .args(["--socks5", &at(15080), "--metrics", &at(15020)])
            .args([
                "--readiness",
                &at(15021),
                "--admin",
                &at(15000),
                "--reload-secs",
                "1",
            ])
            .spawn()
            .expect("spawn ambit-ztunnel");
        let stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut d = Self {
            _child: child,
            stderr,
            name: "ambit-ztunnel",
            log: Vec::new(),
        };
        d.wait_for("ambit-ztunnel ready").await;
        d
    }

    /// Reads the log until a line contains `needle`; returns that line.
    async fn wait_for(&mut self, needle: &str) -> String {
        self.lines_until(needle).await.pop().unwrap_or_default()
    }

    /// Reads the log until a line contains `needle`; returns every line read, that one last.
    async fn lines_until(&mut self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let found = tokio::time::timeout(STEP, async {
            while let Ok(Some(line)) = self.stderr.next_line().await {
                assert!(
                    !line.contains('\u{1b}'),
                    "{}: escape codes in a log that is not a terminal: {line:?}",
                    self.name
                );
                let done = line.contains(needle);
                seen.push(line);
                if done {
                    return true;
                }
            }
            false
        })
        .await;
        if found != Ok(true) {
            panic!(
                "{} never logged {needle:?}; log:\n{}",
                self.name,
                seen.join("\n")
            );
        }
        self.log.extend(seen.iter().cloned());
        seen
    }
}

/// Debian's curl through a SOCKS5 proxy, from a workload's address.
async fn curl(socks: &str, from: &str, url: &str) -> (bool, String) {
    curl_with(socks, from, url, &[]).await
}

/// [`curl`] with extra arguments.
async fn curl_with(socks: &str, from: &str, url: &str, extra: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--max-time",
            "20",
            "--socks5",
            socks,
            "--interface",
            from,
        ])
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(STEP, out)
        .await
        .expect("curl in time")
        .expect("run curl (scripts/test installs it)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ztunnels_with_curl_socks5_and_live_reloads() {
    let net = 21;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    ca_init(dir).await;
    std::fs::write(dir.join("local.yaml"), config(net, "")).expect("write config");

    // The web application behind node B.
    let app = TcpListener::bind(format!("127.{net}.2.2:8080"))
        .await
        .expect("bind app");
    tokio::spawn(async move {
        while let Ok((mut s, peer)) = app.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let body = format!("web saw {}\n", peer.ip());
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });

    let mut b = Daemon::start(dir, "node-b", 2, net).await;
    let mut a = Daemon::start(dir, "node-a", 1, net).await;
    let socks = format!("127.{net}.0.1:15080");
    let from = format!("127.{net}.1.2");
    let url = format!("http://127.{net}.2.2:8080/");

    let (ok, text) = curl(&socks, &from, &url).await;
    assert!(ok, "allowed request failed: {text}");
    assert_eq!(text, format!("web saw 127.{net}.1.2\n"));

    // A broken config: both nodes keep the last good one, and say which file and field.
    std::fs::write(
        dir.join("local.yaml"),
        "workloads: [{uid: x, name: x, namespace: demo, workloadIps: [nope]}]\n",
    )
    .expect("write broken config");
    let err = b.wait_for("configuration not reloaded").await;
    assert!(
        err.contains("local.yaml") && err.contains("workloadIps[0]"),
        "{err}"
    );
    a.wait_for("configuration not reloaded").await;
    let (ok, text) = curl(&socks, &from, &url).await;
    assert!(ok, "last good config was not kept: {text}");

    // A valid config with a DENY policy: the same request now fails.
    std::fs::write(
        dir.join("local.yaml"),
        config(
            net,
            r#"istioPolicies:
- apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata: {name: deny-client, namespace: demo}
  spec:
    action: DENY
    rules:
    - from: [{source: {principals: ["cluster.local/ns/demo/sa/client"]}}]
"#,
        ),
    )
    .expect("write deny config");
    b.wait_for("configuration reloaded").await;
    a.wait_for("configuration reloaded").await;
    let (ok, text) = curl(&socks, &from, &url).await;
    assert!(!ok, "denied request succeeded: {text}");
    let metrics = Command::new("curl")
        .args(["--silent", &format!("http://127.{net}.0.2:15020/metrics")])
        .output()
        .await
        .expect("curl metrics");
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(metrics.contains("response_flags=\"DENY\""), "{metrics}");
}

/// `LOG_FORMAT=json`: every line a daemon writes is one JSON object (time, level, scope,
/// message and fields as values), and an access record is that object, not text around it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let net = 24;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    ca_init(dir).await;
    std::fs::write(dir.join("local.yaml"), config(net, "")).expect("write config");
    ambit_examples::http_hello(format!("127.{net}.2.2:8080").parse().expect("addr"), "web")
        .await
        .expect("app");
    let mut b = Daemon::start_logging(dir, "node-b", 2, net, "json").await;
    let _a = Daemon::start(dir, "node-a", 1, net).await;
    let socks = format!("127.{net}.0.1:15080");
    let (ok, text) = curl(
        &socks,
        &format!("127.{net}.1.2"),
        &format!("http://127.{net}.2.2:8080/"),
    )
    .await;
    assert!(ok, "{text}");
    b.lines_until("connection complete").await;
    let mut objects = Vec::new();
    for line in &b.log {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line:?}"));
        for key in ["time", "level", "scope"] {
            assert!(v[key].is_string(), "no {key}: {line}");
        }
        objects.push(v);
    }
    let ready = objects
        .iter()
        .find(|v| v["message"] == "node proxy ready")
        .expect("the ready line");
    assert!(
        ready["listening"]
            .as_str()
            .is_some_and(|l| l.contains(&format!("socks5=127.{net}.0.2:15080"))),
        "listeners as a value, not a Debug dump: {ready}"
    );
    let access = objects.last().expect("the access record");
    assert_eq!(access["scope"], "access", "{access}");
    assert_eq!(access["level"], "info", "{access}");
    assert_eq!(access["direction"], "inbound", "{access}");
    assert_eq!(access["dst.workload"], "web", "{access}");
    assert!(
        access["bytes_sent"].as_u64().is_some_and(|n| n > 0),
        "{access}"
    );
}

/// Two node proxies and an `ambit-waypoint`: Debian's curl (HTTP/1.1, and HTTP/2 with prior
/// knowledge) through node A's SOCKS5 to a service VIP that uses the waypoint; header routing,
/// an AuthorizationPolicy, and a live route reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_ztunnels_and_a_waypoint_daemon() {
    let net = 22;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    ca_init(dir).await;
    let local = format!(
        r#"workloads:
- {{uid: t/client, name: client, namespace: demo, serviceAccount: client, workloadIps: [127.{net}.1.2], node: node-a}}
- {{uid: t/v1, name: web-v1, namespace: demo, serviceAccount: web, workloadIps: [127.{net}.2.2], node: node-b, services: {{"demo/web.demo.svc.cluster.local": {{80: 8080}}, "demo/web-v1.demo.svc.cluster.local": {{80: 8080}}}}}}
- {{uid: t/v2, name: web-v2, namespace: demo, serviceAccount: web, workloadIps: [127.{net}.2.3], node: node-b, services: {{"demo/web.demo.svc.cluster.local": {{80: 8080}}, "demo/web-v2.demo.svc.cluster.local": {{80: 8080}}}}}}
- {{uid: t/wp, name: waypoint, namespace: demo, serviceAccount: waypoint, workloadIps: [127.{net}.3.2], node: none}}
services:
- {{name: web, namespace: demo, hostname: web.demo.svc.cluster.local, vips: ["/127.{net}.100.1"], ports: {{80: 8080}}, waypoint: {{destination: "/127.{net}.3.2"}}}}
- {{name: web-v1, namespace: demo, hostname: web-v1.demo.svc.cluster.local, vips: ["/127.{net}.100.2"], ports: {{80: 8080}}}}
- {{name: web-v2, namespace: demo, hostname: web-v2.demo.svc.cluster.local, vips: ["/127.{net}.100.3"], ports: {{80: 8080}}}}
"#
    );
    std::fs::write(dir.join("local.yaml"), local).expect("write config");
    let routes = |v2_header: &str| {
        format!(
            r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: demo}}
spec:
  parentRefs: [{{group: "", kind: Service, name: web, port: 80}}]
  rules:
  - matches: [{{headers: [{{name: {v2_header}, value: "on"}}]}}]
    backendRefs: [{{name: web-v2, port: 80}}]
  - backendRefs: [{{name: web-v1, port: 80}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: no-admin, namespace: demo}}
spec:
  targetRefs: [{{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}}]
  action: DENY
  rules: [{{to: [{{operation: {{paths: ["/admin*"]}}}}]}}]
"#
        )
    };
    std::fs::write(dir.join("l7.yaml"), routes("x-v2")).expect("write l7");

    for (name, host) in [("web-v1", 2u8), ("web-v2", 3u8)] {
        let app = TcpListener::bind(format!("127.{net}.2.{host}:8080"))
            .await
            .expect("bind app");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = app.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    let line = head.lines().next().unwrap_or("").to_owned();
                    let body = format!("{name} got {line}\n");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
    }
    let _b = Daemon::start(dir, "node-b", 2, net).await;
    let _a = Daemon::start(dir, "node-a", 1, net).await;
    let at = |port: u16| format!("127.{net}.3.2:{port}");
    let mut wp = Daemon::spawn(
        "ambit-waypoint",
        env!("CARGO_BIN_EXE_ambit-waypoint"),
        &[
            "--config".into(),
            dir.join("local.yaml").display().to_string(),
            "--l7".into(),
            dir.join("l7.yaml").display().to_string(),
            "--name".into(),
            "waypoint".into(),
            "--namespace".into(),
            "demo".into(),
            "--ca-dir".into(),
            dir.join("ca").display().to_string(),
            "--hbone".into(),
            at(15008),
            "--metrics".into(),
            at(15020),
            "--readiness".into(),
            "off".into(),
        ],
        "ambit-waypoint ready",
    )
    .await;
    let socks = format!("127.{net}.0.1:15080");
    let from = format!("127.{net}.1.2");
    let url = format!("http://127.{net}.100.1/items?x=1");

    let (ok, text) = curl(&socks, &from, &url).await;
    assert!(ok, "{text}");
    assert_eq!(text, "web-v1 got GET /items?x=1 HTTP/1.1\n");
    let (ok, text) = curl_with(
        &socks,
        &from,
        &url,
        &["-H", "x-v2: on", "--http2-prior-knowledge"],
    )
    .await;
    assert!(ok, "{text}");
    assert_eq!(
        text, "web-v2 got GET /items?x=1 HTTP/1.1\n",
        "HTTP/2 in, HTTP/1.1 to the app"
    );
    let admin = format!("http://127.{net}.100.1/admin/users");
    let (ok, text) = curl_with(&socks, &from, &admin, &["--write-out", " %{http_code}"]).await;
    assert!(ok, "{text}");
    assert_eq!(text, "RBAC: access denied 403");

    // Reload: the flag header is renamed; the old one no longer routes to v2.
    std::fs::write(dir.join("l7.yaml"), routes("x-beta")).expect("rewrite l7");
    wp.wait_for("routes and policies reloaded").await;
    let (_, text) = curl_with(&socks, &from, &url, &["-H", "x-v2: on"]).await;
    assert!(text.starts_with("web-v1"), "{text}");
    let (_, text) = curl_with(&socks, &from, &url, &["-H", "x-beta: on"]).await;
    assert!(text.starts_with("web-v2"), "{text}");

    // A broken file keeps the last good routes.
    std::fs::write(dir.join("l7.yaml"), "kind: HTTPRoute\nspec: [").expect("break l7");
    let err = wp.wait_for("not reloaded").await;
    assert!(err.contains("l7.yaml"), "{err}");
    let (_, text) = curl_with(&socks, &from, &url, &["-H", "x-beta: on"]).await;
    assert!(text.starts_with("web-v2"), "{text}");

    let metrics = Command::new("curl")
        .args(["--silent", &format!("http://{}/metrics", at(15020))])
        .output()
        .await
        .expect("curl metrics");
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics.contains("istio_requests_total{reporter=\"waypoint\",source_workload=\"client\"")
            && metrics.contains("response_code=\"403\""),
        "{metrics}"
    );
}

/// ztunnel's own example local config, in its shape (written from the format: two workloads on
/// node `local`, one HBONE and one TCP, backing two canonical services, one on another network;
/// an Allow policy with `notDestinationPorts`): `ambit-ztunnel` loads it unchanged and carries
/// traffic as ztunnel would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ztunnels_example_local_config_carries_traffic_as_ztunnel_would() {
    let net = 23;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    ca_init(dir).await;
    let config = format!(
        r#"# The shape of ztunnel's examples/localhost.yaml.
workloads:
- uid: cluster1//v1/Pod/default/local
  name: local
  namespace: default
  serviceAccount: default
  workloadIps: ["127.{net}.1.1"]
  protocol: HBONE
  node: local
  network: ""
  services:
    "default/svc-a.example":
      80: 8080
    "default/svc-b.example":
      80: 8080
- uid: cluster1//v1/Pod/default/local-tcp
  name: local-tcp
  namespace: default
  serviceAccount: default
  workloadIps: ["127.{net}.1.2"]
  protocol: TCP
  node: local
  network: ""
  services:
    "default/svc-a.example":
      80: 8080
    "default/svc-b.example":
      80: 8080
policies:
  - action: Allow
    rules:
    - - - notDestinationPorts:
          - 9999
    name: deny-9999
    namespace: default
    scope: Namespace
    dryRun: false
services:
- name: local
  namespace: default
  hostname: svc-a.example
  vips:
    - /127.{net}.10.1
  ports:
    80: 8080
  subjectAltNames:
   - spiffe://cluster.local/ns/default/sa/local
  canonical: true
- name: remote
  namespace: default
  hostname: svc-b.example
  vips:
    - remote/127.{net}.10.2
  ports:
    80: 8080
  canonical: true
"#
    );
    std::fs::write(dir.join("local.yaml"), config).expect("write config");
    // Each workload answers with its name on 8080 and 9999.
    for (host, name) in [(1u8, "local"), (2, "local-tcp")] {
        for port in [8080u16, 9999] {
            let app = TcpListener::bind(format!("127.{net}.1.{host}:{port}"))
                .await
                .expect("bind app");
            tokio::spawn(async move {
                while let Ok((mut s, _)) = app.accept().await {
                    tokio::spawn(async move {
                        // Read the whole request head first: closing with unread bytes
                        // sends a reset, and curl can lose the answer to it.
                        let mut head = Vec::new();
                        let mut buf = [0u8; 2048];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        let body = format!("{name}:{port}\n");
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = s.write_all(resp.as_bytes()).await;
                    });
                }
            });
        }
    }
    let _node = Daemon::start(dir, "local", 1, net).await;
    let socks = format!("127.{net}.0.1:15080");
    let (hbone, tcp) = (format!("127.{net}.1.1"), format!("127.{net}.1.2"));

    // The service VIP reaches both endpoints (HBONE to the first, plain TCP to the second).
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..24 {
        let (ok, text) = curl(&socks, &tcp, &format!("http://127.{net}.10.1/")).await;
        assert!(ok, "VIP request failed: {text}");
        seen.insert(text);
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["local-tcp:8080\n", "local:8080\n"],
        "both endpoints serve the VIP"
    );
    // The Allow policy admits every port but 9999 on the HBONE workload.
    let (ok, text) = curl(&socks, &tcp, &format!("http://{hbone}:8080/")).await;
    assert!(ok && text == "local:8080\n", "{text}");
    let (ok, text) = curl(&socks, &tcp, &format!("http://{hbone}:9999/")).await;
    assert!(!ok, "port 9999 is outside the Allow rule: {text}");
    // A TCP workload has no inbound proxy: nothing to enforce there.
    let (ok, text) = curl(&socks, &hbone, &format!("http://{tcp}:9999/")).await;
    assert!(ok && text == "local-tcp:9999\n", "{text}");
    // The other network's VIP is not this network's service: it is sent on as addressed, and
    // nothing listens there.
    let (ok, _) = curl(&socks, &hbone, &format!("http://127.{net}.10.2/")).await;
    assert!(!ok, "a VIP of another network is not a local service");
}

/// `ZTUNNEL_WORKER_THREADS` sets how many runtime workers carry traffic, as for ztunnel; a
/// value that is not a positive integer stops the daemon at start, naming the setting.
#[tokio::test]
async fn ztunnel_worker_threads_sets_the_runtime_workers() {
    let spawn = |workers: &str| {
        daemon(env!("CARGO_BIN_EXE_ambit-ztunnel"))
            .args(["--node", "n", "--socks5", "off", "--metrics", "off"])
            .args(["--readiness", "off", "--admin", "off"])
            .env("XDS_ADDRESS", "")
            .env("CA_ADDRESS", "")
            .env("ZTUNNEL_WORKER_THREADS", workers)
            .spawn()
            .expect("spawn ambit-ztunnel")
    };
    let mut child = spawn("3");
    let mut d = Daemon {
        stderr: BufReader::new(child.stderr.take().expect("stderr")).lines(),
        _child: child,
        name: "ambit-ztunnel",
        log: Vec::new(),
    };
    // The runtime's own count (tokio's metrics), as the ready line reports it.
    let ready = d.wait_for("ambit-ztunnel ready").await;
    assert!(ready.contains("workers=3"), "{ready}");
    for bad in ["0", "two"] {
        let out = spawn(bad).wait_with_output().await.expect("exit");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("worker-threads") && err.contains(bad), "{err}");
    }
}
