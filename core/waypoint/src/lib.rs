//! The waypoint: Istio ambient's L7 proxy for the services and workloads bound to it.
//!
//! Accepts HBONE with its own identity; each CONNECT must target a service VIP or pod IP whose
//! waypoint is this one (else 400). The tunnel then carries HTTP/1.1 or HTTP/2 (detected), and
//! each request goes through JWT authentication (401), L7 authorization (403
//! `RBAC: access denied`), HTTPRoute (404 no route, redirects, faults, rate limits), then to an
//! endpoint of the chosen backend over a new HBONE tunnel with the waypoint's identity
//! (authority `<pod-ip>:<target-port>`), with timeouts and retries. Every request is counted
//! in Istio's HTTP metrics with `reporter="waypoint"` and written to the access log.
//!
//! ```
//! use ambit_waypoint::L7Config;
//!
//! let yaml = r#"
//! apiVersion: gateway.networking.k8s.io/v1
//! kind: HTTPRoute
//! metadata: {name: web, namespace: shop}
//! spec:
//!   parentRefs: [{group: "", kind: Service, name: web, port: 80}]
//!   rules: [{backendRefs: [{name: web, port: 80}]}]
//! ---
//! apiVersion: security.istio.io/v1
//! kind: AuthorizationPolicy
//! metadata: {name: no-admin, namespace: shop}
//! spec:
//!   targetRefs: [{kind: Service, group: "", name: web}]
//!   action: DENY
//!   rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
//! "#;
//! let (l7, warnings) = L7Config::from_yaml(yaml, "l7.yaml", "istio-system")?;
//! assert_eq!(l7.routes.len(), 1);
//! assert_eq!(l7.authorization.len(), 1);
//! assert!(warnings.is_empty());
//!
//! // A broken object is refused with its place, as every loader names it.
//! let e = L7Config::from_yaml(&yaml.replace("DENY", "MAYBE"), "l7.yaml", "istio-system")
//!     .expect_err("refused");
//! assert_eq!((e.object.as_str(), e.field.as_str()), ("AuthorizationPolicy shop/no-admin", "spec.action"));
//! # Ok::<(), ambit_config::ConfigError>(())
//! ```
//!
//! [`Waypoint::start`] runs one (on a tokio runtime) from a [`WaypointConfig`], the mesh
//! [`State`], an `L7Config` and a credential source.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod body;
mod forward;
mod jwks;
mod refusal;
mod request;
mod steps;
mod upgrade;
mod upstream;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ambit_authn::Authenticators;
use ambit_authz::L7Policies;
use ambit_hbone::http::StatusCode;
use ambit_hbone::{Authority, ConnectRequest, Handler, Responder};
use ambit_identity::{CredentialSource, SpiffeId};
use ambit_route::RouteTable;
use ambit_state::{GatewayAddress, GatewayDestination, Service, State, Workload};
use ambit_telemetry::{AccessLog, Metrics};
use ambit_tls::{CredentialCell, ServerOptions, TlsContext};
use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tracing::{info, warn};

use ambit_config::{ConfigError, ConfigWarning, Report};
use ambit_proxy::{Identities, Readiness, Tasks, admin};

pub use ambit_proxy::ProxyError;

