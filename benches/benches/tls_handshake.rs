//! Full HBONE mTLS 1.3 handshakes in memory (ECDSA P-256 SVIDs on both sides, SPIFFE
//! verification), per crypto provider: the figure behind the default provider choice.

use std::hint::black_box;

use ambit_benches::{handshake, mtls_pair};
use ambit_tls::Provider;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("tls_handshake");
    group.throughput(Throughput::Elements(1));
    for (name, provider) in [("aws-lc-rs", Provider::AwsLcRs), ("ring", Provider::Ring)] {
        let (server, client) = mtls_pair(provider);
        group.bench_function(name, |b| b.iter(|| black_box(handshake(&server, &client))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
