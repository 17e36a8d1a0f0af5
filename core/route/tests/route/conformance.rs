//! The Gateway API conformance suite's HTTPRoute, GRPCRoute and mesh tests
//! (`testdata/gateway-api/conformance.yaml`, transcribed from the pinned suite by
//! `tools/gateway-conformance/transcribe.py`) decided by the route table, and checked the way
//! the suite's own comparers check a response: `http.CompareRoundTrip` for the gateway role,
//! the mesh echo client's `compareRequest` for the mesh role.
//!
//! Every test of the file passes in full, or is listed in
//! `testdata/gateway-api/applicability.yaml` as not applicable (with the reason) or not yet
//! passing (with the reason); a listed "not yet" test that passes fails this test too, so the
//! list (and the README table made from it) cannot go stale.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use ambit_route::{Forward, Outcome, RouteTable, RouteTarget, SplitMix64};
use ambit_test_util::conformance::{Base, BaseService, Case, Grpc, Req, Test};
use http::header::{HOST, HeaderName, HeaderValue};
use http::{HeaderMap, Method};

mod compare;
mod stats;

use compare::{
    answered_headers, check_gateway, check_local_answer, check_mesh, check_redirect,
    check_response_headers,
};
use stats::{check_distribution, check_mirrors};

/// The host a gateway-role request without one carries: the suite sends the Gateway's address,
/// an IP, which no route hostname matches.
const GATEWAY_ADDRESS: &str = "192.0.2.10";
/// The port of the suite's Gateway listeners and mesh Services.
const PORT: u16 = 80;
/// Draws per weighted-distribution check.
const DRAWS: u32 = 2_000;

/// The namespace the mesh tests' client runs in, and where `echo` lives.
const MESH_NAMESPACE: &str = "gateway-conformance-mesh";

#[test]
fn gateway_api_conformance_suite() {
    let (suite, apply) = ambit_test_util::conformance::read();
    assert!(suite.tests.len() >= 60, "only {} tests", suite.tests.len());
    let names: BTreeSet<&str> = suite.tests.iter().map(|t| t.name.as_str()).collect();
    for listed in apply.not_applicable.keys().chain(apply.not_yet.keys()) {
        assert!(
            names.contains(listed.as_str()),
            "applicability.yaml lists {listed}, which the suite at {} does not have",
            suite.source.tag
        );
    }
    let pods = Pods::new(suite.base.services.iter());
    let mut failures = Vec::new();
    let mut passed = 0;
    for test in &suite.tests {
        if apply.not_applicable.contains_key(&test.name) {
            continue;
        }
        let result = run(test, &suite.base, &pods);
        match (result, apply.not_yet.get(&test.name)) {
            (Ok(()), None) => passed += 1,
            (Ok(()), Some(why)) => failures.push(format!(
                "{}: passes now, but applicability.yaml says not yet ({why}): move it",
                test.name
            )),
            (Err(e), None) => failures.push(format!("{}: {e}", test.name)),
            (Err(_), Some(_)) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} tests fail:\n{}",
        failures.len(),
        suite.tests.len(),
        failures.join("\n")
    );
    assert!(passed >= 30, "only {passed} tests passed");
}

/// What the waypoint knows while a test runs: its routes, the Services that exist (a backend
/// that does not is answered 500), and each Gateway's listener port (the port the request was
/// sent to, which redirects keep).
struct World {
    table: RouteTable,
    services: BTreeSet<(String, String)>,
    ports: BTreeMap<(String, String), u16>,
}

impl World {
    /// The test's manifests (and the base ReferenceGrants), minus the objects `deleted` names.
    fn load(test: &Test, base: &Base, deleted: &[String]) -> Result<Self, String> {
        let yaml = format!("{}\n---\n{}", test.manifests, base.reference_grants);
        let objects = ambit_config::objects(&yaml, &ambit_config::Report::new("manifests.yaml"))
            .map_err(|e| format!("manifests: {e}"))?;
        let objects: Vec<_> = objects
            .into_iter()
            .filter(|o| {
                let id = format!(
                    "{} {}/{}",
                    o.kind,
                    o.namespace,
                    o.name.as_deref().unwrap_or("")
                );
                !deleted.contains(&id)
            })
            .collect();
        let mut report = ambit_config::Report::new("manifests.yaml");
        let table =
            RouteTable::from_objects(&objects, &mut report).map_err(|e| format!("load: {e}"))?;
        let mut services: BTreeSet<_> = base
            .services
            .iter()
            .map(|s| (s.namespace.clone(), s.name.clone()))
            .collect();
        let mut ports: BTreeMap<_, _> = base
            .gateways
            .iter()
            .filter_map(|g| {
                Some((
                    (g.namespace.clone(), g.name.clone()),
                    g.listeners.first()?.port,
                ))
            })
            .collect();
        for o in &objects {
            let Some(name) = o.name.clone() else { continue };
            match o.kind.as_str() {
                "Service" => {
                    services.insert((o.namespace.clone(), name));
                }
                "Gateway" => {
                    let port = o.spec["listeners"][0]["port"]
                        .as_u64()
                        .and_then(|p| u16::try_from(p).ok());
                    if let Some(p) = port {
                        ports.insert((o.namespace.clone(), name), p);
                    }
                }
                _ => {}
            }
        }
        Ok(Self {
            table,
            services,
            ports,
        })
    }
}

