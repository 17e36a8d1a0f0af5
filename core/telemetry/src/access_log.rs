//! Access-log records: ztunnel's "connection complete" and the waypoint's per-request line,
//! as text or JSON lines.

use std::borrow::Cow;
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
    /// `hbone.transport`: `h2` or `h3` for an HBONE tunnel (ambit extension), else empty.
    pub hbone_transport: &'static str,
    /// `protocol`: `udp` for a UDP flow (ambit extension); empty for TCP, as ztunnel logs.
    pub protocol: &'static str,
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
    fn fields(&self) -> Vec<(&'static str, Cow<'_, str>)> {
        let mut f = vec![
            ("src.addr", Cow::Borrowed(self.src_addr.as_str())),
            ("src.workload", Cow::Borrowed(self.src_workload.as_str())),
            ("src.namespace", Cow::Borrowed(self.src_namespace.as_str())),
            ("src.identity", Cow::Borrowed(self.src_identity.as_str())),
            ("dst.addr", Cow::Borrowed(self.dst_addr.as_str())),
            (
                "dst.hbone_addr",
                Cow::Borrowed(self.dst_hbone_addr.as_str()),
            ),
            ("dst.service", Cow::Borrowed(self.dst_service.as_str())),
            ("dst.workload", Cow::Borrowed(self.dst_workload.as_str())),
            ("dst.namespace", Cow::Borrowed(self.dst_namespace.as_str())),
            ("dst.identity", Cow::Borrowed(self.dst_identity.as_str())),
            ("direction", Cow::Borrowed(self.direction)),
            ("protocol", Cow::Borrowed(self.protocol)),
            ("hbone.transport", Cow::Borrowed(self.hbone_transport)),
            ("bytes_sent", Cow::Owned(self.bytes_sent.to_string())),
            ("bytes_recv", Cow::Owned(self.bytes_recv.to_string())),
            (
                "duration",
                Cow::Owned(format!("{}ms", self.duration.as_millis())),
            ),
        ];
        if let Some(e) = &self.error {
            f.push(("error", Cow::Borrowed(e.as_str())));
        }
        f.retain(|(_, v)| !v.is_empty());
        f
    }

    /// `connection complete src.addr=... dst.addr=...` (values with spaces are quoted).
    pub fn to_text(&self) -> String {
        text_line(self.message(), &self.fields())
    }

    /// One JSON object per line.
    pub fn to_json(&self) -> String {
        json_line(self.message(), &self.fields())
    }

    /// `connection complete`, or `connection failed` when it ended in an error.
    pub fn message(&self) -> &'static str {
        if self.error.is_some() {
            "connection failed"
        } else {
            "connection complete"
        }
    }

    /// The record as an exporter's log record, its fields as attributes.
    pub fn to_record(&self, trace: Option<([u8; 16], [u8; 8])>) -> crate::LogRecord {
        crate::LogRecord {
            time: std::time::SystemTime::now(),
            body: self.message(),
            attributes: owned(self.fields()),
            trace,
        }
    }
}

// === impl RequestLog ===

impl RequestLog {
    fn fields(&self) -> Vec<(&'static str, Cow<'_, str>)> {
        let mut f = vec![
            ("src.addr", Cow::Borrowed(self.src_addr.as_str())),
            ("src.identity", Cow::Borrowed(self.src_identity.as_str())),
            (
                "request.principal",
                Cow::Borrowed(self.request_principal.as_str()),
            ),
            ("method", Cow::Borrowed(self.method.as_str())),
            ("path", Cow::Borrowed(self.path.as_str())),
            ("authority", Cow::Borrowed(self.authority.as_str())),
            ("protocol", Cow::Borrowed(self.protocol.as_str())),
            ("route", Cow::Borrowed(self.route.as_str())),
            ("dst.service", Cow::Borrowed(self.dst_service.as_str())),
            ("upstream", Cow::Borrowed(self.upstream.as_str())),
            ("response_code", Cow::Owned(self.response_code.to_string())),
            (
                "response_flags",
                Cow::Borrowed(self.response_flags.as_str()),
            ),
            ("attempts", Cow::Owned(self.attempts.to_string())),
            ("bytes_recv", Cow::Owned(self.bytes_recv.to_string())),
            ("bytes_sent", Cow::Owned(self.bytes_sent.to_string())),
            (
                "duration",
                Cow::Owned(format!("{}ms", self.duration.as_millis())),
            ),
            ("trace_id", Cow::Borrowed(self.trace_id.as_str())),
            ("reason", Cow::Borrowed(self.reason.as_str())),
        ];
        f.retain(|(_, v)| !v.is_empty());
        f
    }

