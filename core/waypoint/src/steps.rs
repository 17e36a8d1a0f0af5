//! The decisions of the request path, one small step each: authenticate (401), authorize
//! (403), route (404, 429, 500, fault, redirect, or a plan to forward). Each returns what it
//! decided or a [`Refusal`]; none sends anything.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ambit_authn::{AuthnOutcome, HeaderEdits};
use ambit_authz::{HttpRequest, RequestAuth, WaypointTarget};
use ambit_route::{Forward, Outcome, Retry};
use ambit_state::{Service, State, Workload};
use http::header::{self, HeaderValue};
use http::request::Parts;

use crate::refusal::{Refusal, Reply, local_reply};
use crate::request::{Downstream, host_of, path_and_query};
use crate::{BoundTarget, Inner, L7Config};

/// What one request is checked against: the waypoint, the tunnel it came on, and the config and
/// state at its start.
pub(crate) struct Cx<'a> {
    pub(crate) inner: &'a Arc<Inner>,
    pub(crate) state: &'a State,
    pub(crate) l7: &'a L7Config,
    pub(crate) conn: &'a Downstream,
}

impl Cx<'_> {
    /// The service the tunnel targets (`None` for a pod target) and the port.
    pub(crate) fn service(&self) -> (Option<&Arc<Service>>, u16) {
        match &self.conn.target {
            BoundTarget::Service(s, p) => (Some(s), *p),
            BoundTarget::Workload(_, p) => (None, *p),
        }
    }

    /// How policies see the request's destination.
    fn waypoint_target(&self) -> WaypointTarget<'_> {
        WaypointTarget {
            namespace: &self.inner.config.namespace,
            name: &self.inner.config.name,
            service: self
                .service()
                .0
                .map(|s| (s.namespace.as_str(), s.name.as_str())),
        }
    }
}

/// What authentication found: the request principal (if a token verified) and the edits to
/// apply before forwarding.
pub(crate) struct Authenticated {
    pub(crate) auth: Option<RequestAuth>,
    pub(crate) edits: HeaderEdits,
}

/// RequestAuthentication: a bad token is refused (401); no token means no request principal.
pub(crate) fn authenticate(cx: &Cx<'_>, parts: &Parts) -> Result<Authenticated, Refusal> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let outcome = cx.l7.authentication.authenticate(
        &cx.waypoint_target(),
        &parts.headers,
        &path_and_query(parts),
        now,
    );
    match outcome {
        AuthnOutcome::Anonymous { edits } => Ok(Authenticated { auth: None, edits }),
        AuthnOutcome::Authenticated { auth, edits } => Ok(Authenticated {
            auth: Some(auth),
            edits,
        }),
        AuthnOutcome::Denied { reason } => Err(Refusal::unauthenticated(reason.to_string())),
        _ => Err(Refusal::unauthenticated("Jwt verification fails".into())),
    }
}

/// AuthorizationPolicy over the request as received (403 when not allowed).
/// The methods of RFC 9110 and PATCH: a method equal to one of them but for letter case is
/// refused, because policies match methods exactly while some backends do not.
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Refuses a request whose method is a standard method in other letter case (`delete`):
/// authorization compares methods exactly, so such a request would escape a rule written for
/// `DELETE`, and a backend that reads methods case-insensitively would then act on it.
pub(crate) fn check_method(parts: &Parts) -> Result<(), Refusal> {
    let m = parts.method.as_str();
    match STANDARD_METHODS.iter().find(|s| s.eq_ignore_ascii_case(m)) {
        Some(standard) if *standard != m => Err(Refusal::case_variant_method(m, standard)),
        _ => Ok(()),
    }
}

pub(crate) fn authorize(
    cx: &Cx<'_>,
    parts: &Parts,
    auth: Option<&RequestAuth>,
) -> Result<(), Refusal> {
    let path = path_and_query(parts);
    let decision = cx.l7.authorization.evaluate(
        &cx.waypoint_target(),
        &HttpRequest {
            source_id: Some(&cx.conn.peer_id),
            source_ip: cx.conn.peer_addr.ip(),
            remote_ip: cx.conn.peer_addr.ip(),
            destination_ip: cx.conn.local_addr.ip(),
            destination_port: cx.service().1,
            host: host_of(parts),
            method: parts.method.as_str(),
            path: &path,
            headers: &parts.headers,
            auth,
            sni: None,
        },
    );
    if let Some(would) = decision
        .would_be
        .as_ref()
        .filter(|w| w.allowed != decision.allowed)
    {
        let policy = would.policy.as_deref().unwrap_or("");
        tracing::info!(
            peer = %cx.conn.peer_id,
            method = %parts.method,
            path = %path,
            would = if would.allowed { "allow" } else { "deny" },
            policy = if policy.is_empty() { "-" } else { policy },
            enforced = %decision,
            "dry-run authorization"
        );
        cx.inner.metrics.dry_run("waypoint", would.allowed, policy);
    }
    if !decision.audit.is_empty() {
        audit(cx, parts, &path, &decision);
    }
    if decision.allowed {
        Ok(())
    } else {
        Err(Refusal::forbidden(decision.to_string()))
    }
}