/// One test: its manifests loaded as a waypoint would load them, then every case and
/// distribution.
fn run(test: &Test, base: &Base, pods: &Pods) -> Result<(), String> {
    let with_test_services;
    let pods = if test.services.is_empty() {
        pods
    } else {
        with_test_services = Pods::new(base.services.iter().chain(&test.services));
        &with_test_services
    };
    if let Some(why) = &test.untranscribed
        && test.cases.is_empty()
        && test.distributions.is_empty()
    {
        return Err(format!("not transcribed: {why}"));
    }
    let world = World::load(test, base, &[])?;
    let mesh = test.role == "mesh";
    let mut wrong = Vec::new();
    for (i, case) in test.cases.iter().enumerate() {
        let mut rng = SplitMix64::new(i as u64 + 1);
        let after;
        let w = if case.after_deleting.is_empty() {
            &world
        } else {
            after = World::load(test, base, &case.after_deleting)?;
            &after
        };
        if let Err(e) = check_case(w, mesh, case, pods, &mut rng) {
            wrong.push(format!("case {i} ({}): {e}", case.name));
        }
    }
    for (i, d) in test.distributions.iter().enumerate() {
        if let Err(e) = check_distribution(&world, mesh, d, pods) {
            wrong.push(format!("distribution {i}: {e}"));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

/// What a request resolved to, as the suite's client would see it.
enum Seen {
    /// Forwarded to a Service: the request as the backend received it and the response.
    Forwarded {
        namespace: String,
        service: String,
        request: Box<http::request::Parts>,
        response: HeaderMap,
    },
    /// Answered by the waypoint itself.
    Answered {
        status: u16,
        location: Option<String>,
        /// The answer's headers (a redirect's `Location`, a preflight's CORS headers).
        headers: HeaderMap,
    },
}

/// The request and where it goes: gateway requests go to the named Gateway (the waypoint's
/// routes attached to it), mesh requests to the Service named by the host (`name[.ns][:port]`).
struct Sent {
    parts: http::request::Parts,
    service: (String, String),
    port: u16,
    gateway: Option<(String, String)>,
    client: Option<String>,
}

fn sent(
    world: &World,
    req: &Req,
    mesh: bool,
    gateway: Option<&str>,
    client: Option<&str>,
    grpc: Option<&Grpc>,
) -> Result<Sent, String> {
    let method = match (grpc, req.method.as_deref()) {
        (Some(_), _) => "POST",
        (None, Some(m)) if !m.is_empty() => m,
        _ => "GET",
    };
    let path = match grpc {
        Some(g) => format!("/{}/{}", g.service, g.method),
        None => req.path.clone().unwrap_or_else(|| "/".to_owned()),
    };
    let default_host = if mesh { "echo" } else { GATEWAY_ADDRESS };
    let host = req
        .host
        .as_deref()
        .filter(|h| !h.is_empty())
        .unwrap_or(default_host);
    let mut b = http::Request::builder()
        .method(Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?)
        .uri(&path);
    b = b.header(HOST, host);
    if grpc.is_some() {
        b = b.header("content-type", "application/grpc");
    }
    for (k, v) in &req.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    let (parts, ()) = b
        .body(())
        .map_err(|e| format!("request: {e}"))?
        .into_parts();
    let client = client
        .map(str::to_owned)
        .or_else(|| mesh.then(|| MESH_NAMESPACE.to_owned()));
    if mesh {
        let (name_ns, port) = match host.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| format!("host {host:?}"))?),
            None => (host, PORT),
        };
        let mut labels = name_ns.split('.');
        let name = labels.next().unwrap_or_default().to_owned();
        let ns = labels
            .next()
            .map(str::to_owned)
            .or_else(|| client.clone())
            .unwrap_or_default();
        return Ok(Sent {
            parts,
            service: (ns, name),
            port,
            gateway: None,
            client,
        });
    }
    let gw = gateway.ok_or("a gateway case names no gateway")?;
    let (ns, name) = gw.split_once('/').ok_or("gateway is not ns/name")?;
    Ok(Sent {
        parts,
        // No Service is the target of a gateway request: only the Gateway's routes apply.
        service: (ns.to_owned(), format!("{name}.listener")),
        port: world
            .ports
            .get(&(ns.to_owned(), name.to_owned()))
            .copied()
            .unwrap_or(PORT),
        gateway: Some((ns.to_owned(), name.to_owned())),
        client,
    })
}

