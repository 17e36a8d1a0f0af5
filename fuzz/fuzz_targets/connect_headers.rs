//! The CONNECT header codecs (`baggage`, `forwarded`, `traceparent`): the decoders on the input
//! as text, then decode(encode(x)) for values decoded from it and for structured values built
//! from the same bytes. Encoders drop what they cannot say; the expected values do the same.
#![no_main]

use std::net::{IpAddr, SocketAddr};

use ambit_hbone::{Baggage, Forwarded, TraceParent, TraceParentError};
use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Values {
    baggage: [Option<String>; 8],
    for_addr: Option<(IpAddr, u16)>,
    host: Option<String>,
    trace: ([u8; 16], [u8; 8], u8),
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        baggage_round_trip(Baggage::parse(s));
        forwarded_round_trip(Forwarded::parse(s));
        if let Ok(tp) = s.parse::<TraceParent>() {
            assert_eq!(tp.to_string(), s);
        }
    }
    let Ok(v) = Values::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let mut b = Baggage::default();
    let [
        cluster,
        namespace,
        kind,
        name,
        service,
        revision,
        region,
        zone,
    ] = v.baggage;
    (b.cluster, b.namespace, b.workload_kind, b.workload_name) = (cluster, namespace, kind, name);
    (b.service, b.revision, b.region, b.zone) = (service, revision, region, zone);
    baggage_round_trip(b);
    let mut f = Forwarded::default();
    f.for_addr = v.for_addr.map(|(ip, port)| SocketAddr::new(ip, port));
    f.host = v.host;
    forwarded_round_trip(f);
    let (trace_id, parent_id, flags) = v.trace;
    let tp = TraceParent {
        trace_id,
        parent_id,
        flags,
    };
    let back = tp.to_string().parse::<TraceParent>();
    if trace_id == [0; 16] || parent_id == [0; 8] {
        assert_eq!(back, Err(TraceParentError::Zero));
    } else {
        assert_eq!(back, Ok(tp));
    }
});

fn baggage_round_trip(b: Baggage) {
    let Some(wire) = b.encode() else { return };
    let mut expect = b.clone();
    for v in [
        &mut expect.cluster,
        &mut expect.namespace,
        &mut expect.workload_kind,
        &mut expect.workload_name,
        &mut expect.service,
        &mut expect.revision,
        &mut expect.region,
        &mut expect.zone,
    ] {
        v.take_if(|v| v.is_empty());
    }
    // The workload is sent only with a name and a kind that fits in a `k8s.<kind>.name` key
    // other than the cluster's and the namespace's.
    let kind_ok = expect.workload_kind.as_deref().is_some_and(|k| {
        !matches!(k, "cluster" | "namespace")
            && k.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    });
    if !kind_ok || expect.workload_name.is_none() {
        (expect.workload_kind, expect.workload_name) = (None, None);
    }
    assert_eq!(Baggage::parse(&wire), expect, "{b:?} encoded as {wire:?}");
}

fn forwarded_round_trip(f: Forwarded) {
    let Some(wire) = f.encode() else { return };
    let mut expect = f.clone();
    // `host` is sent only when it is a (non-empty) token.
    expect.host.take_if(|h| {
        h.is_empty()
            || !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:[]".contains(&b))
    });
    assert_eq!(Forwarded::parse(&wire), expect, "{f:?} encoded as {wire:?}");
}
