//! Codecs for the HBONE CONNECT headers: W3C `baggage`, RFC 7239 `forwarded`, W3C
//! `traceparent`. Pure functions; malformed input yields `None` or an error, never a panic.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// Header names HBONE uses (lowercase, as on the wire).
pub mod names {
    /// Source (request) or destination (response) workload description.
    pub const BAGGAGE: &str = "baggage";
    /// Original client address and intended service host.
    pub const FORWARDED: &str = "forwarded";
    /// Connection trace context.
    pub const TRACEPARENT: &str = "traceparent";
    /// Source network, on the inner CONNECT of double HBONE.
    pub const X_FORWARDED_NETWORK: &str = "x-forwarded-network";
}

/// The workload description Istio carries in `baggage` (OpenTelemetry semantic keys).
/// Unknown keys and properties are ignored; empty values are omitted when encoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Baggage {
    /// `k8s.cluster.name`.
    pub cluster: Option<String>,
    /// `k8s.namespace.name`.
    pub namespace: Option<String>,
    /// Workload kind from `k8s.<kind>.name` (`deployment`, `pod`, `job`, `cronjob`, ...).
    pub workload_kind: Option<String>,
    /// Workload name from `k8s.<kind>.name`.
    pub workload_name: Option<String>,
    /// `service.name` (canonical service).
    pub service: Option<String>,
    /// `service.version` (canonical revision).
    pub revision: Option<String>,
    /// `cloud.region`.
    pub region: Option<String>,
    /// `cloud.availability_zone`.
    pub zone: Option<String>,
}

/// A parsed RFC 7239 `forwarded` element (the first one; HBONE sends one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Forwarded {
    /// `for=`: the original client address, when it is an `ip:port` (or a bare IP, port 0).
    pub for_addr: Option<SocketAddr>,
    /// `host=`: the service hostname the client asked for.
    pub host: Option<String>,
}

/// A W3C trace context `traceparent`: `00-<trace id>-<parent id>-<flags>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// 16-byte trace id (never all zero).
    pub trace_id: [u8; 16],
    /// 8-byte parent (span) id (never all zero).
    pub parent_id: [u8; 8],
    /// Trace flags (bit 0 = sampled).
    pub flags: u8,
}

/// Why a `traceparent` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceParentError {
    /// Not the 55-byte `00-…-…-..` shape.
    #[error("traceparent must be 55 characters: 00-<32 hex>-<16 hex>-<2 hex>")]
    Shape,
    /// Version other than `00` or the reserved `ff`.
    #[error("unsupported traceparent version")]
    Version,
    /// Non-lowercase-hex digits.
    #[error("traceparent holds a non-hex or uppercase digit")]
    Hex,
    /// All-zero trace or parent id.
    #[error("traceparent trace id or parent id is all zeros")]
    Zero,
}

// === impl Baggage ===

impl Baggage {
    /// Parses a `baggage` header value; members that do not parse are skipped.
    pub fn parse(value: &str) -> Self {
        let mut b = Baggage::default();
        for member in value.split(',') {
            let kv = member.split(';').next().unwrap_or_default();
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), percent_decode(v.trim()));
            let Some(v) = v.filter(|v| !v.is_empty()) else {
                continue;
            };
            match k {
                "k8s.cluster.name" => b.cluster = Some(v),
                "k8s.namespace.name" => b.namespace = Some(v),
                "service.name" => b.service = Some(v),
                "service.version" => b.revision = Some(v),
                "cloud.region" => b.region = Some(v),
                "cloud.availability_zone" => b.zone = Some(v),
                _ => {
                    if let Some(kind) = k
                        .strip_prefix("k8s.")
                        .and_then(|r| r.strip_suffix(".name"))
                        .filter(|kind| !kind.is_empty() && !kind.contains('.'))
                    {
                        b.workload_kind = Some(kind.to_owned());
                        b.workload_name = Some(v);
                    }
                }
            }
        }
        b
    }

    /// Encodes as a `baggage` header value, or `None` when there is nothing to say.
    pub fn encode(&self) -> Option<String> {
        let mut out = String::new();
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                if !out.is_empty() {
                    out.push(',');
                }
                out.push_str(k);
                out.push('=');
                percent_encode_into(v, &mut out);
            }
        };
        put("k8s.cluster.name", &self.cluster);
        put("k8s.namespace.name", &self.namespace);
        if let Some(kind) = self.workload_kind.as_deref().filter(|k| {
            // Kinds `cluster` and `namespace` would spell the keys of those fields.
            !k.is_empty()
                && !matches!(*k, "cluster" | "namespace")
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }) {
            put(&format!("k8s.{kind}.name"), &self.workload_name);
        }
        put("service.name", &self.service);
        put("service.version", &self.revision);
        put("cloud.region", &self.region);
        put("cloud.availability_zone", &self.zone);
        (!out.is_empty()).then_some(out)
    }
}

