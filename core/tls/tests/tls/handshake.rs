//! ambit client ↔ ambit server: success and every refusal.

use std::time::SystemTime;

use ambit_identity::{Credentials, LeafRequest, VerifyError};
use ambit_tls::{ServerOptions, TlsError};
use rustls_pki_types::CertificateDer;
use tokio::io::AsyncWriteExt;

use crate::support::*;

const SERVER: &str = "spiffe://cluster.local/ns/default/sa/server";
const CLIENT: &str = "spiffe://cluster.local/ns/default/sa/client";

#[tokio::test]
async fn mutual_tls_both_sides_see_the_peer_identity() {
    let ca = ca("cluster.local");
    let ctx = tls();
    let server_cell = cell(&ctx, &creds(&ca, SERVER));
    let (addr, mut outcomes) = echo_server(server_config(&ctx, &server_cell), 1).await;

    let client_cfg = ctx
        .client_config(&cell(&ctx, &creds(&ca, CLIENT)), [id(SERVER)])
        .expect("client config");
    let mut stream = dial(client_cfg, addr).await.expect("handshake");
    let (_, conn) = stream.get_ref();
    assert_eq!(
        ambit_tls::peer_identity(conn).expect("server id"),
        id(SERVER)
    );
    assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );

    assert_eq!(
        server_outcome(&mut outcomes).await.expect("accepted"),
        id(CLIENT)
    );
    assert_eq!(read_line(&mut stream).await.expect("line"), CLIENT);
    stream.write_all(b"ping\n").await.expect("write");
    assert_eq!(read_line(&mut stream).await.expect("echo"), "ping");
}

#[tokio::test]
async fn client_refuses_server_not_in_expected_set() {
    let ca = ca("cluster.local");
    let ctx = tls();
    let (addr, _outcomes) =
        echo_server(server_config(&ctx, &cell(&ctx, &creds(&ca, SERVER))), 1).await;
    let wanted = [
        id("spiffe://cluster.local/ns/default/sa/a"),
        id("spiffe://cluster.local/ns/x/sa/b"),
    ];
    let client_cfg = ctx
        .client_config(&cell(&ctx, &creds(&ca, CLIENT)), wanted.clone())
        .expect("client config");
    let err = dial(client_cfg, addr).await.expect_err("wrong server");
    let tls = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .expect("tls error");
    assert_eq!(
        ambit_tls::verify_error(tls),
        Some(&VerifyError::UnexpectedIdentity {
            id: id(SERVER),
            expected: wanted.to_vec()
        })
    );
    assert!(
        err.to_string().contains("is not the expected one of"),
        "{err}"
    );
}

#[tokio::test]
async fn client_config_needs_an_expected_identity() {
    let ca = ca("cluster.local");
    let ctx = tls();
    let err = ctx
        .client_config(&cell(&ctx, &creds(&ca, CLIENT)), [])
        .expect_err("empty set");
    assert!(matches!(err, TlsError::NoExpectedIdentity));
}

/// Dials an ambit server as a client presenting `client` and returns the server's refusal.
async fn server_refusal(
    server: &Credentials,
    client: Credentials,
    opts: ServerOptions,
) -> VerifyError {
    let ctx = tls();
    let config = ctx
        .server_config(&cell(&ctx, server), &opts)
        .expect("server config");
    let (addr, mut outcomes) = echo_server(config, 1).await;
    let client_cfg = ctx
        .client_config(&cell(&ctx, &client), [server.svid.id().clone()])
        .expect("client config");
    // In TLS 1.3 the client may finish before the server has judged its certificate; the
    // refusal then shows on the client's first read.
    if let Ok(mut s) = dial(client_cfg, addr).await {
        assert!(
            read_line(&mut s).await.is_err(),
            "refused client must not get data"
        );
    }
    let err = server_outcome(&mut outcomes)
        .await
        .expect_err("server must refuse");
    server_verify_error(&err)
}

