//! RequestAuthentication through the waypoint: JWTs from local and HTTPS JWKS, and the L7
//! policies that read their claims.

use super::*;

/// A token for `reviews` from `iss` about `sub`, in group `admins`, expiring in `exp_in` s.
fn token(signer: &JwtSigner, iss: &str, sub: &str, exp_in: i64) -> String {
    signer.token(
        iss,
        sub,
        "reviews",
        exp_in,
        serde_json::json!({"group": "admins"}),
    )
}

/// A fresh ES256 key with `kid`, and the JWKS that publishes it.
fn jwk(kid: &str) -> (JwtSigner, String) {
    let signer = JwtSigner::es256(kid);
    let jwks = ambit_test_util::jwt::jwks(&[&signer]);
    (signer, jwks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_and_l7_authorization() {
    let (der, jwks) = jwk("k1");
    let policies = format!(
        r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: demo}}
spec:
  targetRefs: [{{kind: Service, group: "", name: reviews}}]
  jwtRules:
  - issuer: https://issuer.example
    audiences: [reviews]
    jwks: '{jwks}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: admin-needs-jwt, namespace: demo}}
spec:
  targetRefs: [{{kind: Service, group: "", name: reviews}}]
  action: DENY
  rules:
  - to: [{{operation: {{paths: ["/admin/*"]}}}}]
    from: [{{source: {{notRequestPrincipals: ["https://issuer.example/*"]}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: no-delete, namespace: demo}}
spec:
  targetRefs: [{{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}}]
  action: DENY
  rules:
  - to: [{{operation: {{methods: [DELETE]}}}}]
"#
    );
    let mesh = Mesh::start(43, &policies).await;
    let (s, body) = mesh.get([100, 1], "/public", &[]).await;
    assert_eq!(s, 200, "no token, no policy on this path: {body}");
    let (s, body) = mesh.get([100, 1], "/admin/users", &[]).await;
    assert_eq!((s, body.as_str()), (403, "RBAC: access denied"));

    let good = token(&der, "https://issuer.example", "alice", 600);
    let bearer = format!("Bearer {good}");
    let (s, body) = mesh
        .get([100, 1], "/admin/users", &[("authorization", &bearer)])
        .await;
    assert_eq!(s, 200, "{body}");
    assert!(
        body.contains("auth=-"),
        "the token is not forwarded by default: {body}"
    );

    let expired = format!(
        "Bearer {}",
        token(&der, "https://issuer.example", "alice", -3600)
    );
    let (s, _) = mesh
        .get([100, 1], "/public", &[("authorization", &expired)])
        .await;
    assert_eq!(
        s, 401,
        "an expired token is refused even where no policy needs one"
    );
    let (other, _) = jwk("k1");
    let forged = format!(
        "Bearer {}",
        token(&other, "https://issuer.example", "mallory", 600)
    );
    let (s, _) = mesh
        .get([100, 1], "/admin/x", &[("authorization", &forged)])
        .await;
    assert_eq!(s, 401, "a token signed by another key is refused");

    let req = Request::delete("/public")
        .header("host", "reviews")
        .body(Full::new(Bytes::new()))
        .expect("req");
    let (s, _, _) = mesh.request([100, 1], req).await;
    assert_eq!(s, 403, "a Gateway-attached policy applies to every service");
}

/// An HTTPS server for `localhost` (its own CA, made here) answering every GET with `body`;
/// returns its port and the CA's PEM.
async fn https_jwks_server(body: String) -> (u16, String) {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let cert = params.signed_by(&key, &issuer).expect("cert");
    let provider = TlsContext::new(Provider::default()).provider().clone();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (acceptor, body) = (acceptor.clone(), body.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |_r: Request<hyper::body::Incoming>| {
                    let body = body.clone();
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (port, ca.pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_from_an_https_uri_is_fetched_with_configured_trust() {
    let (der, jwks) = jwk("remote");
    let (port, ca_pem) = https_jwks_server(jwks).await;
    let l7 = format!(
        r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: remote, namespace: demo}}
spec:
  targetRefs: [{{kind: Service, group: "", name: reviews}}]
  jwtRules: [{{issuer: https://issuer.example, jwksUri: "https://localhost:{port}/keys.json"}}]
"#
    );
    let (config, warnings) = L7Config::from_yaml(&l7, "remote.yaml", "istio-system").expect("l7");
    assert!(warnings.is_empty(), "{warnings:?}");
    let net = 45;
    let ca = Arc::new(
        CertificateAuthority::new(TrustDomain::new("cluster.local").expect("td")).expect("ca"),
    );
    let source = Arc::new(CaSource::new(
        ca,
        Duration::from_secs(3600),
        Arc::new(SystemClock),
    ));
    let wc = waypoint_config(net);
    // Without the server's CA the fetch fails on the certificate, and says so.
    let untrusting = Waypoint::start(
        wc.clone(),
        state(net),
        config,
        source.clone(),
        TlsContext::new(Provider::default()),
    )
    .await
    .expect("waypoint");
    let err = untrusting
        .refresh_jwks()
        .await
        .expect_err("untrusted server");
    assert!(
        err.contains("localhost") && err.to_lowercase().contains("certificate"),
        "{err}"
    );
    untrusting.shutdown(Duration::from_millis(10)).await;

    // With it, the keys arrive and a token signed by them is accepted end to end.
    drop(source);
    let mesh = Mesh::start_with(net, &l7, |wc| wc.jwks_ca_pem = Some(ca_pem)).await;
    mesh.waypoint.refresh_jwks().await.expect("JWKS over https");
    let good = format!(
        "Bearer {}",
        token(&der, "https://issuer.example", "alice", 600)
    );
    let (s, body) = mesh.get([100, 1], "/", &[("authorization", &good)]).await;
    assert_eq!(s, 200, "{body}");
    let forged = format!(
        "Bearer {}",
        token(&jwk("remote").0, "https://issuer.example", "eve", 600)
    );
    let (s, _) = mesh.get([100, 1], "/", &[("authorization", &forged)]).await;
    assert_eq!(s, 401);
}