/// How a waypoint is set up.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WaypointConfig {
    /// The waypoint Gateway's name (what `targetRefs` of kind Gateway name).
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its identity (Istio: `spiffe://<td>/ns/<namespace>/sa/<name>`).
    pub identity: SpiffeId,
    /// The network it is on (empty = default).
    pub network: String,
    /// The HBONE listener (15008).
    pub hbone: SocketAddr,
    /// Prometheus metrics (`/metrics`, `/stats/prometheus`).
    pub metrics: Option<SocketAddr>,
    /// Readiness (`/healthz/ready`).
    pub readiness: Option<SocketAddr>,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Access logs as JSON lines instead of text.
    pub json_access_log: bool,
    /// Request bodies are buffered up to this size when a retry or mirror needs to replay them;
    /// larger bodies are sent once (no retry, no mirror).
    pub max_buffered_body: usize,
    /// Extra trust anchors (PEM) for `https://` `jwksUri`s, beside the system's.
    pub jwks_ca_pem: Option<String>,
    /// Mirrored requests in flight at most; beyond it a mirror is dropped (and counted in
    /// `ambit_mirror_requests_total{result="dropped"}`), never queued.
    pub max_mirrors_in_flight: usize,
    /// How long a mirrored request may take (the rule's request timeout when shorter).
    pub mirror_timeout: Duration,
    /// Where spans (one per request, a child of the caller's or the tunnel's `traceparent`)
    /// and access records go besides the log, e.g. `ambit_proxy::otlp::OtlpExporter`.
    pub exporter: Option<Arc<dyn ambit_telemetry::Exporter>>,
    /// Readiness gates held from before the HBONE listener binds until the embedder calls
    /// `readiness().unblock(name)`, as `(name, detail for the 503 body)`.
    pub readiness_gates: Vec<(String, String)>,
}

impl WaypointConfig {
    /// A waypoint named `name` in `namespace` with identity `identity`, HBONE on
    /// `0.0.0.0:15008`, metrics on 15020 and readiness on 15021 (all interfaces, as a pod).
    pub fn new(name: &str, namespace: &str, identity: SpiffeId) -> Self {
        let any = |port| SocketAddr::from(([0, 0, 0, 0], port));
        Self {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            identity,
            network: String::new(),
            hbone: any(15008),
            metrics: Some(any(15020)),
            readiness: Some(any(15021)),
            connect_timeout: Duration::from_secs(10),
            json_access_log: false,
            max_buffered_body: 1 << 20,
            jwks_ca_pem: None,
            max_mirrors_in_flight: 64,
            mirror_timeout: Duration::from_secs(10),
            exporter: None,
            readiness_gates: Vec::new(),
        }
    }
}

/// The L7 configuration a waypoint enforces, replaced whole on reload.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct L7Config {
    /// Gateway API HTTPRoutes.
    pub routes: RouteTable,
    /// AuthorizationPolicies (L7).
    pub authorization: L7Policies,
    /// RequestAuthentications (JWT).
    pub authentication: Authenticators,
}

impl L7Config {
    /// Loads multi-document YAML holding any mix of Gateway API `HTTPRoute` (and ambit's
    /// extension kinds), Istio `AuthorizationPolicy` and `RequestAuthentication` objects. The
    /// stream is read once ([`ambit_config::objects`]) and each loader takes its kinds, so an
    /// error names the same file, object and field as that loader alone would; kinds no
    /// waypoint uses are warnings.
    pub fn from_yaml(
        text: &str,
        file: &str,
        root_namespace: &str,
    ) -> Result<(Self, Vec<ConfigWarning>), ConfigError> {
        Self::from_files(&[(text, file)], root_namespace)
    }

    /// Loads several files (`(text, file name)`) as one config, as [`L7Config::from_yaml`]
    /// loads one: an error names the file it is in, a rule may use an extension defined in
    /// another file, and of an object defined twice the later definition is used.
    pub fn from_files(
        files: &[(&str, &str)],
        root_namespace: &str,
    ) -> Result<(Self, Vec<ConfigWarning>), ConfigError> {
        let mut loaded = Vec::with_capacity(files.len());
        for (text, file) in files {
            let mut report = Report::new(file);
            let objects = ambit_config::objects(text, &report)?;
            warn_unused(&objects, &mut report);
            loaded.push((objects, report));
        }
        let (routes, combined) =
            RouteTable::from_files(loaded.iter_mut().map(|(o, r)| (o.as_slice(), r)))?;
        let mut authorization = L7Policies::with_root_namespace(root_namespace);
        let mut authentication = Authenticators::new();
        let mut warnings = Vec::new();
        for (objects, mut report) in loaded {
            authorization.merge(L7Policies::from_objects(
                &objects,
                root_namespace,
                &mut report,
            )?);
            authentication.merge(Authenticators::from_objects(
                &objects,
                root_namespace,
                &mut report,
            )?);
            warnings.extend(report.into_warnings());
        }
        warnings.extend(combined);
        Ok((Self::new(routes, authorization, authentication), warnings))
    }

