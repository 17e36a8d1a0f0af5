//! Gateway API HTTPRoute decisions (`ambit.Router`).

use std::sync::Mutex;
use std::time::Instant;

use facade::hbone::http::HeaderMap;
use facade::route::{
    Backend, Forward, ForwardedRequest, Outcome, Retry as RustRetry, Rng, RouteTable,
    RouteTarget as Target, SplitMix64,
};
use pyo3::prelude::*;

use crate::convert::{self, header_list, header_map, pair};
use crate::errors::{ambit_err, value_err};

/// A backend as `(namespace, name, port)` (port None: the request's port).
type BackendTuple = (String, String, Option<u16>);

fn backend(b: &Backend) -> BackendTuple {
    (b.namespace.clone(), b.name.clone(), b.port)
}

/// A rule's `retry` stanza: `attempts` retries after the first try, on the listed status
/// `codes` (and on connection failures), with `backoff` seconds as the base interval.
#[pyclass(frozen, module = "ambit", get_all)]
#[derive(Debug, Clone)]
pub(crate) struct Retry {
    /// Retries after the first try.
    attempts: u32,
    /// Status codes that are retried.
    codes: Vec<u16>,
    /// Base backoff interval in seconds, or None.
    backoff: Option<f64>,
}

#[pymethods]
impl Retry {
    fn __repr__(&self) -> String {
        let backoff = self
            .backoff
            .map_or_else(|| "None".to_owned(), |b| b.to_string());
        format!(
            "Retry(attempts={}, codes={:?}, backoff={backoff})",
            self.attempts, self.codes
        )
    }
}

impl From<&RustRetry> for Retry {
    fn from(r: &RustRetry) -> Self {
        Self {
            attempts: r.attempts,
            codes: r.codes.iter().map(|c| c.as_u16()).collect(),
            backoff: r.backoff.map(|d| d.as_secs_f64()),
        }
    }
}

/// The routing decision for one request.
#[pyclass(frozen, module = "ambit", get_all)]
#[derive(Debug, Default)]
pub(crate) struct RouteResult {
    /// `forward`, `redirect`, `not_found` (404), `unrouted` (no route applies: forward to the
    /// original service), `no_backend` (500), `backend_not_permitted` (500: a cross-namespace
    /// backend no ReferenceGrant permits; `route` and `backend` name it), `preflight` (a CORS
    /// preflight answered with 200 and `response_headers`), `abort` (injected fault) or
    /// `rate_limited` (429).
    kind: String,
    /// The status the waypoint answers with itself; None for `forward` and `unrouted`.
    status: Option<u16>,
    /// The chosen backend `(namespace, name, port)` for `forward`.
    backend: Option<BackendTuple>,
    /// The `Location` of a redirect.
    location: Option<String>,
    /// The matching HTTPRoute (`namespace/name`) for `forward`.
    route: Option<String>,
    /// The index of the matching rule in `spec.rules`.
    rule: Option<usize>,
    /// The matching rule's `name`, if it has one.
    rule_name: Option<String>,
    /// The request target (path and query) as forwarded, after URLRewrite; set for `forward`
    /// and `unrouted`.
    path: Option<String>,
    /// The request authority as forwarded (when the request had one), after URLRewrite.
    authority: Option<String>,
    /// The request headers as forwarded, after RequestHeaderModifier and URLRewrite; set for
    /// `forward` and `unrouted`.
    headers: Option<Vec<(String, String)>>,
    /// The `response_headers` passed in, after ResponseHeaderModifier (`forward` only).
    response_headers: Option<Vec<(String, String)>>,
    /// `timeouts.request` in seconds (None: no timeout).
    request_timeout: Option<f64>,
    /// `timeouts.backendRequest` in seconds (None: no timeout).
    backend_request_timeout: Option<f64>,
    /// The rule's retry policy, or None.
    retry: Option<Retry>,
    /// Injected delay in seconds (fault extension), for `forward` and `abort`.
    delay: Option<f64>,
    /// RequestMirror backends this request was sampled for.
    mirrors: Vec<BackendTuple>,
}