// === impl Forwarded ===

impl Forwarded {
    /// Parses the first element of a `forwarded` header value. Unknown parameters are ignored.
    pub fn parse(value: &str) -> Self {
        let mut f = Forwarded::default();
        let first = value.split(',').next().unwrap_or_default();
        for pair in first.split(';') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            match k.trim().to_ascii_lowercase().as_str() {
                "for" => {
                    f.for_addr = v.parse::<SocketAddr>().ok().or_else(|| {
                        let bare = v
                            .strip_prefix('[')
                            .and_then(|v| v.strip_suffix(']'))
                            .unwrap_or(v);
                        bare.parse().ok().map(|ip| SocketAddr::new(ip, 0))
                    })
                }
                "host" if !v.is_empty() => f.host = Some(v.to_owned()),
                _ => {}
            }
        }
        f
    }

    /// Encodes as a `forwarded` header value (`for="<addr>"[;host=<host>]`).
    pub fn encode(&self) -> Option<String> {
        let mut parts = Vec::with_capacity(2);
        if let Some(a) = self.for_addr {
            parts.push(format!("for=\"{a}\""));
        }
        if let Some(h) = self.host.as_deref().filter(|h| is_token(h)) {
            parts.push(format!("host={h}"));
        }
        (!parts.is_empty()).then(|| parts.join(";"))
    }
}

// === impl TraceParent ===

impl TraceParent {
    /// A new random trace context with flags `00`, as ztunnel makes one per connection.
    pub fn random() -> Self {
        let mut bytes = [0u8; 24];
        loop {
            // Without OS randomness, fall back to time-derived ids: trace ids need uniqueness,
            // not secrecy.
            if getrandom::fill(&mut bytes).is_err() {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos();
                bytes[..16].copy_from_slice(&nanos.to_le_bytes());
                bytes[16..].copy_from_slice(&(nanos as u64).rotate_left(17).to_le_bytes());
            }
            let mut trace_id = [0u8; 16];
            let mut parent_id = [0u8; 8];
            trace_id.copy_from_slice(&bytes[..16]);
            parent_id.copy_from_slice(&bytes[16..]);
            if trace_id != [0; 16] && parent_id != [0; 8] {
                return Self {
                    trace_id,
                    parent_id,
                    flags: 0,
                };
            }
        }
    }

    /// Whether the sampled flag is set.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

impl FromStr for TraceParent {
    type Err = TraceParentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if b.len() != 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return Err(TraceParentError::Shape);
        }
        let mut version = [0u8; 1];
        hex_into(&b[0..2], &mut version)?;
        if version[0] != 0 {
            return Err(TraceParentError::Version);
        }
        let mut tp = TraceParent {
            trace_id: [0; 16],
            parent_id: [0; 8],
            flags: 0,
        };
        hex_into(&b[3..35], &mut tp.trace_id)?;
        hex_into(&b[36..52], &mut tp.parent_id)?;
        let mut flags = [0u8; 1];
        hex_into(&b[53..55], &mut flags)?;
        tp.flags = flags[0];
        if tp.trace_id == [0; 16] || tp.parent_id == [0; 8] {
            return Err(TraceParentError::Zero);
        }
        Ok(tp)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One header per tunnel: written from a table rather than 25 padded `{:02x}`s.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
        let bytes = self
            .trace_id
            .iter()
            .chain(&self.parent_id)
            .chain([&self.flags]);
        let at = (3..35).step_by(2).chain((36..52).step_by(2)).chain([53]);
        for (b, i) in bytes.zip(at) {
            out[i] = HEX[usize::from(b >> 4)];
            out[i + 1] = HEX[usize::from(b & 0xf)];
        }
        // Only ASCII was written.
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({self})")
    }
}

// === helpers ===

fn hex_into(src: &[u8], dst: &mut [u8]) -> Result<(), TraceParentError> {
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(TraceParentError::Hex),
    };
    for (i, pair) in src.chunks_exact(2).enumerate() {
        dst[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Ok(())
}

/// W3C baggage values may hold any printable ASCII except `"`, `,`, `;`, `\`, space and `%`,
/// which are percent-encoded (as is every non-ASCII byte).
fn percent_encode_into(v: &str, out: &mut String) {
    for b in v.bytes() {
        if (0x21..=0x7e).contains(&b) && !matches!(b, b'"' | b',' | b';' | b'\\' | b'%') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn percent_decode(v: &str) -> Option<String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let s = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(s, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:[]".contains(&b))
}

#[cfg(test)]
mod tests;
