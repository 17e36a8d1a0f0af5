//! The YAML shapes, field for field as Gateway API v1 and the ambit extensions spell them.
//!
//! Each type derives `Serialize` as well: serialising what was read gives the set of fields that
//! were understood, and any field of the input missing from it is reported as unknown (a
//! warning, like `kubectl apply --validate=warn`). Numbers that have a range are read as `i64`
//! and range-checked by the loader, so that the message can name the range.

use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RouteSpec {
    #[serde(default)]
    pub(super) parent_refs: Vec<ParentRef>,
    #[serde(default)]
    pub(super) hostnames: Vec<String>,
    #[serde(default)]
    pub(super) rules: Vec<Rule>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ParentRef {
    pub(super) group: Option<String>,
    pub(super) kind: Option<String>,
    pub(super) namespace: Option<String>,
    pub(super) name: String,
    pub(super) section_name: Option<String>,
    pub(super) port: Option<i64>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Rule {
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) matches: Vec<Match>,
    #[serde(default)]
    pub(super) filters: Vec<Filter>,
    #[serde(default)]
    pub(super) backend_refs: Vec<BackendRef>,
    pub(super) timeouts: Option<Timeouts>,
    pub(super) retry: Option<Retry>,
    pub(super) session_persistence: Option<Value>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Match {
    pub(super) path: Option<PathMatch>,
    #[serde(default)]
    pub(super) headers: Vec<ValueMatch>,
    #[serde(default)]
    pub(super) query_params: Vec<ValueMatch>,
    pub(super) method: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
pub(super) struct PathMatch {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) value: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
pub(super) struct ValueMatch {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) name: String,
    pub(super) value: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Filter {
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) request_header_modifier: Option<HeaderFilter>,
    pub(super) response_header_modifier: Option<HeaderFilter>,
    pub(super) request_redirect: Option<Redirect>,
    pub(super) url_rewrite: Option<Rewrite>,
    pub(super) request_mirror: Option<Mirror>,
    pub(super) cors: Option<Cors>,
    pub(super) external_auth: Option<Value>,
    pub(super) extension_ref: Option<LocalRef>,
}

#[derive(Debug, Deserialize, Serialize)]
pub(super) struct HeaderFilter {
    #[serde(default)]
    pub(super) set: Vec<Header>,
    #[serde(default)]
    pub(super) add: Vec<Header>,
    #[serde(default)]
    pub(super) remove: Vec<String>,
}

#[derive(Debug, Deserialize, Serialize)]
pub(super) struct Header {
    pub(super) name: String,
    pub(super) value: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Redirect {
    pub(super) scheme: Option<String>,
    pub(super) hostname: Option<String>,
    pub(super) path: Option<PathModifier>,
    pub(super) port: Option<i64>,
    pub(super) status_code: Option<i64>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PathModifier {
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) replace_full_path: Option<String>,
    pub(super) replace_prefix_match: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
pub(super) struct Rewrite {
    pub(super) hostname: Option<String>,
    pub(super) path: Option<PathModifier>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Mirror {
    pub(super) backend_ref: ObjectRef,
    pub(super) percent: Option<i64>,
    pub(super) fraction: Option<Fraction>,
}

#[derive(Debug, Deserialize, Serialize)]
pub(super) struct Fraction {
    pub(super) numerator: i64,
    pub(super) denominator: Option<i64>,
}

#[derive(Debug, Deserialize, Serialize)]
pub(super) struct ObjectRef {
    pub(super) group: Option<String>,
    pub(super) kind: Option<String>,
    pub(super) name: String,
    pub(super) namespace: Option<String>,
    pub(super) port: Option<i64>,
}

#[derive(Debug, Deserialize, Serialize)]
pub(super) struct BackendRef {
    pub(super) group: Option<String>,
    pub(super) kind: Option<String>,
    pub(super) name: String,
    pub(super) namespace: Option<String>,
    pub(super) port: Option<i64>,
    pub(super) weight: Option<i64>,
    #[serde(default)]
    pub(super) filters: Vec<Filter>,
}

#[derive(Debug, Deserialize, Serialize)]
pub(super) struct LocalRef {
    pub(super) group: String,
    pub(super) kind: String,
    pub(super) name: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Timeouts {
    pub(super) request: Option<String>,
    pub(super) backend_request: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
pub(super) struct Retry {
    #[serde(default)]
    pub(super) codes: Vec<i64>,
    pub(super) attempts: Option<i64>,
    pub(super) backoff: Option<String>,
}

/// `kind: Fault` (ambit.dev/v1alpha1): Istio's `HTTPFaultInjection`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(super) struct FaultSpec {
    pub(super) delay: Option<Delay>,
    pub(super) abort: Option<Abort>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Delay {
    pub(super) fixed_delay: Option<String>,
    /// `{value: 10.5}` as in Istio, or a bare number.
    pub(super) percentage: Option<Value>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Abort {
    pub(super) http_status: Option<i64>,
    pub(super) grpc_status: Option<Value>,
    pub(super) percentage: Option<Value>,
}

/// `kind: LocalRateLimit` (ambit.dev/v1alpha1): Envoy's `token_bucket`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RateLimitSpec {
    pub(super) max_tokens: Option<i64>,
    pub(super) tokens_per_fill: Option<i64>,
    pub(super) fill_interval: Option<String>,
}

/// `kind: ReferenceGrant` (gateway.networking.k8s.io/v1beta1).
#[derive(Debug, Default, Deserialize, Serialize)]
pub(super) struct GrantSpec {
    #[serde(default)]
    pub(super) from: Vec<GrantFrom>,
    #[serde(default)]
    pub(super) to: Vec<GrantTo>,
}

#[derive(Debug, Deserialize, Serialize)]
pub(super) struct GrantFrom {
    pub(super) group: String,
    pub(super) kind: String,
    pub(super) namespace: String,
}

#[derive(Debug, Deserialize, Serialize)]
pub(super) struct GrantTo {
    pub(super) group: String,
    pub(super) kind: String,
    pub(super) name: Option<String>,
}

/// `kind: GRPCRoute` (gateway.networking.k8s.io/v1).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GrpcRouteSpec {
    #[serde(default)]
    pub(super) parent_refs: Vec<ParentRef>,
    #[serde(default)]
    pub(super) hostnames: Vec<String>,
    #[serde(default)]
    pub(super) rules: Vec<GrpcRule>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GrpcRule {
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) matches: Vec<GrpcMatch>,
    #[serde(default)]
    pub(super) filters: Vec<Filter>,
    #[serde(default)]
    pub(super) backend_refs: Vec<BackendRef>,
    pub(super) session_persistence: Option<Value>,
}

#[derive(Debug, Deserialize, Serialize)]
pub(super) struct GrpcMatch {
    pub(super) method: Option<GrpcMethod>,
    #[serde(default)]
    pub(super) headers: Vec<ValueMatch>,
}

#[derive(Debug, Deserialize, Serialize)]
pub(super) struct GrpcMethod {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) service: Option<String>,
    pub(super) method: Option<String>,
}

/// `HTTPCORSFilter`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Cors {
    #[serde(default)]
    pub(super) allow_origins: Vec<String>,
    #[serde(default)]
    pub(super) allow_credentials: Option<bool>,
    #[serde(default)]
    pub(super) allow_methods: Vec<String>,
    #[serde(default)]
    pub(super) allow_headers: Vec<String>,
    #[serde(default)]
    pub(super) expose_headers: Vec<String>,
    pub(super) max_age: Option<i64>,
}
