//! Istio authorization (L4 for node proxies, L7 for waypoints) and JWT RequestAuthentication.

use std::collections::BTreeMap;
use std::sync::Arc;

use facade::authn::{Authenticators as RustAuthenticators, AuthnOutcome};
use facade::authz::{
    Connection, HttpRequest, IstioPolicies, L7Decision as RustL7Decision,
    L7Policies as RustL7Policies, L7Reason, PathNormalization, PolicySet, PolicyTarget as Target,
    RequestAuth as RustRequestAuth, WaypointTarget,
};
use pyo3::prelude::*;

use crate::convert::{self, header_list, header_map, pair};
use crate::errors::{ambit_err, value_err};
use crate::identity::as_id;

/// The outcome of one L4 authorization decision.
#[pyclass(frozen, module = "ambit", get_all)]
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    /// Whether the connection may proceed.
    allowed: bool,
    /// The deciding policy (`namespace/name`), or None.
    policy: Option<String>,
    /// Why, in words.
    reason: String,
    /// With the dry-run policies enforced too: `(allowed, policy)`; None when none applies.
    would_be: Option<(bool, Option<String>)>,
}

#[pymethods]
impl Decision {
    fn __repr__(&self) -> String {
        format!(
            "Decision(allowed={}, policy={:?}, reason={:?})",
            self.allowed, self.policy, self.reason
        )
    }

    fn __bool__(&self) -> bool {
        self.allowed
    }
}

/// Compiled Istio L4 authorization policies (AuthorizationPolicy, PeerAuthentication).
#[pyclass(frozen, module = "ambit")]
#[derive(Debug)]
pub(crate) struct Policy {
    set: Arc<PolicySet>,
    warnings: Vec<String>,
}

#[pymethods]
impl Policy {
    /// Loads Istio YAML (one or more documents). Raises ConfigError naming object and field.
    #[staticmethod]
    #[pyo3(signature = (yaml, root_namespace = "istio-system", file = "<policies>"))]
    fn from_yaml(yaml: &str, root_namespace: &str, file: &str) -> PyResult<Self> {
        let mut set = PolicySet::with_root_namespace(root_namespace);
        let loaded = IstioPolicies::parse(yaml, file, root_namespace).map_err(ambit_err)?;
        loaded.apply_to(&mut set);
        Ok(Self {
            set: Arc::new(set),
            warnings: loaded.warnings.iter().map(ToString::to_string).collect(),
        })
    }

    /// What the node proxy cannot enforce (HTTP attributes, waypoint-only policies...).
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    fn __len__(&self) -> usize {
        self.set.len()
    }

    /// Decides one connection to a workload in `namespace` (with `labels`) from `source`
    /// (a SpiffeId, principal string, or None for plaintext).
    #[pyo3(signature = (namespace, source, port, source_ip = "10.0.0.1", destination_ip = "10.0.0.2", labels = None))]
    fn evaluate(
        &self,
        namespace: &str,
        source: Option<&Bound<'_, PyAny>>,
        port: u16,
        source_ip: &str,
        destination_ip: &str,
        labels: Option<BTreeMap<String, String>>,
    ) -> PyResult<Decision> {
        let id = source.map(as_id).transpose()?;
        let labels = labels.unwrap_or_default();
        let d = self.set.evaluate(
            Target {
                namespace,
                labels: &labels,
                policy_keys: &[],
            },
            &Connection {
                source_id: id.as_ref(),
                source_ip: convert::ip(source_ip)?,
                destination_ip: convert::ip(destination_ip)?,
                destination_port: port,
            },
        );
        Ok(Decision {
            allowed: d.allowed,
            reason: d.to_string(),
            would_be: d.dry_run.map(|w| (w.allowed, w.policy)),
            policy: d.policy,
        })
    }
}

/// The outcome of one L7 (waypoint) authorization decision; a denial is answered with HTTP 403.
#[pyclass(frozen, module = "ambit", get_all)]
#[derive(Debug, Clone)]
pub(crate) struct L7Decision {
    /// Whether the request may proceed.
    allowed: bool,
    /// The deciding policy (`namespace/name`), or None.
    policy: Option<String>,
    /// Why, in words.
    reason: String,
    /// Why, as a code: `AllowedByPolicy`, `DeniedByPolicy`, `DeniedByCustom`,
    /// `NoAllowPolicies` or `NoAllowMatched`.
    code: String,
    /// AUDIT policies that matched (`namespace/name`).
    audit: Vec<String>,
    /// Dry-run policies that matched (`namespace/name`); never enforced.
    dry_run: Vec<String>,
    /// With the dry-run policies enforced too: `(allowed, policy)`; None when none applies.
    would_be: Option<(bool, Option<String>)>,
}