#[pymethods]
impl RouteResult {
    fn __repr__(&self) -> String {
        match (&self.backend, self.status) {
            (Some((ns, name, port)), _) => format!(
                "RouteResult(forward to {ns}/{name}:{}, route={:?})",
                port.map_or_else(|| "*".to_owned(), |p| p.to_string()),
                self.route.as_deref().unwrap_or("")
            ),
            (None, Some(s)) => format!("RouteResult({}, status={s})", self.kind),
            _ => format!("RouteResult({})", self.kind),
        }
    }
}

/// Where random draws come from for one decision.
enum Draws<'a> {
    Seeded(SplitMix64),
    Shared(&'a Mutex<SplitMix64>),
    Fractions(&'a [f64], usize),
}

impl Rng for Draws<'_> {
    fn next_u64(&mut self) -> u64 {
        match self {
            Draws::Seeded(r) => r.next_u64(),
            Draws::Shared(m) => m.lock().unwrap_or_else(|p| p.into_inner()).next_u64(),
            Draws::Fractions(f, i) => {
                let v = f.get(*i % f.len().max(1)).copied().unwrap_or(0.0);
                *i += 1;
                // A fraction of the u64 range (saturating: 1.0 and above give u64::MAX).
                (v.clamp(0.0, 1.0) * 18_446_744_073_709_551_616.0) as u64
            }
        }
    }
}

/// Compiled Gateway API HTTPRoutes (with ambit's Fault and LocalRateLimit extensions), as a
/// waypoint routes with them.
#[pyclass(frozen, module = "ambit")]
#[derive(Debug)]
pub(crate) struct Router {
    table: RouteTable,
    warnings: Vec<String>,
    /// Time zero of the `now` argument.
    epoch: Instant,
    /// Draws for calls that pass neither `seed` nor `random`.
    rng: Mutex<SplitMix64>,
}

#[pymethods]
impl Router {
    /// Loads HTTPRoute YAML as `kubectl apply` takes it. `seed` makes the router's random
    /// source (weighted backends, fault and mirror sampling) reproducible; by default it is
    /// seeded from the clock. Raises ConfigError naming the object and field.
    #[staticmethod]
    #[pyo3(signature = (yaml, seed = None, file = "<l7>"))]
    fn from_yaml(yaml: &str, seed: Option<u64>, file: &str) -> PyResult<Self> {
        let loaded = RouteTable::parse(yaml, file).map_err(ambit_err)?;
        let seed = seed.unwrap_or_else(clock_seed);
        Ok(Self {
            table: loaded.table,
            warnings: loaded.warnings.iter().map(ToString::to_string).collect(),
            epoch: Instant::now(),
            rng: Mutex::new(SplitMix64::new(seed)),
        })
    }

    /// What was skipped or accepted with a caveat.
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    /// The loaded HTTPRoutes as `namespace/name`, sorted.
    #[getter]
    fn names(&self) -> Vec<String> {
        self.table.route_names().map(str::to_owned).collect()
    }

    fn __len__(&self) -> usize {
        self.table.len()
    }

