//! Gateway API HTTPRoute YAML (`RouteTable::parse`): no panic on any text; what loads routes a
//! few requests without panicking, and the same seed gives the same outcome.
#![no_main]

use std::time::Instant;

use ambit_route::{Outcome, RouteTable, SplitMix64, RouteTarget as Target};
use http::{HeaderMap, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let Ok(loaded) = RouteTable::parse(s, "fuzz.yaml") else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert("x-feature", HeaderValue::from_static("beta"));
    headers.insert("host", HeaderValue::from_static("reviews.shop"));
    let now = Instant::now();
    for name in ["reviews", "web", "a"] {
        for ns in ["shop", "default", "a"] {
            let target = Target {
                service_namespace: ns,
                service_name: name,
                port: 80,
                waypoint: Some((ns, "waypoint")),
                authority: None,
                client_namespace: Some(ns),
            };
            for path in ["/", "/v1/items?x=1", "/a/b/../c", ""] {
                let kind = |o: &Outcome| format!("{:?}", o.status());
                let a = loaded.table.route(&target, &Method::GET, path, &headers, now, &mut SplitMix64::new(7));
                let b = loaded.table.route(&target, &Method::GET, path, &headers, now, &mut SplitMix64::new(7));
                if let Outcome::Forward(f) = &a {
                    let mut parts = http::Request::get(if path.is_empty() { "/" } else { path })
                        .body(())
                        .map(|r| r.into_parts().0);
                    if let Ok(p) = parts.as_mut() {
                        f.apply_request(p);
                    }
                    let mut h = HeaderMap::new();
                    f.apply_response(&mut h);
                }
                // Rate limits may differ between the two calls; everything else must not.
                if !matches!(a, Outcome::RateLimited) && !matches!(b, Outcome::RateLimited) {
                    assert_eq!(kind(&a), kind(&b));
                }
            }
        }
    }
});