fn decide(
    world: &World,
    s: &Sent,
    mesh: bool,
    upstream: &BTreeMap<String, String>,
    rng: &mut SplitMix64,
) -> Result<(Seen, Option<Forward>), String> {
    let table = &world.table;
    let target = RouteTarget {
        service_namespace: &s.service.0,
        service_name: &s.service.1,
        port: s.port,
        waypoint: s.gateway.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
        authority: None,
        client_namespace: s.client.as_deref(),
    };
    let pq = s.parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let outcome = table.route(
        &target,
        &s.parts.method,
        pq,
        &s.parts.headers,
        Instant::now(),
        rng,
    );
    let mut response = HeaderMap::new();
    for (k, v) in upstream {
        response.append(
            HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?,
            HeaderValue::from_str(v).map_err(|e| e.to_string())?,
        );
    }
    let mut parts = s.parts.clone();
    Ok(match outcome {
        Outcome::Forward(f) => {
            let b = f.backend();
            // The waypoint answers 500 for a backend Service it does not know.
            if !world
                .services
                .contains(&(b.namespace.clone(), b.name.clone()))
            {
                return Ok((
                    Seen::Answered {
                        status: 500,
                        location: None,
                        headers: HeaderMap::new(),
                    },
                    None,
                ));
            }
            // The suite's echo backend waits `?delay=` before answering; a rule timeout that
            // is shorter makes the waypoint answer 504 (as it does, in core/waypoint's tests).
            if let Some(delay) = echo_delay(pq) {
                let t = f.timeouts;
                if t.request
                    .into_iter()
                    .chain(t.backend_request)
                    .any(|t| t < delay)
                {
                    return Ok((
                        Seen::Answered {
                            status: 504,
                            location: None,
                            headers: HeaderMap::new(),
                        },
                        None,
                    ));
                }
            }
            f.apply_request(&mut parts);
            f.apply_response(&mut response);
            let b = f.backend();
            (
                Seen::Forwarded {
                    namespace: b.namespace.clone(),
                    service: b.name.clone(),
                    request: Box::new(parts),
                    response,
                },
                Some(f),
            )
        }
        // A mesh request no route applies to goes on to the Service it was sent to; a gateway
        // has nothing to send it to.
        Outcome::Unrouted if mesh => (
            Seen::Forwarded {
                namespace: s.service.0.clone(),
                service: s.service.1.clone(),
                request: Box::new(parts),
                response,
            },
            None,
        ),
        Outcome::Unrouted => (
            Seen::Answered {
                status: 404,
                location: None,
                headers: HeaderMap::new(),
            },
            None,
        ),
        Outcome::Redirect { status, location } => (
            Seen::Answered {
                status: status.as_u16(),
                headers: answered_headers(Some(&location)),
                location: Some(location),
            },
            None,
        ),
        Outcome::Preflight { headers } => (
            Seen::Answered {
                status: 200,
                location: None,
                headers,
            },
            None,
        ),
        other => (
            Seen::Answered {
                status: other.status().map_or(500, |s| s.as_u16()),
                location: None,
                headers: HeaderMap::new(),
            },
            None,
        ),
    })
}

