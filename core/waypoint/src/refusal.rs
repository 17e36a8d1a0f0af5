//! A request the waypoint answers itself: the one place where a refusal becomes the reply the
//! client sees, the `response_flags` of its metrics and the reason in its access log.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};

use ambit_telemetry::ResponseFlag;

use crate::upstream::Body;

/// The response type served downstream.
pub(crate) type Reply = Response<Body>;

/// Why the waypoint answered a request itself: the status and body the client gets (Envoy's
/// wording, so clients and tests written against Istio see the same), the response flag the
/// metrics and the log carry, and the reason the log gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) flag: ResponseFlag,
    pub(crate) body: String,
    pub(crate) reason: String,
}

impl Refusal {
    /// A bad token: 401.
    pub(crate) fn unauthenticated(reason: String) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            flag: ResponseFlag::None,
            body: reason.clone(),
            reason,
        }
    }

    /// Denied by AuthorizationPolicy: 403 `RBAC: access denied`.
    pub(crate) fn forbidden(reason: String) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ResponseFlag::None,
            "RBAC: access denied",
            reason,
        )
    }

    /// A method that is a standard one in other letter case (`delete`): 400, before any
    /// policy sees it, so it can never slip past a rule written for the standard method.
    pub(crate) fn case_variant_method(method: &str, standard: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ResponseFlag::DownstreamProtocolError,
            "method must be upper case",
            format!(
                "method {method:?} is {standard} in other letter case; refused (methods are case-sensitive)"
            ),
        )
    }

    /// No HTTPRoute rule matched: 404.
    pub(crate) fn no_route() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ResponseFlag::NoRouteFound,
            "route not found",
            "no HTTPRoute rule matched".into(),
        )
    }

    /// The matched rule has nowhere to send the request: 500.
    pub(crate) fn no_backend(reason: String) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ResponseFlag::NoHealthyUpstream,
            "no backend",
            reason,
        )
    }

    /// The backend has no endpoint: 503.
    pub(crate) fn no_healthy_upstream(reason: String) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ResponseFlag::NoHealthyUpstream,
            "no healthy upstream",
            reason,
        )
    }

    /// The local rate limit is exhausted: 429.
    pub(crate) fn rate_limited() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ResponseFlag::RateLimited,
            "local_rate_limited",
            String::new(),
        )
    }

    /// Fault injection aborted the request with `status`.
    pub(crate) fn fault(status: StatusCode) -> Self {
        Self::new(
            status,
            ResponseFlag::FaultInjected,
            "fault filter abort",
            String::new(),
        )
    }

    /// The request body ended before its declared length: 400.
    pub(crate) fn body_cut_short() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ResponseFlag::DownstreamProtocolError,
            "request body was cut short",
            String::new(),
        )
    }

    /// Connecting upstream failed (`retried`: after retries): 503.
    pub(crate) fn connect_failed(retried: bool, reason: String) -> Self {
        let flag = if retried {
            ResponseFlag::UpstreamRetryLimitExceeded
        } else {
            ResponseFlag::UpstreamConnectionFailure
        };
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            flag,
            UPSTREAM_RESET,
            reason,
        )
    }

    /// The upstream connection ended while the response body was read: 503.
    pub(crate) fn upstream_ended(reason: String) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ResponseFlag::UpstreamConnectionTermination,
            UPSTREAM_RESET,
            reason,
        )
    }

    /// A per-try or whole-request timeout: 504.
    pub(crate) fn timeout(reason: &str) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            ResponseFlag::UpstreamRequestTimeout,
            "upstream request timeout",
            reason.into(),
        )
    }

    /// The upstream switched protocols without being asked to: 502.
    pub(crate) fn protocol_error() -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            ResponseFlag::UpstreamProtocolError,
            "upstream protocol error",
            "upstream switched protocols without being asked to".into(),
        )
    }

    fn new(status: StatusCode, flag: ResponseFlag, body: &str, reason: String) -> Self {
        Self {
            status,
            flag,
            body: body.to_owned(),
            reason,
        }
    }

    /// The reply the client gets.
    pub(crate) fn reply(&self) -> Reply {
        local_reply(self.status, self.body.clone())
    }
}

/// Envoy's body for a failed upstream connection.
const UPSTREAM_RESET: &str = "upstream connect error or disconnect/reset before headers";

/// A response the waypoint makes itself: `status`, and `body` as text/plain when not empty.
pub(crate) fn local_reply(status: StatusCode, body: String) -> Reply {
    let empty = body.is_empty();
    let mut r = Response::new(if empty {
        Empty::new().map_err(|e| match e {}).boxed()
    } else {
        Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed()
    });
    *r.status_mut() = status;
    if !empty {
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    r
}