#[pymethods]
impl L7Decision {
    fn __repr__(&self) -> String {
        format!(
            "L7Decision(allowed={}, policy={:?}, code={:?})",
            self.allowed, self.policy, self.code
        )
    }

    fn __bool__(&self) -> bool {
        self.allowed
    }
}

impl From<RustL7Decision> for L7Decision {
    fn from(d: RustL7Decision) -> Self {
        let code = match d.reason {
            L7Reason::DeniedByCustom => "DeniedByCustom",
            L7Reason::DeniedByPolicy => "DeniedByPolicy",
            L7Reason::AllowedByPolicy => "AllowedByPolicy",
            L7Reason::NoAllowPolicies => "NoAllowPolicies",
            L7Reason::NoAllowMatched => "NoAllowMatched",
            _ => "Other",
        };
        Self {
            allowed: d.allowed,
            reason: d.to_string(),
            code: code.to_owned(),
            policy: d.policy.map(|p| p.to_string()),
            audit: d.audit.iter().map(|p| p.to_string()).collect(),
            dry_run: d.dry_run.iter().map(|p| p.to_string()).collect(),
            would_be: d.would_be.map(|w| (w.allowed, w.policy)),
        }
    }
}

/// The waypoint (namespace, name) and the service a request is for.
fn waypoint_target<'a>(
    waypoint: &'a (String, String),
    service: Option<&'a (String, String)>,
) -> WaypointTarget<'a> {
    WaypointTarget {
        namespace: &waypoint.0,
        name: &waypoint.1,
        service: service.map(pair),
    }
}

/// Istio AuthorizationPolicies as a waypoint enforces them (L7: methods, paths, hosts, headers,
/// request principals, `when` on JWT claims...), attached with `targetRefs`.
#[pyclass(frozen, module = "ambit")]
#[derive(Debug)]
pub(crate) struct L7Policies {
    set: RustL7Policies,
    warnings: Vec<String>,
}

#[pymethods]
impl L7Policies {
    /// Loads Istio YAML (multi-document; other kinds are skipped, strangers with a warning).
    /// `path_normalization` is Istio's mesh setting: `NONE`, `BASE` (the default),
    /// `MERGE_SLASHES` or `DECODE_AND_MERGE_SLASHES`. Raises ConfigError naming object and
    /// field.
    #[staticmethod]
    #[pyo3(signature = (
        yaml, root_namespace = "istio-system", path_normalization = "BASE",
        file = "<l7>"
    ))]
    fn from_yaml(
        yaml: &str,
        root_namespace: &str,
        path_normalization: &str,
        file: &str,
    ) -> PyResult<Self> {
        let mode = match path_normalization {
            "NONE" => PathNormalization::None,
            "BASE" => PathNormalization::Base,
            "MERGE_SLASHES" => PathNormalization::MergeSlashes,
            "DECODE_AND_MERGE_SLASHES" => PathNormalization::DecodeAndMergeSlashes,
            other => {
                return Err(value_err(format!(
                    "path_normalization {other:?} is not NONE, BASE, MERGE_SLASHES or \
                     DECODE_AND_MERGE_SLASHES"
                )));
            }
        };
        let (mut set, warnings) =
            RustL7Policies::parse(yaml, file, root_namespace).map_err(ambit_err)?;
        set.set_path_normalization(mode);
        Ok(Self {
            set,
            warnings: warnings.iter().map(ToString::to_string).collect(),
        })
    }

    /// What was skipped or accepted with a caveat.
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    /// The loaded policies as `namespace/name`, sorted.
    #[getter]
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.set.policies().map(|p| p.key().to_owned()).collect();
        v.sort();
        v
    }

    fn __len__(&self) -> usize {
        self.set.len()
    }

    /// Decides one HTTP request through `waypoint` (namespace, name) to `service` (namespace,
    /// name; None for traffic addressed to a workload). `source` is the peer's SpiffeId (None
    /// for plaintext); `auth` the request's verified JWT (from `Authenticators.authenticate`
    /// or `RequestAuth.from_claims`); `path` the request target (query ignored, path
    /// normalized before matching).
    #[pyo3(signature = (
        *, waypoint, service = None, source = None, source_ip = "10.0.0.1", remote_ip = None,
        destination_ip = "10.0.0.2", port = 80, host = "", method = "GET", path = "/",
        headers = None, auth = None, sni = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn evaluate(
        &self,
        waypoint: (String, String),
        service: Option<(String, String)>,
        source: Option<&Bound<'_, PyAny>>,
        source_ip: &str,
        remote_ip: Option<&str>,
        destination_ip: &str,
        port: u16,
        host: &str,
        method: &str,
        path: &str,
        headers: Option<&Bound<'_, PyAny>>,
        auth: Option<PyRef<'_, RequestAuth>>,
        sni: Option<&str>,
    ) -> PyResult<L7Decision> {
        let id = source.map(as_id).transpose()?;
        let headers = header_map(headers)?;
        let source_ip = convert::ip(source_ip)?;
        let req = HttpRequest {
            source_id: id.as_ref(),
            source_ip,
            remote_ip: remote_ip.map(convert::ip).transpose()?.unwrap_or(source_ip),
            destination_ip: convert::ip(destination_ip)?,
            destination_port: port,
            host,
            method,
            path,
            headers: &headers,
            auth: auth.as_ref().map(|a| &a.0),
            sni,
        };
        let target = waypoint_target(&waypoint, service.as_ref());
        Ok(self.set.evaluate(&target, &req).into())
    }
}

