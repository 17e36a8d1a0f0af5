//! SPIFFE id parsing, and extraction of the id from a DER certificate (done once per peer).

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use ambit_identity::{
    CertificateAuthority, ChainVerifier, SpiffeId, TrustDomain, Usage, spiffe_id_of,
};
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let s = "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage";
    c.bench_function("spiffe_parse/id", |b| {
        b.iter(|| SpiffeId::parse(black_box(s)).expect("valid"))
    });
    let ca = CertificateAuthority::new(TrustDomain::new("cluster.local").expect("td")).expect("ca");
    let id = SpiffeId::parse(s).expect("valid");
    let svid = ca.issue(&id, Duration::from_secs(3600)).expect("issue");
    c.bench_function("spiffe_parse/from_certificate", |b| {
        b.iter(|| spiffe_id_of(black_box(svid.leaf())).expect("id"))
    });
    let bundle = ca.bundle();
    let now = SystemTime::now();
    c.bench_function("spiffe_parse/verify_chain", |b| {
        b.iter(|| {
            ChainVerifier::default()
                .verify(&bundle, black_box(svid.chain()), Usage::ClientAuth, now)
                .expect("valid")
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