    /// A config from its three parts.
    pub fn new(
        routes: RouteTable,
        authorization: L7Policies,
        authentication: Authenticators,
    ) -> Self {
        Self {
            routes,
            authorization,
            authentication,
        }
    }
}

/// Warns about the kinds among `objects` that no waypoint uses.
fn warn_unused(objects: &[ambit_config::Object], report: &mut Report) {
    for o in objects {
        let used = matches!(
            (o.group(), o.kind.as_str()),
            ("gateway.networking.k8s.io", "HTTPRoute")
                | ("ambit.dev", "Fault" | "LocalRateLimit")
                | (
                    "security.istio.io",
                    "AuthorizationPolicy" | "RequestAuthentication"
                )
        );
        if !used {
            report.warn(
                &o.label(),
                "kind",
                format!(
                    "{} {} is not used by a waypoint; ignored",
                    o.api_version, o.kind
                ),
            );
        }
    }
}

/// Replaces a waypoint's workload/service state from elsewhere (see
/// [`Waypoint::state_updater`]).
#[derive(Clone)]
pub struct StateUpdater(Arc<Inner>);

impl std::fmt::Debug for StateUpdater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateUpdater").finish_non_exhaustive()
    }
}

impl StateUpdater {
    /// As [`Waypoint::update_state`]: new requests see `state` at once.
    pub fn update(&self, state: State) {
        self.0.state.store(Arc::new(state));
    }
}

/// The addresses a running waypoint bound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WaypointBound {
    /// HBONE.
    pub hbone: Option<SocketAddr>,
    /// Metrics.
    pub metrics: Option<SocketAddr>,
    /// Readiness.
    pub readiness: Option<SocketAddr>,
}

/// `hbone=...,metrics=...`: the listeners bound, for logs.
impl std::fmt::Display for WaypointBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        ambit_proxy::write_listeners(
            f,
            &[
                ("hbone", self.hbone),
                ("metrics", self.metrics),
                ("readiness", self.readiness),
            ],
        )
    }
}

/// A running waypoint. Dropping it stops every listener.
#[derive(Debug)]
pub struct Waypoint {
    inner: Arc<Inner>,
    bound: WaypointBound,
    server: ambit_hbone::Server<Connect>,
    tasks: Tasks,
}

/// What every tunnel and request of a waypoint shares.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: WaypointConfig,
    pub(crate) state: Arc<ArcSwap<State>>,
    pub(crate) l7: ArcSwap<L7Config>,
    pub(crate) metrics: Metrics,
    pub(crate) upstream: upstream::Upstreams,
    pub(crate) jwks: jwks::Fetcher,
    pub(crate) readiness: Arc<Readiness>,
    /// Permits for mirrored requests in flight ([`WaypointConfig::max_mirrors_in_flight`]).
    pub(crate) mirrors: Arc<tokio::sync::Semaphore>,
}

/// What a CONNECT targets, once found bound to this waypoint.
#[derive(Debug, Clone)]
pub(crate) enum BoundTarget {
    /// A service VIP and port.
    Service(Arc<Service>, u16),
    /// A pod IP and port.
    Workload(Arc<Workload>, u16),
}