/// The identity a verified JWT gives a request (`requestPrincipals`, `request.auth.*`).
#[pyclass(frozen, module = "ambit")]
#[derive(Debug, Clone)]
pub(crate) struct RequestAuth(RustRequestAuth);

#[pymethods]
impl RequestAuth {
    /// From a claims dict (as a verified token would carry them), e.g. to evaluate L7 policies
    /// without a token. Needs a string `iss`.
    #[staticmethod]
    fn from_claims(py: Python<'_>, claims: &Bound<'_, PyAny>) -> PyResult<Self> {
        let text: String = py
            .import("json")?
            .call_method1("dumps", (claims,))?
            .extract()?;
        let value = serde_json::from_str(&text)
            .map_err(|e| value_err(format!("claims are not JSON: {e}")))?;
        RustRequestAuth::from_claims(value)
            .map(Self)
            .ok_or_else(|| value_err("claims need a string `iss` (and `sub`, if any, a string)"))
    }

    /// `iss`.
    #[getter]
    fn issuer(&self) -> &str {
        &self.0.issuer
    }

    /// `sub`, or None.
    #[getter]
    fn subject(&self) -> Option<&str> {
        self.0.subject.as_deref()
    }

    /// `aud`, as a list.
    #[getter]
    fn audiences(&self) -> Vec<String> {
        self.0.audiences.clone()
    }

    /// `azp`, or None.
    #[getter]
    fn presenter(&self) -> Option<&str> {
        self.0.presenter.as_deref()
    }

    /// The request principal `iss/sub`, as `requestPrincipals` match it.
    #[getter]
    fn principal(&self) -> String {
        self.0.principal()
    }

    /// Every claim, as a dict (space-delimited claims such as `scope` split into lists).
    #[getter]
    fn claims<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("json")?
            .call_method1("loads", (self.0.claims.to_string(),))
    }

    fn __repr__(&self) -> String {
        format!("RequestAuth({:?})", self.0.principal())
    }
}

/// What JWT authentication decided for one request.
#[pyclass(frozen, module = "ambit", get_all)]
#[derive(Debug)]
pub(crate) struct AuthnResult {
    /// `anonymous` (no token), `authenticated` or `denied` (an invalid token: HTTP 401).
    kind: String,
    /// 401 when denied, else None.
    status: Option<u16>,
    /// Why a token was refused (Envoy's wording), else None.
    reason: Option<String>,
    /// The verified identity when authenticated, else None.
    auth: Option<RequestAuth>,
    /// The request principal (`iss/sub`) when authenticated, else None.
    principal: Option<String>,
    /// The request headers as they would be forwarded (token removed unless
    /// `forwardOriginalToken`, claim headers set, forged output headers removed); None when
    /// denied.
    headers: Option<Vec<(String, String)>>,
    /// The request target as it would be forwarded (token query parameters removed); None
    /// when denied.
    path: Option<String>,
}

#[pymethods]
impl AuthnResult {
    fn __repr__(&self) -> String {
        match (&self.principal, &self.reason) {
            (Some(p), _) => format!("AuthnResult(authenticated, principal={p:?})"),
            (_, Some(r)) => format!("AuthnResult(denied, reason={r:?})"),
            _ => format!("AuthnResult({})", self.kind),
        }
    }