    /// The record as an exporter's log record, its fields as attributes.
    pub fn to_record(&self, trace: Option<([u8; 16], [u8; 8])>) -> crate::LogRecord {
        crate::LogRecord {
            time: std::time::SystemTime::now(),
            body: "request complete",
            attributes: owned(self.fields()),
            trace,
        }
    }

    /// `request complete method=GET path=/ ...` (values with spaces are quoted).
    pub fn to_text(&self) -> String {
        text_line("request complete", &self.fields())
    }

    /// One JSON object per line.
    pub fn to_json(&self) -> String {
        json_line("request complete", &self.fields())
    }
}

fn owned(fields: Vec<(&'static str, Cow<'_, str>)>) -> Vec<(&'static str, String)> {
    fields
        .into_iter()
        .map(|(k, v)| (k, v.into_owned()))
        .collect()
}

/// `message k=v ...`, values with spaces or quotes quoted.
fn text_line(message: &str, fields: &[(&'static str, Cow<'_, str>)]) -> String {
    let len = fields
        .iter()
        .map(|(k, v)| k.len() + v.len() + 2)
        .sum::<usize>();
    let mut out = String::with_capacity(message.len() + len + 16);
    out.push_str(message);
    for (k, v) in fields {
        out.push(' ');
        out.push_str(k);
        out.push('=');
        if v.bytes().any(|b| b == b' ' || b == b'"') {
            let _ = write!(out, "{v:?}");
        } else {
            out.push_str(v);
        }
    }
    out
}

/// Fields written as JSON numbers; everything else is a string.
const NUMERIC: [&str; 4] = ["bytes_sent", "bytes_recv", "response_code", "attempts"];

/// `{"message":..., "k":"v", "bytes_sent":12, ...}` on one line.
fn json_line(message: &str, fields: &[(&'static str, Cow<'_, str>)]) -> String {
    let mut out = format!("{{\"message\":\"{message}\"");
    for (k, v) in fields {
        if NUMERIC.contains(k) && v.parse::<u64>().is_ok() {
            let _ = write!(out, ",\"{k}\":{v}");
        } else {
            let _ = write!(out, ",\"{k}\":\"{}\"", json_escape(v));
        }
    }
    out.push('}');
    out
}

/// `a` as `Display` writes it, with IPv4 written digit by digit: an access line carries two or
/// three addresses, and `Display`'s padding-aware path was most of the line's cost.
pub fn socket_addr_text(a: &std::net::SocketAddr) -> String {
    let std::net::SocketAddr::V4(v4) = a else {
        return a.to_string();
    };
    let mut out = String::with_capacity(21);
    for (i, octet) in v4.ip().octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_decimal(&mut out, u32::from(octet));
    }
    out.push(':');
    push_decimal(&mut out, u32::from(v4.port()));
    out
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        // n % 10 < 10: the cast cannot truncate.
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(char::from(d));
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

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

    #[test]
    fn addresses_read_as_display_writes_them() {
        let v4 = [
            [0, 0, 0, 0],
            [10, 0, 0, 1],
            [255, 255, 255, 255],
            [127, 9, 80, 100],
        ];
        for ip in v4 {
            for port in [0, 7, 80, 1234, 15008, 65535] {
                let a = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port);
                assert_eq!(super::socket_addr_text(&a), a.to_string());
            }
        }
        let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 8080);
        assert_eq!(super::socket_addr_text(&v6), "[::1]:8080");
    }
}
