//! Shared pieces of ambit's benchmarks: in-memory TLS drivers for the criterion benches (so
//! each measures the code under test and nothing else), `/proc` sampling ([`proc`]) and
//! reporting ([`report`]) for the end-to-end harnesses. The harnesses' mesh vocabulary
//! (addresses, workloads, apps) comes from ambit-test-util.

pub mod proc;
pub mod report;

use std::sync::Arc;
use std::time::Duration;

use ambit_identity::{CertificateAuthority, SpiffeId, TrustDomain};
use ambit_tls::{Provider, ServerOptions, TlsContext};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

/// A server and a client config for one mTLS pairing, built with `provider`.
pub fn mtls_pair(provider: Provider) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let td = TrustDomain::new("cluster.local").expect("trust domain");
    let ca = CertificateAuthority::new(td).expect("ca");
    let server = SpiffeId::parse("spiffe://cluster.local/ns/bench/sa/server").expect("id");
    let client = SpiffeId::parse("spiffe://cluster.local/ns/bench/sa/client").expect("id");
    let ttl = Duration::from_secs(3600);
    let tls = TlsContext::new(provider);
    let server_cell = tls
        .credential_cell(&ca.credentials(&server, ttl).expect("issue"))
        .expect("cell");
    let client_cell = tls
        .credential_cell(&ca.credentials(&client, ttl).expect("issue"))
        .expect("cell");
    (
        tls.server_config(&server_cell, &ServerOptions::default())
            .expect("server config"),
        tls.client_config(&client_cell, [server])
            .expect("client config"),
    )
}

/// Runs one complete mutual-TLS handshake between the two configs in memory; returns the
/// bytes exchanged.
pub fn handshake(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) -> usize {
    let mut c = ClientConnection::new(client.clone(), ambit_tls::server_name()).expect("client");
    let mut s = ServerConnection::new(server.clone()).expect("server");
    let mut buf = Vec::with_capacity(4096);
    let mut total = 0;
    while c.is_handshaking() || s.is_handshaking() {
        total += pump(&mut *c, &mut *s, &mut buf);
        s.process_new_packets().expect("server handshake");
        total += pump(&mut *s, &mut *c, &mut buf);
        c.process_new_packets().expect("client handshake");
    }
    total
}

fn pump(
    from: &mut rustls::ConnectionCommon<impl Sized>,
    to: &mut rustls::ConnectionCommon<impl Sized>,
    buf: &mut Vec<u8>,
) -> usize {
    buf.clear();
    while from.wants_write() {
        from.write_tls(buf).expect("write_tls to memory");
    }
    let mut rd = &buf[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).expect("read_tls from memory");
    }
    buf.len()
}
