//! Route matching on arbitrary requests against a realistic table: no panic, and applying a
//! forward's filters to any request never panics.
#![no_main]

use std::sync::OnceLock;
use std::time::Instant;

use ambit_route::{Outcome, RouteTable, SplitMix64, RouteTarget as Target};
use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;

const TABLE: &str = include_str!("../fixtures/routes.yaml");

#[derive(Arbitrary, Debug)]
struct Req<'a> {
    method: &'a str,
    path: &'a str,
    headers: Vec<(&'a str, &'a [u8])>,
    authority: Option<&'a str>,
    /// The client's namespace (consumer routes), when known.
    client: Option<&'a str>,
    port: u16,
    seed: u64,
}

fn table() -> &'static RouteTable {
    static T: OnceLock<RouteTable> = OnceLock::new();
    T.get_or_init(|| RouteTable::parse(TABLE, "routes.yaml").expect("fixture loads").table)
}

fuzz_target!(|r: Req<'_>| {
    let Ok(method) = Method::from_bytes(r.method.as_bytes()) else {
        return;
    };
    let mut headers = HeaderMap::new();
    for (k, v) in r.headers.iter().take(32) {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_bytes(v)) {
            headers.append(k, v);
        }
    }
    let target = Target {
        service_namespace: "shop",
        service_name: "reviews",
        port: r.port,
        waypoint: Some(("shop", "waypoint")),
        authority: r.authority,
        client_namespace: r.client,
    };
    let outcome = table().route(&target, &method, r.path, &headers, Instant::now(), &mut SplitMix64::new(r.seed));
    if let Outcome::Forward(f) = outcome
        && let Ok(mut req) = http::Request::builder().method(method).uri(r.path).body(())
    {
        *req.headers_mut() = headers;
        let (mut parts, ()) = req.into_parts();
        f.apply_request(&mut parts);
        f.apply_response(&mut parts.headers);
    }
});