    /// Decides one request to `service` (namespace, name) on `port`, through `waypoint`
    /// (namespace, name) whose routes apply when the service has none. `path` is the request
    /// target (`/path?query`); `authority` the HTTP/2 `:authority` (None: the `Host` header).
    /// `now` is seconds on the router's clock (0 = when it was loaded; default: the real
    /// elapsed time) for rate limits. Random draws come from `random` (fractions in [0, 1),
    /// cycled), else a generator seeded with `seed`, else the router's own. `client_namespace`
    /// is the client's namespace, for GAMMA consumer routes (None: unknown, they do not apply).
    #[pyo3(signature = (
        *, service, port = 80, method = "GET", path = "/", headers = None, waypoint = None,
        authority = None, response_headers = None, seed = None, random = None, now = None,
        client_namespace = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn route(
        &self,
        service: (String, String),
        port: u16,
        method: &str,
        path: &str,
        headers: Option<&Bound<'_, PyAny>>,
        waypoint: Option<(String, String)>,
        authority: Option<&str>,
        response_headers: Option<&Bound<'_, PyAny>>,
        seed: Option<u64>,
        random: Option<Vec<f64>>,
        now: Option<f64>,
        client_namespace: Option<&str>,
    ) -> PyResult<RouteResult> {
        let method = convert::method(method)?;
        let headers = header_map(headers)?;
        let mut response = header_map(response_headers)?;
        let now = match now {
            Some(t) => self.epoch + convert::duration(t, "now")?,
            None => Instant::now(),
        };
        let mut draws = match (&random, seed) {
            (Some(f), _) if !f.is_empty() => Draws::Fractions(f, 0),
            (_, Some(s)) => Draws::Seeded(SplitMix64::new(s)),
            _ => Draws::Shared(&self.rng),
        };
        let target = Target {
            service_namespace: &service.0,
            service_name: &service.1,
            port,
            waypoint: waypoint.as_ref().map(pair),
            authority,
            client_namespace,
        };
        let outcome = self
            .table
            .route(&target, &method, path, &headers, now, &mut draws);
        let mut out = RouteResult {
            status: outcome.status().map(|s| s.as_u16()),
            ..RouteResult::default()
        };
        out.kind = match outcome {
            Outcome::Unrouted => {
                let (path, authority, headers) =
                    forwarded(None, &method, path, authority, headers)?;
                out.path = Some(path);
                out.authority = authority;
                out.headers = Some(headers);
                "unrouted"
            }
            Outcome::NotFound => "not_found",
            Outcome::Forward(f) => {
                let (path, authority, headers) =
                    forwarded(Some(&f), &method, path, authority, headers)?;
                f.apply_response(&mut response);
                out.path = Some(path);
                out.authority = authority;
                out.headers = Some(headers);
                out.response_headers = Some(header_list(&response));
                out.backend = Some(backend(f.backend()));
                out.route = Some(f.route().to_owned());
                out.rule = Some(f.rule);
                out.rule_name = f.rule_name().map(str::to_owned);
                out.request_timeout = f.timeouts.request.map(|d| d.as_secs_f64());
                out.backend_request_timeout = f.timeouts.backend_request.map(|d| d.as_secs_f64());
                out.retry = f.retry().map(Retry::from);
                out.delay = f.delay.map(|d| d.as_secs_f64());
                out.mirrors = f.mirrors().map(backend).collect();
                "forward"
            }
            Outcome::Redirect { location, .. } => {
                out.location = Some(location);
                "redirect"
            }
            Outcome::Abort { delay, .. } => {
                out.delay = delay.map(|d| d.as_secs_f64());
                "abort"
            }
            Outcome::Preflight { headers } => {
                out.response_headers = Some(header_list(&headers));
                "preflight"
            }
            Outcome::RateLimited => "rate_limited",
            Outcome::NoBackend => "no_backend",
            Outcome::BackendNotPermitted { route, backend: b } => {
                out.route = Some(route);
                out.backend = Some(backend(&b));
                "backend_not_permitted"
            }
            _ => "other",
        }
        .to_owned();
        Ok(out)
    }
}

/// A forwarded request as Python sees it: path and query, authority, header pairs.
type PyForwarded = (String, Option<String>, Vec<(String, String)>);

/// The request as it would be forwarded (ambit-route's `ForwardedRequest`): `forward`'s
/// request edits applied (none when unrouted), headers as Python pairs.
fn forwarded(
    forward: Option<&Forward>,
    method: &facade::hbone::http::Method,
    path: &str,
    authority: Option<&str>,
    headers: HeaderMap,
) -> PyResult<PyForwarded> {
    let fwd = ForwardedRequest::new(forward, method, path, authority, headers)
        .map_err(|e| value_err(e.to_string()))?;
    Ok((fwd.path_and_query, fwd.authority, header_list(&fwd.headers)))
}

/// A seed from the clock, mixed with the process's random hashing keys (not cryptographic:
/// traffic splitting only needs distinct, well-mixed seeds).
fn clock_seed() -> u64 {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    std::collections::hash_map::RandomState::new().hash_one(nanos)
}
