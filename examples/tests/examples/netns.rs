//! Transparent capture as in a pod: inside a network namespace of its own, an iptables
//! REDIRECT sends an application's outbound TCP to the node proxy's capture port (15001); the
//! proxy recovers the destination with SO_ORIGINAL_DST and carries it over HBONE.
//!
//! Needs root (CI runs as root). It fails, never skips, when the namespace cannot be built.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {args:?} (scripts/test installs iproute2 and iptables): {e}")
        });
    assert!(
        out.status.success(),
        "{args:?} failed (this test needs root for network namespaces and iptables): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test]
async fn iptables_redirect_to_the_capture_port_is_carried_over_hbone() {
    let ns = Netns(format!("ambit-capture-{}", std::process::id()));
    run(&["ip", "netns", "add", &ns.0]);
    let exec = |cmd: &[&str]| {
        let mut v = vec!["ip", "netns", "exec", &ns.0];
        v.extend_from_slice(cmd);
        run(&v)
    };
    exec(&["ip", "link", "set", "lo", "up"]);
    exec(&["ip", "addr", "add", "10.77.1.2/32", "dev", "lo"]);
    exec(&["ip", "addr", "add", "10.77.2.2/32", "dev", "lo"]);
    // The application user's traffic to the server port goes to the capture port; the proxy
    // (root) is not redirected, as ztunnel's packet mark exempts it.
    exec(&[
        "iptables",
        "-t",
        "nat",
        "-A",
        "OUTPUT",
        "-p",
        "tcp",
        "-d",
        "10.77.2.2",
        "--dport",
        "8080",
        "-m",
        "owner",
        "--uid-owner",
        "65534",
        "-j",
        "REDIRECT",
        "--to-ports",
        "15001",
    ]);

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    std::fs::write(
        dir.join("local.yaml"),
        "workloads:\n\
         - {uid: t/client, name: client, namespace: demo, serviceAccount: client, workloadIps: [10.77.1.2], node: pod-node}\n\
         - {uid: t/web, name: web, namespace: demo, serviceAccount: web, workloadIps: [10.77.2.2], node: pod-node}\n",
    )
    .expect("config");
    std::fs::write(dir.join("index.html"), "captured and tunnelled\n").expect("page");

    let mut web = tokio::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "/usr/bin/python3",
            "-u",
            "-m",
            "http.server",
        ])
        .args(["--bind", "10.77.2.2", "8080"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python http.server");
    let mut proxy = tokio::process::Command::new("ip")
        .args(["netns", "exec", &ns.0, env!("CARGO_BIN_EXE_ambit-ztunnel")])
        .arg("--config")
        .arg(dir.join("local.yaml"))
        .args([
            "--node",
            "pod-node",
            "--outbound-capture",
            "127.0.0.1:15001",
            "--socks5",
            "off",
        ])
        .args([
            "--metrics",
            "127.0.0.1:15020",
            "--readiness",
            "off",
            "--admin",
            "off",
        ])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ambit-ztunnel");
    let mut log = BufReader::new(proxy.stderr.take().expect("stderr")).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(l)) = log.next_line().await {
            if l.contains("ambit-ztunnel ready") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(ready, Ok(true)),
        "ambit-ztunnel did not start in the namespace"
    );
    tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });
    let mut web_log = BufReader::new(web.stdout.take().expect("stdout")).lines();
    let serving = tokio::time::timeout(Duration::from_secs(30), async {
        // http.server announces itself once bound.
        while let Ok(Some(l)) = web_log.next_line().await {
            if l.contains("Serving HTTP") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(serving, Ok(true)),
        "the web app did not start in the namespace"
    );
    tokio::spawn(async move { while let Ok(Some(_)) = web_log.next_line().await {} });

    // As the application user (uid 65534), from the client workload's address.
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .args([
            "curl",
            "--silent",
            "--show-error",
            "--max-time",
            "20",
            "--interface",
            "10.77.1.2",
        ])
        .arg("http://10.77.2.2:8080/index.html")
        .output()
        .expect("curl");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl failed: {body}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(body, "captured and tunnelled\n");
    // It really went through the proxy, over mTLS, as the client workload.
    let metrics = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "curl",
            "--silent",
            "http://127.0.0.1:15020/metrics",
        ])
        .output()
        .expect("metrics");
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    let line = metrics
        .lines()
        .find(|l| l.starts_with("istio_tcp_connections_opened_total{reporter=\"source\""))
        .unwrap_or_else(|| panic!("no outbound connection recorded:\n{metrics}"));
    assert!(line.contains("source_workload=\"client\""), "{line}");
    assert!(line.contains("destination_workload=\"web\""), "{line}");
    assert!(
        line.contains("connection_security_policy=\"mutual_tls\""),
        "{line}"
    );
    drop(proxy);
    drop(web);
}