/// Logs and counts a request that AUDIT policies matched (they never change the decision).
fn audit(cx: &Cx<'_>, parts: &Parts, path: &str, decision: &ambit_authz::L7Decision) {
    let audits = cx.inner.metrics.counter(
        "ambit_authz_audit_total",
        "Requests matched by AUDIT authorization policies, by policy (never enforced).",
        &["reporter", "policy"],
    );
    for policy in &decision.audit {
        tracing::info!(
            peer = %cx.conn.peer_id,
            method = %parts.method,
            path,
            policy = %policy,
            allowed = decision.allowed,
            "audited request"
        );
        audits.inc(&["waypoint", policy]);
    }
}

/// Where a request goes before an endpoint is picked.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Service(Arc<Service>, u16),
    Workload(Arc<Workload>, u16),
}

/// What routing decided for a request that is forwarded.
pub(crate) struct Plan {
    pub(crate) backend: Backend,
    /// `namespace/name` of the HTTPRoute that matched, if any.
    pub(crate) route: String,
    /// The service the request is for (the backend's, once routed).
    pub(crate) service: Option<Arc<Service>>,
    /// Whole-request and per-try timeouts.
    pub(crate) timeouts: (Option<Duration>, Option<Duration>),
    pub(crate) mirrors: Vec<(Arc<Service>, u16)>,
    /// The route's decision: its retry policy and the response edits for the upstream's answer.
    pub(crate) forward: Option<Forward>,
    /// Fault injection delayed the request (flag `DI`).
    pub(crate) delayed: bool,
}

impl Plan {
    /// The route's retry policy, if it has one.
    pub(crate) fn retry(&self) -> Option<&Retry> {
        self.forward.as_ref()?.retry()
    }
}

/// What routing decided.
pub(crate) enum Routed {
    /// Answer locally (a redirect), with no flag.
    Answer(Reply),
    /// Forward as planned.
    Forward(Plan),
}

/// HTTPRoute, for service targets (a pod target goes straight to the pod). Applies the route's
/// request edits to `parts`, and waits out an injected delay.
pub(crate) async fn route(cx: &Cx<'_>, parts: &mut Parts) -> Result<Routed, Refusal> {
    let (service, port) = cx.service();
    let mut plan = Plan {
        backend: match &cx.conn.target {
            BoundTarget::Workload(w, p) => Backend::Workload(w.clone(), *p),
            BoundTarget::Service(s, p) => Backend::Service(s.clone(), *p),
        },
        route: String::new(),
        service: service.cloned(),
        timeouts: (None, None),
        mirrors: Vec::new(),
        forward: None,
        delayed: false,
    };
    let Some(svc) = service else {
        return Ok(Routed::Forward(plan));
    };
    let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
    let target = ambit_route::RouteTarget {
        service_namespace: &svc.namespace,
        service_name: &svc.name,
        port,
        waypoint: Some((&cx.inner.config.namespace, &cx.inner.config.name)),
        authority: authority.as_deref(),
        client_namespace: cx.conn.peer_id.namespace(),
    };
    let mut rng = ambit_proxy::random_u64;
    let path = path_and_query(parts);
    let decided = cx.l7.routes.route(
        &target,
        &parts.method,
        &path,
        &parts.headers,
        Instant::now(),
        &mut rng,
    );
    let f = match decided {
        Outcome::Unrouted => return Ok(Routed::Forward(plan)),
        Outcome::NotFound => return Err(Refusal::no_route()),
        Outcome::NoBackend => {
            return Err(Refusal::no_backend(
                "the matched rule has no backend with weight".into(),
            ));
        }
        Outcome::BackendNotPermitted { route, backend } => {
            let refused = format!("{}/{}", backend.namespace, backend.name);
            cx.inner
                .metrics
                .counter(
                    "ambit_route_backend_not_permitted_total",
                    "Requests answered 500 because the chosen backend is in another namespace \
                     and no ReferenceGrant permits the route to use it.",
                    &["route", "backend"],
                )
                .inc(&[&route, &refused]);
            return Err(Refusal::no_backend(format!(
                "route {route}: backend Service {}/{} is in another namespace and no \
                 ReferenceGrant permits it",
                backend.namespace, backend.name
            )));
        }
        Outcome::RateLimited => return Err(Refusal::rate_limited()),
        Outcome::Abort { status, delay } => {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            return Err(Refusal::fault(status));
        }
        Outcome::Redirect { status, location } => {
            let mut r = local_reply(status, String::new());
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return Ok(Routed::Answer(r));
        }
        Outcome::Preflight { headers } => {
            let mut r = local_reply(http::StatusCode::OK, String::new());
            r.headers_mut().extend(headers);
            return Ok(Routed::Answer(r));
        }
        Outcome::Forward(f) => f,
        _ => return Err(Refusal::no_backend(String::new())),
    };
    plan.route = f.route().to_owned();
    let (ns, name) = (f.backend().namespace.as_str(), f.backend().name.as_str());
    let Some(b) = cx.state.service_by_name(ns, name) else {
        return Err(Refusal::no_backend(format!(
            "backend service {ns}/{name} is not known"
        )));
    };
    plan.service = Some(b.clone());
    plan.backend = Backend::Service(b.clone(), f.backend().port.unwrap_or(port));
    f.apply_request(parts);
    plan.timeouts = (f.timeouts.request, f.timeouts.backend_request);
    for m in f.mirrors() {
        if let Some(s) = cx.state.service_by_name(&m.namespace, &m.name) {
            plan.mirrors.push((s.clone(), m.port.unwrap_or(port)));
        }
    }
    if let Some(d) = f.delay {
        plan.delayed = true;
        tokio::time::sleep(d).await;
    }
    plan.forward = Some(f);
    Ok(Routed::Forward(plan))
}