    fn __bool__(&self) -> bool {
        self.status.is_none()
    }
}

/// Istio RequestAuthentications (JWT rules) as a waypoint applies them.
#[pyclass(frozen, module = "ambit")]
#[derive(Debug)]
pub(crate) struct Authenticators {
    inner: RustAuthenticators,
    warnings: Vec<String>,
}

#[pymethods]
impl Authenticators {
    /// Loads the RequestAuthentication objects of an Istio YAML stream (other kinds are
    /// skipped). An inline `jwks` is parsed now; a `jwksUri` key set must be installed with
    /// `set_jwks`. Raises ConfigError naming object and field.
    #[staticmethod]
    #[pyo3(signature = (yaml, root_namespace = "istio-system", file = "<l7>"))]
    fn from_yaml(yaml: &str, root_namespace: &str, file: &str) -> PyResult<Self> {
        let (inner, warnings) =
            RustAuthenticators::parse(yaml, file, root_namespace).map_err(ambit_err)?;
        Ok(Self {
            inner,
            warnings: warnings.iter().map(ToString::to_string).collect(),
        })
    }

    /// What was skipped or accepted with a caveat.
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// The remote key sets to fetch: `(uri, timeout_seconds, openid_discovery)`, by URI.
    #[getter]
    fn jwks_uris(&self) -> Vec<(String, f64, bool)> {
        self.inner
            .jwks_uris()
            .into_iter()
            .map(|u| (u.uri, u.timeout.as_secs_f64(), u.openid_discovery))
            .collect()
    }

    /// Whether the key set for `uri` has been installed.
    fn has_jwks(&self, uri: &str) -> bool {
        self.inner.has_jwks(uri)
    }

    /// Installs (or rotates) the key set fetched from `uri`; returns how many keys are usable.
    /// Raises ConfigError (and keeps the previous set) when `json` is not a usable JWKS.
    fn set_jwks(&self, uri: &str, json: &str) -> PyResult<usize> {
        self.inner.set_jwks(uri, json).map_err(ambit_err)
    }

    /// Whether any rule applies to requests through `waypoint` to `service`.
    #[pyo3(signature = (*, waypoint, service = None))]
    fn applies_to(&self, waypoint: (String, String), service: Option<(String, String)>) -> bool {
        self.inner
            .applies_to(&waypoint_target(&waypoint, service.as_ref()))
    }

    /// Authenticates one request through `waypoint` (namespace, name) to `service`:
    /// `headers` as received, `path` the request target (tokens may be in query parameters),
    /// `now` seconds since the Unix epoch (default: the system clock).
    #[pyo3(signature = (headers = None, path = "/", *, waypoint, service = None, now = None))]
    fn authenticate(
        &self,
        headers: Option<&Bound<'_, PyAny>>,
        path: &str,
        waypoint: (String, String),
        service: Option<(String, String)>,
        now: Option<f64>,
    ) -> PyResult<AuthnResult> {
        let headers = header_map(headers)?;
        let now = convert::unix_now(now)?;
        let target = waypoint_target(&waypoint, service.as_ref());
        Ok(
            match self.inner.authenticate(&target, &headers, path, now) {
                AuthnOutcome::Denied { reason } => AuthnResult {
                    kind: "denied".into(),
                    status: Some(401),
                    reason: Some(reason.to_string()),
                    auth: None,
                    principal: None,
                    headers: None,
                    path: None,
                },
                AuthnOutcome::Authenticated { auth, edits } => {
                    let (headers, path) = edits.forwarded(&headers, path);
                    AuthnResult {
                        kind: "authenticated".into(),
                        status: None,
                        reason: None,
                        principal: Some(auth.principal()),
                        auth: Some(RequestAuth(auth)),
                        headers: Some(header_list(&headers)),
                        path: Some(path),
                    }
                }
                AuthnOutcome::Anonymous { edits } => {
                    let (headers, path) = edits.forwarded(&headers, path);
                    AuthnResult {
                        kind: "anonymous".into(),
                        status: None,
                        reason: None,
                        auth: None,
                        principal: None,
                        headers: Some(header_list(&headers)),
                        path: Some(path),
                    }
                }
                other => AuthnResult {
                    kind: "denied".into(),
                    status: Some(401),
                    reason: Some(other.to_string()),
                    auth: None,
                    principal: None,
                    headers: None,
                    path: None,
                },
            },
        )
    }
}
