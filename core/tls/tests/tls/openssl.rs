//! Independent checks with the openssl command-line tool: it verifies our chains, and its
//! s_client/s_server complete mTLS 1.3 handshakes with our server/client.

use std::path::Path;
use std::process::Stdio;

use ambit_identity::{CaOptions, CertificateAuthority, Credentials, VerifyError};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::*;

const SERVER: &str = "spiffe://cluster.local/ns/default/sa/server";
const CLIENT: &str = "spiffe://cluster.local/ns/default/sa/client";

/// Writes `<name>-chain.pem` (leaf first), `<name>-leaf.pem`, `<name>-intermediates.pem` and
/// `<name>-key.pem`.
fn write_creds(dir: &Path, name: &str, c: &Credentials) {
    let pem_of = |certs: &[rustls_pki_types::CertificateDer<'_>]| {
        pem::encode_many(
            &certs
                .iter()
                .map(|d| pem::Pem::new("CERTIFICATE", d.to_vec()))
                .collect::<Vec<_>>(),
        )
    };
    let chain = c.svid.chain();
    std::fs::write(dir.join(format!("{name}-chain.pem")), pem_of(chain)).expect("write");
    std::fs::write(dir.join(format!("{name}-leaf.pem")), pem_of(&chain[..1])).expect("write");
    std::fs::write(
        dir.join(format!("{name}-intermediates.pem")),
        pem_of(&chain[1..]),
    )
    .expect("write");
    std::fs::write(dir.join(format!("{name}-key.pem")), c.svid.key_pem()).expect("write");
}

fn openssl() -> Command {
    let mut c = Command::new("openssl");
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

type Lines = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

fn stdout_lines(child: &mut Child) -> Lines {
    BufReader::new(child.stdout.take().expect("stdout")).lines()
}

async fn line_containing(lines: &mut Lines, needle: &str) -> String {
    tokio::time::timeout(STEP, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(needle) {
                return line;
            }
        }
        panic!("openssl exited without printing {needle:?}")
    })
    .await
    .unwrap_or_else(|_| panic!("openssl did not print {needle:?} in time"))
}

#[tokio::test]
async fn openssl_verify_accepts_built_in_ca_chains() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, opts) in [
        ("root-only", CaOptions::new(td("cluster.local"))),
        (
            "intermediate",
            CaOptions::new(td("cluster.local")).with_intermediate(),
        ),
    ] {
        let ca = CertificateAuthority::with_options(opts).expect("ca");
        std::fs::write(dir.path().join("root.pem"), ca.bundle().to_pem()).expect("write");
        write_creds(dir.path(), name, &creds(&ca, CLIENT));
        for purpose in ["sslclient", "sslserver"] {
            let out = openssl()
                .arg("verify")
                .args(["-purpose", purpose, "-CAfile"])
                .arg(dir.path().join("root.pem"))
                .arg("-untrusted")
                .arg(dir.path().join(format!("{name}-chain.pem")))
                .arg(dir.path().join(format!("{name}-leaf.pem")))
                .output()
                .await
                .expect("run openssl verify");
            assert!(
                out.status.success(),
                "{name}/{purpose}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // And refuses it against another root.
        let other = ca_files_root(&ca_for("cluster.local"));
        std::fs::write(dir.path().join("other.pem"), other).expect("write");
        let out = openssl()
            .arg("verify")
            .arg("-CAfile")
            .arg(dir.path().join("other.pem"))
            .arg("-untrusted")
            .arg(dir.path().join(format!("{name}-chain.pem")))
            .arg(dir.path().join(format!("{name}-leaf.pem")))
            .output()
            .await
            .expect("run openssl verify");
        assert!(
            !out.status.success(),
            "{name}: openssl trusted a foreign root"
        );
    }
}

fn ca_for(domain: &str) -> CertificateAuthority {
    ca(domain)
}

fn ca_files_root(ca: &CertificateAuthority) -> String {
    ca.bundle().to_pem()
}

#[tokio::test]
async fn openssl_s_client_completes_mtls_with_our_server() {
    let ca =
        CertificateAuthority::with_options(CaOptions::new(td("cluster.local")).with_intermediate())
            .expect("ca");
    let ctx = tls();
    let (addr, mut outcomes) =
        echo_server(server_config(&ctx, &cell(&ctx, &creds(&ca, SERVER))), 1).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("root.pem"), ca.bundle().to_pem()).expect("write");
    write_creds(dir.path(), "client", &creds(&ca, CLIENT));
    let d = |f: &str| dir.path().join(f);
    let mut child = openssl()
        .args([
            "s_client",
            "-tls1_3",
            "-alpn",
            "h2",
            "-verify_return_error",
            "-quiet",
        ])
        .arg("-connect")
        .arg(addr.to_string())
        .arg("-CAfile")
        .arg(d("root.pem"))
        .arg("-cert")
        .arg(d("client-leaf.pem"))
        .arg("-cert_chain")
        .arg(d("client-intermediates.pem"))
        .arg("-key")
        .arg(d("client-key.pem"))
        .spawn()
        .expect("spawn openssl s_client");
    // The server greets with the client's id as it verified it, then echoes.
    let mut lines = stdout_lines(&mut child);
    let greeting = line_containing(&mut lines, "spiffe://").await;
    assert_eq!(greeting.trim(), CLIENT);
    assert_eq!(
        server_outcome(&mut outcomes).await.expect("accepted"),
        id(CLIENT)
    );
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"hello from openssl\n")
        .await
        .expect("write");
    stdin.flush().await.expect("flush");
    line_containing(&mut lines, "hello from openssl").await;
}

