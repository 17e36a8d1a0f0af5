//! Independent peers: Python `ssl` + `h2`, Envoy and curl against our HBONE server and client.
//! The README's test command installs them (`scripts/test`); run without them, these tests fail
//! with a message saying so rather than passing silently.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ambit_test_util::{EchoServer, TestPki};
use tokio::process::Command;

const STEP: Duration = Duration::from_secs(60);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python interpreter with `h2` (and `aioquic`) installed: `$AMBIT_PYTHON`, else the
/// repo's `.venv`.
pub(crate) fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("AMBIT_PYTHON") {
        return p.into();
    }
    let venv = workspace().join(".venv/bin/python3");
    assert!(
        venv.exists(),
        "no Python venv at {}: run scripts/test (it creates it) or set AMBIT_PYTHON",
        venv.display()
    );
    venv
}

async fn run_python_client(mode: &str, server: &EchoServer, dir: &Path) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/h2_client.py");
    let out = Command::new(python())
        .arg(script)
        .arg(mode)
        .args(["--server", &server.addr.to_string()])
        .args(["--authority", "127.0.0.1:8080"])
        .arg("--ca")
        .arg(dir.join("root.pem"))
        .arg("--cert")
        .arg(dir.join("client-cert.pem"))
        .arg("--key")
        .arg(dir.join("client-key.pem"))
        .args(["--expect-id", server.id.as_str()])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(STEP, out)
        .await
        .expect("python in time")
        .expect("run python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("No module named 'h2'"),
        "Python lacks the h2 package: run scripts/test or `pip install h2`"
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn python_h2_client_tunnels_through_our_server() {
    let pki = TestPki::new();
    let mut server = EchoServer::start(&pki, "echo").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let client_id = pki.id("py", "client");
    pki.write_pem(dir.path(), "client", &client_id);
    let (ok, text) = run_python_client("echo", &server, dir.path()).await;
    assert!(ok, "python client failed:\n{text}");
    assert!(text.contains("tls ok: TLSv1.3"), "{text}");
    assert!(text.contains("echo ok: 16384 bytes"), "{text}");
    let seen = server.seen.recv().await.expect("report");
    assert_eq!(seen.peer_id, client_id);
    assert_eq!(seen.read, Ok(16384));
}

#[tokio::test]
async fn python_h2_malformed_requests_get_400_or_reset_and_server_survives() {
    let pki = TestPki::new();
    let server = EchoServer::start(&pki, "echo").await;
    let dir = tempfile::tempdir().expect("tempdir");
    pki.write_pem(dir.path(), "client", &pki.id("py", "client"));
    let (ok, text) = run_python_client("malformed", &server, dir.path()).await;
    eprintln!("{text}");
    assert!(ok, "python client failed:\n{text}");
    for case in ["get:", "no-authority:", "connect-with-path:"] {
        assert!(text.contains(case), "{case} missing from:\n{text}");
    }
    assert!(text.contains("echo ok"), "{text}");
    // The handler never saw the malformed ones.
    let stats = server.server.stats();
    assert_eq!(stats.connections_accepted, 1, "{stats:?}");
}

/// curl ≥ 8.1 (HTTP/2 CONNECT to an HTTPS proxy): `$AMBIT_CURL`, else the copy scripts/test
/// unpacks into `.tools/curl`.
fn curl() -> (PathBuf, Option<PathBuf>) {
    if let Some(p) = std::env::var_os("AMBIT_CURL") {
        return (p.into(), None);
    }
    let root = workspace().join(".tools/curl");
    let bin = root.join("usr/bin/curl");
    assert!(
        bin.exists(),
        "no curl with --proxy-http2 at {}: run scripts/test (it unpacks curl 8.x) or set AMBIT_CURL",
        bin.display()
    );
    (bin, Some(root.join("usr/lib/x86_64-linux-gnu")))
}

#[tokio::test]
async fn curl_proxy_http2_tunnels_through_our_server() {
    use ambit_hbone::{ConnectRequest, Responder, Server, ServerSettings};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let pki = TestPki::new();
    let server_id = pki.id("test", "hbone");
    // Behind the tunnel: a tiny HTTP/1.1 server that names the tunnel's client and target.
    let handler = |req: ConnectRequest, responder: Responder| async move {
        let Ok(mut t) = responder.accept(Default::default()) else {
            return;
        };
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match t.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let body = format!("hello {} via {}\n", req.peer_id, req.authority);
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = t.write_all(resp.as_bytes()).await;
        let _ = t.shutdown().await;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let client_id = pki.id("curl", "client");
    pki.write_pem(dir.path(), "client", &client_id);
    pki.write_pem(dir.path(), "server", &server_id);
    // curl cannot check a SPIFFE URI SAN; it pins the server's public key instead, so the
    // server presents exactly the credentials written to disk.
    let server_pem = dir.path().join("server-cert.pem");
    let pin = pubkey_pin(&server_pem).await;
    let svid = ambit_identity::Svid::from_pem(
        &std::fs::read(&server_pem).expect("read"),
        &std::fs::read(dir.path().join("server-key.pem")).expect("read"),
    )
    .expect("svid");
    let cell = pki
        .tls
        .credential_cell(&ambit_identity::Credentials::new(svid, pki.ca.bundle()))
        .expect("cell");
    let config = pki
        .tls
        .server_config(&cell, &ambit_tls::ServerOptions::default())
        .expect("config");
    let server = Server::new(config, handler, ServerSettings::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr2 = listener.local_addr().expect("addr");
    tokio::spawn(async move { server.serve(listener).await });

    let (bin, libs) = curl();
    let mut cmd = Command::new(bin);
    if let Some(libs) = libs {
        cmd.env("LD_LIBRARY_PATH", libs);
    }
    let out = cmd
        .args(["--silent", "--show-error", "--max-time", "30"])
        .arg("--proxy")
        .arg(format!("https://{addr2}"))
        .args(["--proxy-http2", "--proxytunnel", "--proxy-insecure"])
        .arg("--proxy-pinnedpubkey")
        .arg(&pin)
        .arg("--proxy-cert")
        .arg(dir.path().join("client-cert.pem"))
        .arg("--proxy-key")
        .arg(dir.path().join("client-key.pem"))
        .arg("http://127.0.0.1:8080/")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(STEP, out)
        .await
        .expect("curl in time")
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text, format!("hello {client_id} via 127.0.0.1:8080\n"));

    // Without a client certificate curl gets no tunnel.
    let (bin, libs) = curl();
    let mut cmd = Command::new(bin);
    if let Some(libs) = libs {
        cmd.env("LD_LIBRARY_PATH", libs);
    }
    let out = cmd
        .args([
            "--silent",
            "--max-time",
            "30",
            "--proxy-http2",
            "--proxytunnel",
            "--proxy-insecure",
        ])
        .arg("--proxy")
        .arg(format!("https://{addr2}"))
        .arg("http://127.0.0.1:8080/")
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(STEP, out)
        .await
        .expect("curl in time")
        .expect("run curl");
    assert!(
        !out.status.success(),
        "curl without a client certificate got through"
    );
}

/// `sha256//<base64>` of a certificate's public key, computed by openssl.
async fn pubkey_pin(cert: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            "openssl x509 -in \"$1\" -pubkey -noout | openssl pkey -pubin -outform der \
             | openssl dgst -sha256 -binary | openssl base64 -A",
        )
        .arg("sh")
        .arg(cert)
        .output()
        .await
        .expect("openssl");
    assert!(out.status.success(), "openssl pin failed");
    format!("sha256//{}", String::from_utf8_lossy(&out.stdout).trim())
}
