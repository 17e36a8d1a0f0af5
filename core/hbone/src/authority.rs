//! The HBONE target in `:authority`: `ip:port`, `[ipv6]:port` or `hostname:port`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Where a CONNECT stream asks to go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Authority {
    /// A socket address: the normal case (pod IP and target port, or service VIP and port).
    Addr(SocketAddr),
    /// A hostname and port, as double HBONE sends (`<service FQDN>:<port>`).
    Host {
        /// Lowercased DNS name.
        host: String,
        /// Port.
        port: u16,
    },
}

/// Why an `:authority` is not a valid HBONE target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorityError {
    /// Empty value.
    #[error("empty authority")]
    Empty,
    /// No `:port` part.
    #[error("authority {0:?} has no port")]
    MissingPort(String),
    /// The port is not a number in 1..=65535.
    #[error("authority {0:?} has an invalid port")]
    BadPort(String),
    /// The host is neither an IP address nor a valid DNS name (or carries userinfo).
    #[error("authority {0:?} has an invalid host")]
    BadHost(String),
}

/// Longest `:authority` accepted (a DNS name is at most 253 bytes, plus `:65535`).
const MAX_LEN: usize = 253 + 6;

impl Authority {
    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            Authority::Addr(a) => a.port(),
            Authority::Host { port, .. } => *port,
        }
    }

    /// The IP address, when the authority is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Authority::Addr(a) => Some(a.ip()),
            Authority::Host { .. } => None,
        }
    }
}

impl From<SocketAddr> for Authority {
    fn from(a: SocketAddr) -> Self {
        Authority::Addr(a)
    }
}

impl FromStr for Authority {
    type Err = AuthorityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(AuthorityError::Empty);
        }
        if s.len() > MAX_LEN {
            return Err(AuthorityError::BadHost(truncate(s)));
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            if addr.port() == 0 {
                return Err(AuthorityError::BadPort(s.into()));
            }
            return Ok(Authority::Addr(addr));
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| AuthorityError::MissingPort(s.into()))?;
        let port = match port.parse::<u16>() {
            Ok(p) if p != 0 && !port.starts_with('+') => p,
            _ => return Err(AuthorityError::BadPort(s.into())),
        };
        if host.starts_with('[') || host.parse::<IpAddr>().is_ok() {
            // A bracketed or bare IP that did not parse as a socket address above.
            return Err(AuthorityError::BadHost(s.into()));
        }
        if !valid_dns_name(host) {
            return Err(AuthorityError::BadHost(s.into()));
        }
        Ok(Authority::Host {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // SocketAddr brackets IPv6 itself.
            Authority::Addr(a) => write!(f, "{a}"),
            Authority::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

fn valid_dns_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    // An all-numeric last label would read as a (bad) IPv4 address, never a DNS name.
    let last_numeric = host
        .rsplit('.')
        .next()
        .is_some_and(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()));
    !host.is_empty()
        && !last_numeric
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn truncate(s: &str) -> String {
    let mut end = 64.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses_and_hosts() {
        assert_eq!(
            "10.0.0.1:8080".parse::<Authority>(),
            Ok(Authority::Addr("10.0.0.1:8080".parse().expect("addr")))
        );
        let v6: Authority = "[fd00::1]:80".parse().expect("v6");
        assert_eq!(v6.to_string(), "[fd00::1]:80");
        assert_eq!(
            "Reviews.Default.svc.cluster.local:9080".parse::<Authority>(),
            Ok(Authority::Host {
                host: "reviews.default.svc.cluster.local".into(),
                port: 9080
            })
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "10.0.0.1",
            "10.0.0.1:",
            "10.0.0.1:0",
            "10.0.0.1:65536",
            "10.0.0.1:+80",
            "fd00::1:80",
            "[fd00::1]",
            "[fd00::1:80",
            "user@host:80",
            "host:80/path",
            "-bad.example:80",
            "a..b:80",
            "ho st:80",
            "host:http",
            ":80",
            "256.1.1.1:80",
        ] {
            assert!(bad.parse::<Authority>().is_err(), "{bad:?} accepted");
        }
        assert!(
            format!("{}:80", "a".repeat(300))
                .parse::<Authority>()
                .is_err()
        );
    }
}