fn check_case(
    world: &World,
    mesh: bool,
    case: &Case,
    pods: &Pods,
    rng: &mut SplitMix64,
) -> Result<(), String> {
    let s = sent(
        world,
        &case.request,
        mesh,
        case.gateway.as_deref(),
        case.client_namespace.as_deref(),
        case.grpc.as_ref(),
    )?;
    let mut statuses = case.response.statuses.clone();
    if let Some(st) = case.response.status
        && !statuses.contains(&st)
    {
        statuses.push(st);
    }
    if statuses.is_empty() {
        statuses.push(200);
    }
    let (mut seen, forward) = decide(world, &s, mesh, &case.backend_set_response_headers, rng)?;
    // The echo backend's retry simulation: the rule's retry policy (which the waypoint
    // executes, tested in core/waypoint) decides whether the client sees the failure.
    if let (Some(rb), Some(f)) = (&case.retry_backend, &forward) {
        let recovers = rb.fails == 0
            || f.retry().is_some_and(|r| {
                http::StatusCode::from_u16(rb.status).is_ok_and(|st| r.retries_status(st))
                    && rb.fails <= r.attempts
            });
        if !recovers {
            seen = Seen::Answered {
                status: rb.status,
                location: None,
                headers: HeaderMap::new(),
            };
        }
    }
    let status = match &seen {
        Seen::Forwarded { .. } => 200,
        Seen::Answered { status, .. } => *status,
    };
    if !statuses.contains(&status) {
        let detail = match &seen {
            Seen::Forwarded {
                namespace, service, ..
            } => format!(" (forwarded to {namespace}/{service})"),
            Seen::Answered {
                location: Some(l), ..
            } => format!(" (Location {l})"),
            Seen::Answered { .. } => String::new(),
        };
        return Err(format!("status {status}{detail}, want one of {statuses:?}"));
    }
    if !case.mirrored_to.is_empty() {
        check_mirrors(world, &s, case, rng)?;
    }
    // A WebSocket case asks only that the upgrade reaches a backend (the messages are echoed
    // end to end in the Python package's tests).
    if case.websocket.is_some() {
        return match seen {
            Seen::Forwarded { .. } => Ok(()),
            Seen::Answered { status, .. } => Err(format!("the upgrade was answered {status}")),
        };
    }
    match seen {
        Seen::Forwarded {
            namespace,
            service,
            request,
            response,
        } => {
            if !pods.start_with(&namespace, &service, &case.backend) {
                return Err(format!(
                    "forwarded to {namespace}/{service}, whose pods do not all start with {:?}",
                    case.backend
                ));
            }
            if mesh {
                check_mesh(case, &request, &response)
            } else {
                check_gateway(case, &s, &namespace, &request, &response)
            }
        }
        Seen::Answered {
            status,
            location,
            headers,
        } => match (&case.redirect, location.as_deref()) {
            (Some(want), Some(loc)) if !mesh => check_redirect(want, loc, &s),
            (Some(_), None) => Err("a redirect was expected".into()),
            _ if mesh => {
                if !case.backend.is_empty() {
                    return Err(format!("answered by the waypoint, want {:?}", case.backend));
                }
                check_response_headers(case, &headers)
            }
            _ if status == 200 || status == 204 => check_local_answer(case, &s, &headers),
            _ => Ok(()),
        },
    }
}

/// Which Deployments' pods each base Service selects: the suite names a backend by the prefix
/// of the pod that answered.
struct Pods(BTreeMap<(String, String), Vec<String>>);

impl Pods {
    fn new<'a>(services: impl Iterator<Item = &'a BaseService>) -> Self {
        Self(
            services
                .map(|s| ((s.namespace.clone(), s.name.clone()), s.backends.clone()))
                .collect(),
        )
    }

    /// The Deployments behind a Service (a Service the base does not define is its own).
    fn of(&self, ns: &str, name: &str) -> Vec<String> {
        match self.0.get(&(ns.to_owned(), name.to_owned())) {
            Some(b) if !b.is_empty() => b.clone(),
            _ => vec![name.to_owned()],
        }
    }

    /// Whether every pod behind the Service starts with `prefix` (so any one answering passes).
    fn start_with(&self, ns: &str, name: &str, prefix: &str) -> bool {
        self.of(ns, name).iter().all(|d| d.starts_with(prefix))
    }

    /// The one Deployment behind the Service, if there is one.
    fn only(&self, ns: &str, name: &str) -> Option<String> {
        let mut all = self.of(ns, name);
        (all.len() == 1).then(|| all.remove(0))
    }
}

/// The echo backend's `delay` query parameter (a Go duration such as `1s` or `500ms`).
fn echo_delay(path_and_query: &str) -> Option<std::time::Duration> {
    let (_, query) = path_and_query.split_once('?')?;
    let v = query.split('&').find_map(|kv| kv.strip_prefix("delay="))?;
    let (num, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit() && c != '.')?);
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return None,
    };
    Some(std::time::Duration::from_secs_f64(secs))
}
