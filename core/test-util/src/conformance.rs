//! The Gateway API conformance suite as ambit's tests read it
//! (`testdata/gateway-api/conformance.yaml`, made by `tools/gateway-conformance/transcribe.py`,
//! and `applicability.yaml` beside it). The route runner in core/route and the waypoint's end to
//! end sample share this reading of the file; each compares results its own way.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The transcribed suite and the applicability list.
pub fn read() -> (Suite, Applicability) {
    (
        load("gateway-api/conformance.yaml"),
        load("gateway-api/applicability.yaml"),
    )
}

fn load<T: serde::de::DeserializeOwned>(rel: &str) -> T {
    let path = crate::cases::testdata(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: cannot read: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The whole file.
#[derive(Debug, Deserialize)]
pub struct Suite {
    /// Where it was transcribed from.
    pub source: Source,
    /// What the suite installs before any test.
    pub base: Base,
    /// One entry per conformance test.
    pub tests: Vec<Test>,
}

/// The pinned upstream commit.
#[derive(Debug, Deserialize)]
pub struct Source {
    /// The release tag, e.g. `v1.6.1`.
    pub tag: String,
    /// The commit the tag names.
    pub commit: String,
}

/// The suite's base manifests, as far as routing needs them.
#[derive(Debug, Deserialize)]
pub struct Base {
    /// Every Gateway.
    #[serde(default)]
    pub gateways: Vec<BaseGateway>,
    /// Every Service, with the Deployments it selects.
    #[serde(default)]
    pub services: Vec<BaseService>,
    /// ReferenceGrants installed for every test (multi-document YAML; may be empty).
    #[serde(default)]
    pub reference_grants: String,
}

/// A Gateway of the base manifests.
#[derive(Debug, Deserialize)]
pub struct BaseGateway {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its listeners, in order.
    pub listeners: Vec<Listener>,
}

/// A Gateway listener.
#[derive(Debug, Deserialize)]
pub struct Listener {
    /// The port it listens on.
    pub port: u16,
}

/// A Service of the base manifests.
#[derive(Debug, Deserialize)]
pub struct BaseService {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The Deployments whose pods it selects (for the mesh's `echo`, both versions); the
    /// suite names the backend that answered by its pod's name prefix.
    #[serde(default)]
    pub backends: Vec<String>,
}

/// One conformance test.
#[derive(Debug, Deserialize)]
pub struct Test {
    /// Its `ShortName`.
    pub name: String,
    /// `gateway` (north-south, routes on a Gateway) or `mesh` (GAMMA, routes on a Service).
    pub role: String,
    /// The YAML the test applies (the routes under test, and objects they need).
    #[serde(default)]
    pub manifests: String,
    /// Requests with the results they must have.
    #[serde(default)]
    pub cases: Vec<Case>,
    /// Weighted splits checked by their shares.
    #[serde(default)]
    pub distributions: Vec<Distribution>,
    /// What the transcriber could not read as data, when anything.
    pub untranscribed: Option<String>,
    /// Services the test's manifests add, with the Deployments behind them.
    #[serde(default)]
    pub services: Vec<BaseService>,
}

/// A request as the suite's client sends it.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(default)]
pub struct Req {
    /// The Host (default: the Gateway's address; `echo` for the mesh).
    pub host: Option<String>,
    /// The method (default `GET`).
    pub method: Option<String>,
    /// Path and query (default `/`).
    pub path: Option<String>,
    /// Headers to send.
    pub headers: BTreeMap<String, String>,
    /// `HTTP`, `H2C`, … when the test sets one.
    pub protocol: Option<String>,
}

/// What the backend must have received (by default: the request as sent).
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct ExpectedRequest {
    /// The Host it saw, when checked.
    pub host: Option<String>,
    /// The method it saw.
    pub method: Option<String>,
    /// The path and query it saw.
    pub path: Option<String>,
    /// Headers it saw (values joined with `,`).
    pub headers: Option<BTreeMap<String, String>>,
    /// Headers it must not have seen.
    pub absent_headers: Vec<String>,
}

/// Where a redirect must point; unset parts take the suite's defaults.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Redirect {
    /// `http` or `https` (default: the request's, `http`).
    pub scheme: Option<String>,
    /// The host (unchecked when unset).
    pub host: Option<String>,
    /// The port (unset: none, or the scheme's default).
    pub port: Option<String>,
    /// The path (default: the request's, without query).
    pub path: Option<String>,
}

/// The response the client must get.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Resp {
    /// One acceptable status.
    pub status: Option<u16>,
    /// Acceptable statuses (with `status`; default 200).
    pub statuses: Vec<u16>,
    /// Headers it must carry.
    pub headers: BTreeMap<String, String>,
    /// Headers it must not carry.
    pub absent_headers: Vec<String>,
    /// Headers that must carry one of the listed values.
    pub valid_header_values: BTreeMap<String, Vec<String>>,
}

/// A backend that must get a copy of the request.
#[derive(Debug, Deserialize)]
pub struct Mirrored {
    /// The Service.
    pub name: String,
    /// Its namespace (default: the route's).
    pub namespace: Option<String>,
    /// The share of requests mirrored (default all).
    pub percent: Option<u32>,
}

/// A gRPC call (an HTTP/2 POST to `/<service>/<method>`).
#[derive(Debug, Deserialize)]
pub struct Grpc {
    /// The fully qualified service.
    pub service: String,
    /// The method.
    pub method: String,
}

/// One request and what must come of it.
#[derive(Debug, Deserialize)]
pub struct Case {
    /// The suite's name for it.
    pub name: String,
    /// The Gateway (`namespace/name`) it is sent to (gateway role).
    pub gateway: Option<String>,
    /// Objects (`Kind namespace/name`) the test deleted before sending it.
    #[serde(default)]
    pub after_deleting: Vec<String>,
    /// The namespace of the client pod that sends it (mesh role).
    pub client_namespace: Option<String>,
    /// The request.
    #[serde(default)]
    pub request: Req,
    /// What the backend must see, when it differs from the request.
    pub expected_request: Option<ExpectedRequest>,
    /// Where a redirect must point.
    pub redirect: Option<Redirect>,
    /// The response.
    #[serde(default)]
    pub response: Resp,
    /// The prefix of the pod that must answer (empty: any).
    #[serde(default)]
    pub backend: String,
    /// The namespace of the backend that must answer (gateway role).
    #[serde(default)]
    pub namespace: String,
    /// Headers the echo backend is asked to set on its response.
    #[serde(default)]
    pub backend_set_response_headers: BTreeMap<String, String>,
    /// Backends that must get a copy.
    #[serde(default)]
    pub mirrored_to: Vec<Mirrored>,
    /// Set for a gRPC call.
    pub grpc: Option<Grpc>,
    /// The echo backend's retry simulation for this request, when set.
    pub retry_backend: Option<RetryBackend>,
    /// A WebSocket opened on the request's path: these messages must come back.
    pub websocket: Option<WebSocket>,
}

/// The messages a WebSocket case sends and expects echoed.
#[derive(Debug, Deserialize)]
pub struct WebSocket {
    /// A text message.
    pub text: String,
    /// A binary message.
    pub binary: Vec<u8>,
}

/// The echo backend answers `status` to the first `fails` attempts of a request, then 200.
#[derive(Debug, Deserialize)]
pub struct RetryBackend {
    /// The failure status.
    pub status: u16,
    /// How many attempts fail.
    pub fails: u32,
}

/// A weighted split: the shares of requests each backend must get.
#[derive(Debug, Deserialize)]
pub struct Distribution {
    /// The Gateway the requests go to (gateway role).
    pub gateway: Option<String>,
    /// The client's namespace (mesh role).
    pub client_namespace: Option<String>,
    /// The request, sent many times.
    #[serde(default)]
    pub request: Req,
    /// The backends' namespace.
    #[serde(default)]
    pub namespace: String,
    /// Set for gRPC calls.
    pub grpc: Option<Grpc>,
    /// Backend (pod prefix) → share in [0, 1].
    pub weights: BTreeMap<String, f64>,
}

/// `applicability.yaml`: the tests that are not run, with why.
#[derive(Debug, Deserialize)]
pub struct Applicability {
    /// Test name → why it does not apply to a waypoint.
    pub not_applicable: BTreeMap<String, String>,
    /// Test name → what fails or is not checked yet.
    pub not_yet: BTreeMap<String, String>,
}

impl Applicability {
    /// Whether `test` is expected to pass: listed neither as not applicable nor as not yet.
    pub fn runs(&self, test: &str) -> bool {
        !self.not_applicable.contains_key(test) && !self.not_yet.contains_key(test)
    }
}