#[tokio::test]
async fn server_refuses_foreign_trust_domain() {
    let home = ca("cluster.local");
    let other = ca("other.local");
    let err = server_refusal(
        &creds(&home, SERVER),
        Credentials::new(
            other
                .issue(&id("spiffe://other.local/ns/a/sa/b"), HOUR)
                .expect("issue"),
            // The client trusts both, so only the server's judgement is tested.
            ambit_identity::TrustBundle::builder()
                .merge(&home.bundle())
                .merge(&other.bundle())
                .build(),
        ),
        ServerOptions::default(),
    )
    .await;
    assert!(
        matches!(err, VerifyError::ForeignTrustDomain { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn server_limits_trust_domains_when_asked() {
    let a = ca("a.local");
    let b = ca("b.local");
    let both = ambit_identity::TrustBundle::builder()
        .merge(&a.bundle())
        .merge(&b.bundle())
        .build();
    let server = Credentials::new(
        a.issue(&id("spiffe://a.local/ns/s/sa/s"), HOUR)
            .expect("issue"),
        both.clone(),
    );
    let client = Credentials::new(
        b.issue(&id("spiffe://b.local/ns/c/sa/c"), HOUR)
            .expect("issue"),
        both,
    );
    let mut opts = ServerOptions::default();
    opts.allowed_trust_domains = Some(vec![td("a.local")]);
    let err = server_refusal(&server, client, opts).await;
    assert!(
        matches!(&err, VerifyError::ForeignTrustDomain { trust_domain, .. } if trust_domain.as_str() == "b.local"),
        "{err}"
    );
}

#[tokio::test]
async fn server_refuses_untrusted_root() {
    let trusted = ca("cluster.local");
    let rogue = ca("cluster.local");
    let client = Credentials::new(
        rogue.issue(&id(CLIENT), HOUR).expect("issue"),
        trusted.bundle(),
    );
    let err = server_refusal(&creds(&trusted, SERVER), client, ServerOptions::default()).await;
    assert!(matches!(err, VerifyError::UntrustedRoot { .. }), "{err}");
}

#[tokio::test]
async fn server_refuses_expired_and_not_yet_valid_clients() {
    let ca = ca("cluster.local");
    let now = SystemTime::now();
    let expired = Credentials::new(
        ca.issue_at(&id(CLIENT), now - 3 * HOUR, HOUR)
            .expect("issue"),
        ca.bundle(),
    );
    let err = server_refusal(&creds(&ca, SERVER), expired, ServerOptions::default()).await;
    assert!(matches!(err, VerifyError::Expired { .. }), "{err}");

    let early = Credentials::new(
        ca.issue_at(&id(CLIENT), now + 3 * HOUR, HOUR)
            .expect("issue"),
        ca.bundle(),
    );
    let err = server_refusal(&creds(&ca, SERVER), early, ServerOptions::default()).await;
    assert!(matches!(err, VerifyError::NotYetValid { .. }), "{err}");
}

#[tokio::test]
async fn client_refuses_expired_server() {
    let ca = ca("cluster.local");
    let ctx = tls();
    let old = Credentials::new(
        ca.issue_at(&id(SERVER), SystemTime::now() - 3 * HOUR, HOUR)
            .expect("issue"),
        ca.bundle(),
    );
    let (addr, _o) = echo_server(server_config(&ctx, &cell(&ctx, &old)), 1).await;
    let client_cfg = ctx
        .client_config(&cell(&ctx, &creds(&ca, CLIENT)), [id(SERVER)])
        .expect("client config");
    let err = dial(client_cfg, addr).await.expect_err("expired server");
    let tls = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .expect("tls");
    assert!(
        matches!(
            ambit_tls::verify_error(tls),
            Some(VerifyError::Expired { .. })
        ),
        "{err}"
    );
}

/// A rustls client presenting exactly `chain`/`key` (or no certificate at all), still checking
/// the server the ambit way.
fn raw_client(
    ctx: &ambit_tls::TlsContext,
    ca: &ambit_identity::CertificateAuthority,
    expected: &str,
    cert: Option<(
        Vec<CertificateDer<'static>>,
        rustls_pki_types::PrivateKeyDer<'static>,
    )>,
) -> std::sync::Arc<rustls::ClientConfig> {
    let trust_cell = cell(ctx, &creds(ca, CLIENT));
    let verifier = ambit_tls::SpiffeServerVerifier::new(
        trust_cell,
        ambit_identity::ChainVerifier::with_algorithms(
            ctx.provider().signature_verification_algorithms.all,
        ),
        vec![id(expected)].into(),
    );
    let builder = rustls::ClientConfig::builder_with_provider(ctx.provider().clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(verifier));
    let mut config = match cert {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    std::sync::Arc::new(config)
}

#[tokio::test]
async fn server_refuses_client_without_certificate() {
    let ca = ca("cluster.local");
    let ctx = tls();
    let (addr, mut outcomes) =
        echo_server(server_config(&ctx, &cell(&ctx, &creds(&ca, SERVER))), 1).await;
    let config = raw_client(&ctx, &ca, SERVER, None);
    if let Ok(mut s) = dial(config, addr).await {
        assert!(read_line(&mut s).await.is_err());
    }
    let err = server_outcome(&mut outcomes).await.expect_err("refused");
    let tls = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .expect("tls");
    assert_eq!(*tls, rustls::Error::NoCertificatesPresented, "{err}");
}

#[tokio::test]
async fn server_refuses_certificate_without_spiffe_id() {
    let ca = ca("cluster.local");
    let ctx = tls();
    let (addr, mut outcomes) =
        echo_server(server_config(&ctx, &cell(&ctx, &creds(&ca, SERVER))), 1).await;
    let mut req = LeafRequest::new(vec![]);
    req.dns_names = vec!["client.example.com".into()];
    let issued = ca.issue_leaf(&req).expect("issue");
    let config = raw_client(&ctx, &ca, SERVER, Some((issued.chain, issued.key)));
    if let Ok(mut s) = dial(config, addr).await {
        assert!(read_line(&mut s).await.is_err());
    }
    let err = server_outcome(&mut outcomes).await.expect_err("refused");
    assert_eq!(server_verify_error(&err), VerifyError::NoSpiffeId);
}