impl Waypoint {
    /// Starts serving on the current tokio runtime; returns once listeners are bound and the
    /// waypoint's certificate is loaded.
    pub async fn start(
        config: WaypointConfig,
        state: State,
        l7: L7Config,
        credentials: Arc<dyn CredentialSource>,
        tls: TlsContext,
    ) -> Result<Self, ProxyError> {
        let identities = Identities::new(tls.clone(), credentials);
        let cell: Arc<CredentialCell> = identities.cell(&config.identity).await?;
        let server_config = tls
            .server_config(&cell, &ServerOptions::default())
            .map_err(|e| ProxyError::Credentials(format!("{}: {e}", config.identity)))?;
        let state = Arc::new(ArcSwap::from_pointee(state));
        let readiness = Arc::new(Readiness::with_gates(&config.readiness_gates));
        let tls_provider = tls.provider().clone();
        let inner = Arc::new(Inner {
            upstream: upstream::Upstreams::new(
                tls,
                cell,
                state.clone(),
                config.network.clone(),
                config.connect_timeout,
                // Connect from the waypoint's own address when it listens on one.
                Some(config.hbone.ip()).filter(|ip| !ip.is_unspecified()),
            ),
            jwks: jwks::Fetcher::new(tls_provider, config.jwks_ca_pem.as_deref())
                .map_err(ProxyError::Config)?,
            mirrors: Arc::new(tokio::sync::Semaphore::new(config.max_mirrors_in_flight)),
            config,
            state,
            l7: ArcSwap::from_pointee(l7),
            metrics: Metrics::new(),
            readiness,
        });
        for f in inner.config.exporter.iter().flat_map(|x| x.families()) {
            inner.metrics.register(&f);
        }
        // Says what this proxy is, so a service graph can draw traffic through it end to end.
        inner
            .metrics
            .gauge(
                "ambit_waypoint_info",
                "This proxy is the waypoint name/namespace (always 1).",
                &["name", "namespace"],
            )
            .set(&[&inner.config.name, &inner.config.namespace], 1);
        let server = ambit_hbone::Server::new(
            server_config,
            Connect(inner.clone()),
            ambit_hbone::ServerSettings::default(),
        );
        let mut bound = WaypointBound::default();
        // Dropped on a failed bind below, which stops what is already serving.
        let mut tasks = Tasks::default();
        let l = admin::bind("HBONE", inner.config.hbone).await?;
        bound.hbone = l.local_addr().ok();
        let s = server.clone();
        tasks.push(tokio::spawn(async move { drop(s.serve(l).await) }));
        // HBONE over HTTP/3 (ambit's extension) beside it, on the same port over UDP.
        match bound.hbone.map(std::net::UdpSocket::bind) {
            Some(Ok(udp)) => {
                let s = server.clone();
                tasks.push(tokio::spawn(async move { drop(s.serve_udp(udp).await) }));
            }
            Some(Err(e)) => {
                warn!(error = %e, "cannot listen for HBONE over HTTP/3 (UDP); serving HTTP/2 only")
            }
            None => {}
        }
        if let Some(a) = inner.config.metrics {
            let i = inner.clone();
            let (addr, task) =
                admin::spawn_metrics(a, ambit_proxy::accept_errors(&inner.metrics), move || {
                    i.metrics.render()
                })
                .await?;
            bound.metrics = addr;
            tasks.push(task);
        }
        if let Some(a) = inner.config.readiness {
            let (addr, task) = admin::spawn_readiness(
                a,
                ambit_proxy::accept_errors(&inner.metrics),
                inner.readiness.clone(),
            )
            .await?;
            bound.readiness = addr;
            tasks.push(task);
        }
        tasks.push(tokio::spawn(jwks::refresh_loop(inner.clone())));
        info!(waypoint = %format!("{}/{}", inner.config.namespace, inner.config.name), listening = %bound, "waypoint ready");
        Ok(Self {
            inner,
            bound,
            server,
            tasks,
        })
    }

    /// The addresses bound.
    pub fn bound(&self) -> &WaypointBound {
        &self.bound
    }

    /// What the waypoint still waits for before `/healthz/ready` says 200 (nothing of its
    /// own: it starts with its certificate; a daemon may add the first control-plane sync).
    pub fn readiness(&self) -> &Arc<Readiness> {
        &self.inner.readiness
    }

    /// A handle that replaces the workload/service state, for a control-plane client to hold
    /// while the waypoint is owned elsewhere.
    pub fn state_updater(&self) -> StateUpdater {
        StateUpdater(self.inner.clone())
    }

