//! Access-log records: ztunnel's "connection complete" and the waypoint's per-request line,
//! as text or JSON lines.

use std::fmt::Write as _;
use std::time::Duration;

use crate::ResponseFlag;

/// The "connection complete" access-log record (a plain record: build it with struct syntax).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessLog {
    /// `src.addr`.
    pub src_addr: String,
    /// `src.workload`.
    pub src_workload: String,
    /// `src.namespace`.
    pub src_namespace: String,
    /// `src.identity` (mTLS only).
    pub src_identity: String,
    /// `dst.addr`: the actual TCP destination.
    pub dst_addr: String,
    /// `dst.hbone_addr`: the CONNECT authority.
    pub dst_hbone_addr: String,
    /// `dst.service`.
    pub dst_service: String,
    /// `dst.workload`.
    pub dst_workload: String,
    /// `dst.namespace`.
    pub dst_namespace: String,
    /// `dst.identity`.
    pub dst_identity: String,
    /// `direction`: `inbound` or `outbound`.
    pub direction: &'static str,
    /// Bytes sent to the source.
    pub bytes_sent: u64,
    /// Bytes received from the source.
    pub bytes_recv: u64,
    /// How long the connection lasted.
    pub duration: Duration,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// One HTTP request handled by a waypoint (a plain record: build it with struct syntax).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestLog {
    /// `src.addr`: the connection's peer.
    pub src_addr: String,
    /// `src.identity`: the peer's SPIFFE id.
    pub src_identity: String,
    /// `request.principal`: `<iss>/<sub>` of a validated JWT.
    pub request_principal: String,
    /// `method`.
    pub method: String,
    /// `path` (with query).
    pub path: String,
    /// `authority` (Host).
    pub authority: String,
    /// `protocol`: `HTTP/1.1` or `HTTP/2`.
    pub protocol: String,
    /// `route`: `namespace/name` of the HTTPRoute that matched, if any.
    pub route: String,
    /// `dst.service`.
    pub dst_service: String,
    /// `upstream`: the endpoint the request went to.
    pub upstream: String,
    /// `response_code`.
    pub response_code: u16,
    /// `response_flags`.
    pub response_flags: ResponseFlag,
    /// `attempts` made upstream (retries + 1).
    pub attempts: u32,
    /// `bytes_recv`: request body bytes.
    pub bytes_recv: u64,
    /// `bytes_sent`: response body bytes.
    pub bytes_sent: u64,
    /// `duration`.
    pub duration: Duration,
    /// `trace_id` of the W3C trace context.
    pub trace_id: String,
    /// `reason`: why the proxy answered itself (deny, no route, ...).
    pub reason: String,
}

// === impl AccessLog ===

impl AccessLog {
    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("src.addr", self.src_addr.clone()),
            ("src.workload", self.src_workload.clone()),
            ("src.namespace", self.src_namespace.clone()),
            ("src.identity", self.src_identity.clone()),
            ("dst.addr", self.dst_addr.clone()),
            ("dst.hbone_addr", self.dst_hbone_addr.clone()),
            ("dst.service", self.dst_service.clone()),
            ("dst.workload", self.dst_workload.clone()),
            ("dst.namespace", self.dst_namespace.clone()),
            ("dst.identity", self.dst_identity.clone()),
            ("direction", self.direction.to_owned()),
            ("bytes_sent", self.bytes_sent.to_string()),
            ("bytes_recv", self.bytes_recv.to_string()),
            ("duration", format!("{}ms", self.duration.as_millis())),
        ];
        if let Some(e) = &self.error {
            f.push(("error", e.clone()));
        }
        f.retain(|(_, v)| !v.is_empty());
        f
    }

    /// `connection complete src.addr=... dst.addr=...` (values with spaces are quoted).
    pub fn to_text(&self) -> String {
        let mut out = String::from(if self.error.is_some() {
            "connection failed"
        } else {
            "connection complete"
        });
        for (k, v) in self.fields() {
            if v.contains(' ') || v.contains('"') {
                let _ = write!(out, " {k}={v:?}");
            } else {
                let _ = write!(out, " {k}={v}");
            }
        }
        out
    }

    /// One JSON object per line.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\"message\":\"");
        out.push_str(if self.error.is_some() {
            "connection failed"
        } else {
            "connection complete"
        });
        out.push('"');
        for (k, v) in self.fields() {
            let _ = write!(out, ",\"{k}\":\"{}\"", json_escape(&v));
        }
        out.push('}');
        out
    }
}

// === impl RequestLog ===

impl RequestLog {
    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("src.addr", self.src_addr.clone()),
            ("src.identity", self.src_identity.clone()),
            ("request.principal", self.request_principal.clone()),
            ("method", self.method.clone()),
            ("path", self.path.clone()),
            ("authority", self.authority.clone()),
            ("protocol", self.protocol.clone()),
            ("route", self.route.clone()),
            ("dst.service", self.dst_service.clone()),
            ("upstream", self.upstream.clone()),
            ("response_code", self.response_code.to_string()),
            ("response_flags", self.response_flags.as_str().to_owned()),
            ("attempts", self.attempts.to_string()),
            ("bytes_recv", self.bytes_recv.to_string()),
            ("bytes_sent", self.bytes_sent.to_string()),
            ("duration", format!("{}ms", self.duration.as_millis())),
            ("trace_id", self.trace_id.clone()),
            ("reason", self.reason.clone()),
        ];
        f.retain(|(_, v)| !v.is_empty());
        f
    }

    /// `request complete method=GET path=/ ...` (values with spaces are quoted).
    pub fn to_text(&self) -> String {
        let mut out = String::from("request complete");
        for (k, v) in self.fields() {
            if v.contains(' ') || v.contains('"') {
                let _ = write!(out, " {k}={v:?}");
            } else {
                let _ = write!(out, " {k}={v}");
            }
        }
        out
    }

    /// One JSON object per line.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\"message\":\"request complete\"");
        for (k, v) in self.fields() {
            let _ = write!(out, ",\"{k}\":\"{}\"", json_escape(&v));
        }
        out.push('}');
        out
    }
}

/// `s` as the inside of a JSON string: quotes, backslashes and control characters escaped.
pub fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}
