//! PROXY protocol v2: decode arbitrary bytes (no panic, sane lengths, a decoded header
//! re-encodes to itself), then encode a structured header built from the same bytes and decode
//! it back, whole and cut short.
#![no_main]

use std::net::{IpAddr, SocketAddr};

use ambit_hbone::proxy_protocol::{ProxyHeaderError, ProxyHeader};
use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Header {
    addresses: Option<((IpAddr, u16), (IpAddr, u16))>,
    tlvs: Vec<(u8, Vec<u8>)>,
    cut: u16,
}

fuzz_target!(|data: &[u8]| {
    match ProxyHeader::decode(data) {
        Ok((h, used)) => {
            assert!((16..=data.len()).contains(&used));
            let wire = h.encode().expect("a decoded header fits");
            assert_eq!(ProxyHeader::decode(&wire), Ok((h, wire.len())));
        }
        Err(ProxyHeaderError::Incomplete { needed }) => assert!(needed > data.len()),
        Err(_) => {}
    }
    let Ok(x) = Header::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let any = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut h = ProxyHeader::new(any, any);
    h.addresses = x
        .addresses
        .map(|((s, sp), (d, dp))| (SocketAddr::new(s, sp), SocketAddr::new(d, dp)));
    h.tlvs = x.tlvs;
    let Ok(wire) = h.encode() else { return };
    // Mixed families travel as IPv6, the IPv4 side mapped.
    let mut expect = h;
    if let Some((s, d)) = &mut expect.addresses
        && s.is_ipv4() != d.is_ipv4()
    {
        for a in [s, d] {
            if let IpAddr::V4(v4) = a.ip() {
                a.set_ip(IpAddr::V6(v4.to_ipv6_mapped()));
            }
        }
    }
    assert_eq!(ProxyHeader::decode(&wire), Ok((expect, wire.len())));
    let cut = usize::from(x.cut) % wire.len();
    assert!(matches!(
        ProxyHeader::decode(&wire[..cut]),
        Err(ProxyHeaderError::Incomplete { .. })
    ));
});
