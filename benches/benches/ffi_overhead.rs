//! One L4 decision through the C ABI (`ambit_policy_set_evaluate_l4`, strings in, buffer out)
//! against the same decision made directly in Rust: the price of the ABI.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};

use ambit::{ambit_l4_attributes, ambit_policy_set, ambit_result};
use ambit_authz::{Connection, IstioPolicies, PolicySet, PolicyTarget as Target};
use ambit_identity::SpiffeId;
use criterion::{Criterion, criterion_group, criterion_main};

const YAML: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-legacy, namespace: shop}
spec:
  action: DENY
  rules:
  - from: [{source: {namespaces: ["legacy"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-frontend, namespace: shop}
spec:
  rules:
  - from: [{source: {principals: ["cluster.local/ns/shop/sa/frontend"]}}]
    to: [{operation: {ports: ["8080"]}}]
"#;

fn bench(c: &mut Criterion) {
    let principal = "spiffe://cluster.local/ns/shop/sa/frontend";
    let (src, dst): (SocketAddr, SocketAddr) = (
        "10.0.0.1:5000".parse().expect("addr"),
        "10.0.0.2:8080".parse().expect("addr"),
    );

    let mut set = PolicySet::new();
    IstioPolicies::parse(YAML, "", "istio-system")
        .expect("yaml")
        .apply_to(&mut set);
    let id = SpiffeId::parse(principal).expect("id");
    let labels = BTreeMap::new();
    c.bench_function("ffi_overhead/rust_evaluate", |b| {
        b.iter(|| {
            // The same work the C call does per decision: parse the principal, decide.
            let id = SpiffeId::parse(black_box(principal)).expect("id");
            let conn = Connection {
                source_id: Some(&id),
                source_ip: black_box(src).ip(),
                destination_ip: black_box(dst).ip(),
                destination_port: dst.port(),
            };
            let d = set.evaluate(
                Target {
                    namespace: "shop",
                    labels: &labels,
                    policy_keys: &[],
                },
                &conn,
            );
            black_box(d.allowed)
        })
    });

    let mut handle: *const ambit_policy_set = std::ptr::null();
    let rc = ambit::ambit_policy_set_from_istio_yaml(s(YAML), &mut handle, std::ptr::null_mut());
    assert_eq!(rc, ambit_result::AMBIT_RESULT_OK);
    let addr = |ip: [u8; 4], port| {
        let mut a = ambit::ambit_socket_addr {
            family: 4,
            ip: [0; 16],
            port,
        };
        a.ip[..4].copy_from_slice(&ip);
        a
    };
    let (sa, da) = (addr([10, 0, 0, 1], 5000), addr([10, 0, 0, 2], 8080));
    let attrs = ambit_l4_attributes {
        destination_namespace: s("shop"),
        destination_labels: std::ptr::null(),
        destination_labels_len: 0,
        source_principal: s(principal),
        source: sa,
        destination: da,
    };
    let mut buf = [0u8; 64];
    c.bench_function("ffi_overhead/c_abi_evaluate", |b| {
        b.iter(|| {
            let mut allowed = false;
            let mut n = 0usize;
            let rc = ambit::ambit_policy_set_evaluate_l4(
                handle,
                black_box(&attrs),
                &mut allowed,
                buf.as_mut_ptr(),
                buf.len(),
                &mut n,
            );
            assert_eq!(rc, ambit_result::AMBIT_RESULT_OK);
            black_box(allowed)
        })
    });
    // The per-connection fast path: identity parsed once per peer, binary addresses.
    let mut sid = std::ptr::null();
    assert_eq!(
        ambit::ambit_spiffe_id_new(s(principal), &mut sid),
        ambit_result::AMBIT_RESULT_OK
    );
    c.bench_function("ffi_overhead/c_abi_decide", |b| {
        b.iter(|| {
            let mut allowed = false;
            let mut n = 0usize;
            let rc = ambit::ambit_policy_set_decide(
                handle,
                black_box(sid),
                &sa,
                &da,
                s("shop"),
                &mut allowed,
                buf.as_mut_ptr(),
                buf.len(),
                &mut n,
            );
            assert_eq!(rc, ambit_result::AMBIT_RESULT_OK);
            black_box(allowed)
        })
    });
    let conn = Connection {
        source_id: Some(&id),
        source_ip: IpAddr::from([10, 0, 0, 1]),
        destination_ip: IpAddr::from([10, 0, 0, 2]),
        destination_port: 8080,
    };
    c.bench_function("ffi_overhead/rust_decide", |b| {
        b.iter(|| {
            let d = set.evaluate(
                Target {
                    namespace: "shop",
                    labels: &labels,
                    policy_keys: &[],
                },
                black_box(&conn),
            );
            black_box(d.allowed)
        })
    });
    ambit::ambit_spiffe_id_free(sid);
    ambit::ambit_policy_set_free(handle);
}

/// An `ambit_str` borrowing `text`.
fn s(text: &str) -> ambit::ambit_str {
    ambit::ambit_str {
        data: text.as_ptr(),
        len: text.len(),
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
