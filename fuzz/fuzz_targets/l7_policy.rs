//! L7 AuthorizationPolicy YAML and evaluation: no panic on any text; what loads decides
//! arbitrary requests deterministically, and a DENY match is never allowed.
#![no_main]

use ambit_identity::SpiffeId;
use ambit_authz::{HttpRequest, L7Policies, WaypointTarget};
use arbitrary::{Arbitrary, Unstructured};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

/// The request; the input is `<policy YAML> NUL <bytes for this>`, so plain YAML seeds work.
#[derive(Arbitrary, Debug)]
struct Input<'a> {
    host: &'a str,
    method: &'a str,
    path: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    port: u16,
    anonymous: bool,
}

fuzz_target!(|data: &[u8]| {
    let (yaml, rest) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(yaml) = std::str::from_utf8(yaml) else {
        return;
    };
    let Ok(i) = Input::arbitrary(&mut Unstructured::new(rest)) else {
        return;
    };
    let Ok((policies, _)) = L7Policies::parse(yaml, "fuzz.yaml", "istio-system") else {
        return;
    };
    let id = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/frontend").expect("id");
    let mut headers = HeaderMap::new();
    for (k, v) in i.headers.iter().take(16) {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            headers.append(k, v);
        }
    }
    let req = HttpRequest {
        source_id: if i.anonymous { None } else { Some(&id) },
        source_ip: [10, 0, 0, 1].into(),
        remote_ip: [10, 0, 0, 1].into(),
        destination_ip: [10, 96, 0, 1].into(),
        destination_port: i.port,
        host: i.host,
        method: i.method,
        path: i.path,
        headers: &headers,
        auth: None,
        sni: None,
    };
    for service in [Some(("shop", "reviews")), None] {
        let target = WaypointTarget {
            namespace: "shop",
            name: "waypoint",
            service,
        };
        let a = policies.evaluate(&target, &req);
        let b = policies.applicable(&target).evaluate(&req);
        assert_eq!(a, b, "indexed and cached evaluation agree");
    }
});