    /// Replaces the workload/service state (new requests see it at once).
    pub fn update_state(&self, state: State) {
        self.inner.state.store(Arc::new(state));
    }

    /// Replaces the routes and policies (new requests see them at once; remote JWKS are fetched
    /// in the background).
    pub fn update_l7(&self, l7: L7Config) {
        // Keys already fetched stay in use while the new config's are re-fetched.
        l7.authentication
            .adopt_jwks(&self.inner.l7.load().authentication);
        self.inner.l7.store(Arc::new(l7));
        self.inner.jwks.wake();
    }

    /// Fetches every remote JWKS the current config names now, and reports the first failure.
    pub async fn refresh_jwks(&self) -> Result<(), String> {
        jwks::refresh_once(&self.inner).await
    }

    /// The metrics in Prometheus text format.
    pub fn metrics(&self) -> String {
        self.inner.metrics.render()
    }

    /// Stops accepting, lets open tunnels finish for up to `deadline`, then stops.
    pub async fn shutdown(self, deadline: Duration) {
        self.tasks.abort_all();
        self.server.drain(deadline).await;
    }
}

impl Inner {
    pub(crate) fn access_log(&self, line: String) {
        info!(target: "access", "{line}");
    }

    /// Whether an access log line would be recorded; when not (no subscriber, or `access`
    /// filtered out), request lines are not formatted at all.
    pub(crate) fn access_log_enabled(&self) -> bool {
        tracing::enabled!(target: "access", tracing::Level::INFO)
    }

    /// Whether the waypoint `g` is this one: it resolves to the address the CONNECT arrived on.
    fn is_me(&self, state: &State, g: &GatewayAddress, local: IpAddr) -> bool {
        match &g.destination {
            GatewayDestination::Address { ip, .. } => *ip == local || ip.is_unspecified(),
            GatewayDestination::Hostname {
                namespace,
                hostname,
            } => {
                let key = format!("{namespace}/{hostname}");
                state
                    .workloads()
                    .any(|w| w.services.contains_key(&key) && w.addresses.contains(&local))
                    || (namespace == &self.config.namespace
                        && hostname.split('.').next() == Some(self.config.name.as_str()))
            }
        }
    }

    /// The service or workload `authority` names, if its waypoint is this one.
    fn target(&self, authority: &Authority, local: IpAddr) -> Result<BoundTarget, String> {
        let Authority::Addr(a) = authority else {
            return Err(format!("target {authority} is not an IP address and port"));
        };
        let state = self.state.load();
        let net = &self.config.network;
        if let Some(svc) = state.service_by_vip(net, a.ip()) {
            let bound = svc.waypoint.iter().any(|g| self.is_me(&state, g, local))
                || svc
                    .weighted_waypoints
                    .iter()
                    .any(|(g, _)| self.is_me(&state, g, local));
            if !bound {
                return Err(format!(
                    "service {} does not use this waypoint",
                    svc.hostname
                ));
            }
            if svc.target_port(a.port()).is_none() {
                return Err(format!("service {} has no port {}", svc.hostname, a.port()));
            }
            return Ok(BoundTarget::Service(svc.clone(), a.port()));
        }
        if let Some(w) = state.workload_by_addr(net, a.ip()) {
            if !w
                .waypoint
                .as_ref()
                .is_some_and(|g| self.is_me(&state, g, local))
            {
                return Err(format!("workload {} does not use this waypoint", w.name));
            }
            return Ok(BoundTarget::Workload(w.clone(), a.port()));
        }
        Err(format!(
            "{a} is neither a service nor a workload this waypoint knows"
        ))
    }
}

/// Answers each CONNECT: find the target, accept, serve HTTP on the tunnel.
#[derive(Debug, Clone)]
pub(crate) struct Connect(Arc<Inner>);

/// Size band (bytes, debug build) of one tunnel's future: memory per waypoint connection
/// (measured 3,176).
const TUNNEL_BAND: (usize, usize) = (2_700, 3_700);
/// Size band (bytes, debug build) of one request's future: memory per request in flight
/// (measured 5,096).
const REQUEST_BAND: (usize, usize) = (4_300, 5_900);

