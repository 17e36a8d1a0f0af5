//! JWT authentication on arbitrary tokens and headers: no panic, and no token the fuzzer can
//! make is ever accepted (it cannot sign with the configured key).
#![no_main]

use std::sync::OnceLock;

use ambit_authn::{Authenticators, AuthnOutcome};
use ambit_authz::WaypointTarget;
use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = include_str!("../fixtures/request-authentication.yaml");

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    token: &'a [u8],
    header: &'a str,
    path: &'a str,
    now: u64,
}

fn authenticators() -> &'static Authenticators {
    static A: OnceLock<Authenticators> = OnceLock::new();
    A.get_or_init(|| Authenticators::parse(CONFIG, "ra.yaml", "istio-system").expect("fixture").0)
}

fuzz_target!(|i: Input<'_>| {
    let mut headers = HeaderMap::new();
    let mut bearer = b"Bearer ".to_vec();
    bearer.extend_from_slice(i.token);
    if let Ok(v) = HeaderValue::from_bytes(&bearer) {
        headers.insert(http::header::AUTHORIZATION, v);
    }
    if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(i.header.as_bytes()), HeaderValue::from_bytes(i.token)) {
        headers.append(k, v);
    }
    let target = WaypointTarget {
        namespace: "shop",
        name: "waypoint",
        service: Some(("shop", "reviews")),
    };
    let out = authenticators().authenticate(&target, &headers, i.path, i.now);
    assert!(
        !matches!(out, AuthnOutcome::Authenticated { .. }),
        "a forged token was accepted: {out:?}"
    );
});
