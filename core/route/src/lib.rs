//! Gateway API `HTTPRoute` for ambit's waypoint, as pure data plus matching: no I/O, no
//! runtime, no clock and no random source of its own.
//!
//! # How it fits
//!
//! The waypoint loads route YAML into a [`RouteTable`] ([`RouteTable::parse`],
//! [`insert`](RouteTable::insert), [`merge`](RouteTable::merge)), and for each request calls
//! [`RouteTable::route`] with the HBONE target ([`RouteTarget`]), the method, path, headers, the
//! current [`Instant`](std::time::Instant) and a random source ([`Rng`]). The answer is an
//! [`Outcome`]: forward ([`Forward`], with backend, timeouts, retry, mirrors and the request and
//! response edits), redirect, 404, 500, 429, an injected fault, or [`Outcome::Unrouted`] (no
//! route applies: forward to the original Service, the waypoint default).
//!
//! # What is implemented (Gateway API v1 `HTTPRoute` and `GRPCRoute`, v1beta1 `ReferenceGrant`)
//!
//! - **Attachment.** `parentRefs` to a Service (`group: ""`, `kind: Service`, optional `port`)
//!   or to the waypoint Gateway (`gateway.networking.k8s.io`/`Gateway`, the default). Routes
//!   attached to the Service (and port) take precedence; if there are none, those attached to
//!   the waypoint apply. `hostnames` are matched against the request's host for
//!   Gateway-attached routes (exact, then the longest matching `*.` wildcard, then routes with
//!   no hostnames; a request that no rule of a more specific hostname matches falls through to
//!   the next); for Service-attached routes they are ignored, as Istio does.
//! - **GAMMA producer and consumer routes.** A route in the Service's namespace (producer)
//!   applies to every client; a route in another namespace (consumer) applies only to clients
//!   in that namespace ([`RouteTarget::client_namespace`], which the waypoint takes from the
//!   client's SPIFFE identity), and for them takes the place of the producer routes.
//! - **ReferenceGrant.** A `backendRef` or `RequestMirror` to a Service in another namespace
//!   needs a `ReferenceGrant` there that lets the route's kind and namespace use it (by name or
//!   every Service); a consumer route may also send to the Service it is attached to. A refused
//!   backend's share of requests is [`Outcome::BackendNotPermitted`] (500) and a refused mirror
//!   is not sent; both are warned about (`RefNotPermitted`) when the table is built.
//! - **GRPCRoute** is read as the HTTP/2 request it matches: a method match is a path match on
//!   `/<service>/<method>` (both: exact; service alone: every method; method alone or
//!   `RegularExpression`: a regular expression), header matches and filters as in HTTPRoute
//!   (`RequestHeaderModifier`, `ResponseHeaderModifier`, `RequestMirror`, `ExtensionRef`).
//! - **Matching**: path `Exact`, `PathPrefix` (whole path elements, trailing `/` ignored) and
//!   `RegularExpression` (full match, Rust `regex` syntax, which is close to RE2's); headers
//!   (case-insensitive names, `Exact` or `RegularExpression`); query parameters (values
//!   percent-decoded, first occurrence); method. Precedence across every rule of every
//!   applicable route is the spec's, compiled into a sorted table at load: Exact path, longest
//!   prefix, regular expression, method, most headers, most query parameters, oldest
//!   `creationTimestamp` (absent counts as newest), `namespace/name`, rule order, match order.
//!   A lookup scans that table and stops at the first hit, allocating nothing.
//! - **Backends**: weighted `backendRefs` to Services (weight 0..=1,000,000, default 1). Weight 0
//!   gets nothing; all zero, no backendRefs, or a backend that is not a Service gives
//!   [`Outcome::NoBackend`] (500).
//! - **Filters**: `RequestHeaderModifier`, `ResponseHeaderModifier`, `RequestRedirect` (full
//!   `Location` built per the spec's port rules), `URLRewrite` (hostname, `ReplaceFullPath`,
//!   `ReplacePrefixMatch`), `RequestMirror` (`percent` or `fraction`, sampled per request), on
//!   a rule or on one backendRef (applied only to the requests sent to it, after the rule's; a
//!   backendRef's rewrite takes the place of the rule's). `CORS` on a rule: preflights are
//!   answered ([`Outcome::Preflight`]) and allowed origins' responses get the CORS headers.
//!   `ExternalAuth`, and an `ExtensionRef` that is not an ambit extension, cannot be skipped
//!   under the spec, so the rule answers 500 (with a warning).
//! - **`timeouts`** (`request`, `backendRequest`; `"0s"` disables) and **`retry`** (`codes`,
//!   `attempts` defaulting to 2 as in Istio, `backoff`); see [`Timeouts`] and [`Retry`].
//!
//! Loading checks what the API server's validation would (enums, ranges, limits, the CEL
//! rules such as "RequestRedirect and URLRewrite are exclusive"): a violation is a
//! [`ambit_config::ConfigError`] naming the file, object and field. Unknown fields and
//! unsupported features are [`ambit_config::ConfigWarning`]s.
//!
//! # ambit extensions
//!
//! Gateway API has no fault injection or rate limiting, so ambit adds two kinds, referenced
//! from a rule's `filters` with the standard `ExtensionRef` filter (same namespace as the
//! route; at most one of each per rule):
//!
//! ```yaml
//! filters:
//! - type: ExtensionRef
//!   extensionRef: {group: ambit.dev, kind: Fault, name: flaky}
//! - type: ExtensionRef
//!   extensionRef: {group: ambit.dev, kind: LocalRateLimit, name: ten-per-second}
//! ---
//! apiVersion: ambit.dev/v1alpha1
//! kind: Fault                      # Istio VirtualService `fault` semantics
//! metadata: {name: flaky, namespace: shop}
//! spec:
//!   delay: {fixedDelay: 2s, percentage: {value: 10}}   # or `percentage: 10`
//!   abort: {httpStatus: 503, percentage: {value: 5}}
//! ---
//! apiVersion: ambit.dev/v1alpha1
//! kind: LocalRateLimit             # Envoy's token_bucket
//! metadata: {name: ten-per-second, namespace: shop}
//! spec: {maxTokens: 20, tokensPerFill: 10, fillInterval: 1s}
//! ```
//!
//! - `Fault`: delay and abort are sampled independently per request; an unset `percentage`
//!   means no request, as in Istio (with a warning). `fixedDelay` takes protobuf (`"0.5s"`) or
//!   Gateway API (`"500ms"`) durations. An abort is [`Outcome::Abort`] (carrying the delay if
//!   it fired too); a delay alone is [`Forward::delay`].
//! - `LocalRateLimit`: one token bucket per rule that references it, per table (so per
//!   waypoint instance), starting full with `maxTokens`, refilled continuously at `tokensPerFill`
//!   per `fillInterval` (default 1). It is a single atomic updated by compare-and-swap: no lock
//!   on the request path. Exhausted: [`Outcome::RateLimited`] (429). The caller passes `now`,
//!   so tests need no sleeps.
//! - A rule referencing a `Fault` or `LocalRateLimit` that is not loaded answers 500 until it
//!   is (Gateway API forbids skipping an unresolved filter); objects may live in other files
//!   and are resolved whenever the table is rebuilt.
//!
//! The order for a matched rule is CORS preflight, fault (abort), rate limit, redirect,
//! backend choice (then a backendRef's redirect, a refused backend).
//!
//! # Not implemented
//!
//! `sessionPersistence`, `ExternalAuth` (fails closed), the Gateway's listeners and
//! `allowedRoutes` (a waypoint has one implicit listener), CORS on a backendRef (warned and
//! ignored), and path normalisation (the caller's choice).
//!
//! # Example
//!
//! ```
//! use std::time::Instant;
//!
//! use ambit_route::{Outcome, RouteTable, RouteTarget, SplitMix64};
//! use http::{HeaderMap, Method};
//!
//! let yaml = r#"
//! apiVersion: gateway.networking.k8s.io/v1
//! kind: HTTPRoute
//! metadata: {name: reviews, namespace: shop}
//! spec:
//!   parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
//!   rules:
//!   - matches: [{path: {type: PathPrefix, value: /v2}}]
//!     backendRefs: [{name: reviews-v2, port: 9080}]
//!     timeouts: {request: 10s}
//! "#;
//! let loaded = RouteTable::parse(yaml, "reviews.yaml")?;
//! assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
//! let table = loaded.table;
//!
//! let target = RouteTarget {
//!     service_namespace: "shop",
//!     service_name: "reviews",
//!     port: 9080,
//!     waypoint: Some(("shop", "waypoint")),
//!     authority: None,
//!     client_namespace: None,
//! };
//! let headers = HeaderMap::new();
//! let mut rng = SplitMix64::new(7);
//! let now = Instant::now();
//! match table.route(&target, &Method::GET, "/v2/books?id=1", &headers, now, &mut rng) {
//!     Outcome::Forward(f) => {
//!         assert_eq!((f.backend().name.as_str(), f.backend().port), ("reviews-v2", Some(9080)));
//!         assert_eq!(f.timeouts.request, Some(std::time::Duration::from_secs(10)));
//!     }
//!     other => panic!("{other:?}"),
//! }
//! // Routes exist for the Service, but no rule matches `/v1`: 404.
//! let outcome = table.route(&target, &Method::GET, "/v1", &headers, now, &mut rng);
//! assert!(matches!(outcome, Outcome::NotFound));
//! // No route at all for another Service: forward to it unchanged.
//! let other = RouteTarget { service_name: "ratings", ..target };
//! let outcome = table.route(&other, &Method::GET, "/", &headers, now, &mut rng);
//! assert!(matches!(outcome, Outcome::Unrouted));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cors;
mod load;
mod model;
mod outcome;
mod ratelimit;
mod rng;
mod table;

pub use model::{Backend, Retry, Timeouts};
pub use outcome::{Forward, ForwardedRequest, InvalidRequest, Outcome};
pub use rng::{Rng, SplitMix64};
pub use table::{LoadedRoutes, RouteTable, RouteTarget};