impl Handler for Connect {
    fn handle(
        &self,
        req: ConnectRequest,
        responder: Responder,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let tunnel = self.clone().tunnel(req, responder);
        ambit_proxy::size_between(TUNNEL_BAND.0, TUNNEL_BAND.1, &tunnel);
        tunnel
    }
}

impl Connect {
    /// One tunnel: find the target, accept, serve HTTP on it.
    async fn tunnel(self, req: ConnectRequest, responder: Responder) {
        let inner = self.0.clone();
        let target = match inner.target(&req.authority, req.local_addr.ip()) {
            Ok(t) => t,
            Err(why) => {
                warn!(authority = %req.authority, peer = %req.peer_id, reason = %why, "waypoint refused a tunnel");
                responder.reject(StatusCode::BAD_REQUEST);
                let log = AccessLog {
                    src_addr: req.peer_addr.to_string(),
                    src_identity: req.peer_id.to_string(),
                    dst_addr: req.local_addr.to_string(),
                    dst_hbone_addr: req.authority.to_string(),
                    direction: "inbound",
                    error: Some(format!("400: {why}")),
                    ..AccessLog::default()
                };
                inner.access_log(if inner.config.json_access_log {
                    log.to_json()
                } else {
                    log.to_text()
                });
                return;
            }
        };
        let Ok(tunnel) = responder.accept(Default::default()) else {
            return;
        };
        let conn = Arc::new(request::Downstream::new(&req, target));
        let service = hyper::service::service_fn(move |r| {
            let (inner, conn) = (inner.clone(), conn.clone());
            let request = request::handle(inner, conn, r);
            ambit_proxy::size_between(REQUEST_BAND.0, REQUEST_BAND.1, &request);
            async move { Ok::<_, std::convert::Infallible>(request.await) }
        });
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        if let Err(e) = builder
            .serve_connection_with_upgrades(TokioIo::new(tunnel), service)
            .await
        {
            tracing::debug!(error = %e, "waypoint HTTP connection ended with an error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::L7Config;

    const ROUTE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - filters: [{type: ExtensionRef, extensionRef: {group: ambit.dev, kind: Fault, name: down}}]
    backendRefs: [{name: web, port: 80}]
"#;
    const FAULT: &str = r#"
apiVersion: ambit.dev/v1alpha1
kind: Fault
metadata: {name: down, namespace: shop}
spec:
  abort: {httpStatus: 503, percentage: {value: 100}}
"#;
    const POLICY: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: web}]
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin"]}}]}]
"#;

    #[test]
    fn files_load_as_one_config_and_references_cross_files() {
        let (l7, warnings) = L7Config::from_files(
            &[
                (ROUTE, "route.yaml"),
                (FAULT, "fault.yaml"),
                (POLICY, "p.yaml"),
            ],
            "istio-system",
        )
        .expect("loads");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!((l7.routes.len(), l7.authorization.len()), (1, 1));
        // Alone, the route's extension is missing (so the cross-file case above is real).
        let (_, alone) = L7Config::from_files(&[(ROUTE, "route.yaml")], "istio-system")
            .expect("loads with a warning");
        assert_eq!(alone.len(), 1, "{alone:?}");
        assert_eq!(alone[0].file, "route.yaml");
    }

    #[test]
    fn an_error_names_the_file_it_is_in() {
        let broken = POLICY.replace("DENY", "MAYBE");
        let e = L7Config::from_files(
            &[
                (ROUTE, "route.yaml"),
                (&broken, "p.yaml"),
                (FAULT, "fault.yaml"),
            ],
            "istio-system",
        )
        .expect_err("refused");
        assert_eq!(
            (e.file.as_str(), e.object.as_str(), e.field.as_str()),
            ("p.yaml", "AuthorizationPolicy shop/p", "spec.action")
        );
    }
}