#[tokio::test]
async fn our_client_completes_mtls_with_openssl_s_server() {
    let ca =
        CertificateAuthority::with_options(CaOptions::new(td("cluster.local")).with_intermediate())
            .expect("ca");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("root.pem"), ca.bundle().to_pem()).expect("write");
    write_creds(dir.path(), "server", &creds(&ca, SERVER));
    let d = |f: &str| dir.path().join(f);
    let spawn_server = || {
        openssl()
            .args([
                "s_server",
                "-tls1_3",
                "-alpn",
                "h2",
                "-Verify",
                "1",
                "-verify_return_error",
            ])
            .args(["-rev", "-naccept", "1", "-accept", "127.0.0.1:0"])
            .arg("-CAfile")
            .arg(d("root.pem"))
            .arg("-cert")
            .arg(d("server-leaf.pem"))
            .arg("-cert_chain")
            .arg(d("server-intermediates.pem"))
            .arg("-key")
            .arg(d("server-key.pem"))
            .spawn()
            .expect("spawn openssl s_server")
    };
    let ctx = tls();
    let client_cell = cell(&ctx, &creds(&ca, CLIENT));

    let mut server = spawn_server();
    let line = line_containing(&mut stdout_lines(&mut server), "ACCEPT").await;
    let addr: std::net::SocketAddr = line
        .trim_start_matches("ACCEPT")
        .trim()
        .parse()
        .expect("addr");
    let config = ctx
        .client_config(&client_cell, [id(SERVER)])
        .expect("config");
    let mut stream = dial(config, addr).await.expect("handshake with openssl");
    assert_eq!(
        ambit_tls::peer_identity(stream.get_ref().1).expect("id"),
        id(SERVER)
    );
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    // -rev: openssl answers each line reversed, which it only does after verifying us.
    stream.write_all(b"ambit\n").await.expect("write");
    let reply = loop {
        let l = read_line(&mut stream).await.expect("reply");
        if l.contains("tibma") {
            break l;
        }
    };
    assert!(reply.contains("tibma"));

    // The same server refused when we expect someone else.
    let mut server = spawn_server();
    let line = line_containing(&mut stdout_lines(&mut server), "ACCEPT").await;
    let addr: std::net::SocketAddr = line
        .trim_start_matches("ACCEPT")
        .trim()
        .parse()
        .expect("addr");
    let config = ctx
        .client_config(
            &client_cell,
            [id("spiffe://cluster.local/ns/default/sa/other")],
        )
        .expect("config");
    let err = dial(config, addr).await.expect_err("unexpected server id");
    let tls = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .expect("tls");
    assert!(matches!(
        ambit_tls::verify_error(tls),
        Some(VerifyError::UnexpectedIdentity { .. })
    ));
}

#[tokio::test]
async fn tls12_only_peer_is_refused() {
    let ca = ca("cluster.local");
    let ctx = tls();
    let (addr, mut outcomes) =
        echo_server(server_config(&ctx, &cell(&ctx, &creds(&ca, SERVER))), 1).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_creds(dir.path(), "client", &creds(&ca, CLIENT));
    let out = openssl()
        .args(["s_client", "-tls1_2"])
        .arg("-connect")
        .arg(addr.to_string())
        .arg("-cert")
        .arg(dir.path().join("client-leaf.pem"))
        .arg("-key")
        .arg(dir.path().join("client-key.pem"))
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(STEP, out)
        .await
        .expect("exits")
        .expect("run");
    assert!(!out.status.success(), "TLS 1.2 handshake must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("protocol version"),
        "openssl said: {stderr}"
    );
    let err = server_outcome(&mut outcomes).await.expect_err("refused");
    let tls = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .expect("tls");
    assert!(matches!(tls, rustls::Error::PeerIncompatible(_)), "{tls}");
}
