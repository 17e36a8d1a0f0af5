//! SPIFFE ids and trust domains, parsed strictly per the SPIFFE ID specification.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The URI scheme prefix every SPIFFE id starts with.
pub const SCHEME_PREFIX: &str = "spiffe://";

/// Longest SPIFFE id accepted, in bytes (the spec's limit for URI SANs).
pub const MAX_ID_LEN: usize = 2048;

/// Longest trust domain accepted, in bytes (the spec's limit).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// A SPIFFE trust domain such as `cluster.local`: the root of an identity namespace.
///
/// Only lowercase letters, digits, `.`, `-` and `_` are allowed; cloning is cheap.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(Arc<str>);

/// A SPIFFE id: `spiffe://<trust-domain>[/<segment>...]`.
///
/// Istio workload ids have the path `/ns/<namespace>/sa/<service-account>`; the
/// [`namespace`](Self::namespace) and [`service_account`](Self::service_account) accessors read
/// it. Equality is exact string equality (the spec forbids normalisation); cloning is cheap.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    uri: Arc<str>,
    /// Byte index in `uri` where the path (or the end) starts.
    path_start: usize,
    /// Byte ranges of the namespace and service account when the path is Istio-shaped,
    /// computed once at parse time: policy evaluation reads them per connection.
    istio: Option<[u16; 4]>,
}

/// Why a string is not a valid SPIFFE id or trust domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeIdError {
    /// The input was empty.
    #[error("SPIFFE id is empty")]
    Empty,
    /// The input does not start with `spiffe://` (the scheme is case-sensitive).
    #[error("SPIFFE id must start with \"spiffe://\"")]
    WrongScheme,
    /// Nothing between `spiffe://` and the path.
    #[error("SPIFFE id has no trust domain")]
    MissingTrustDomain,
    /// The trust domain holds a character outside `[a-z0-9._-]`.
    #[error(
        "trust domain has invalid character {found:?} at byte {index} \
         (only lowercase letters, digits, '.', '-' and '_' are allowed)"
    )]
    BadTrustDomainChar {
        /// The offending character.
        found: char,
        /// Its byte offset within the trust domain.
        index: usize,
    },
    /// The trust domain is longer than [`MAX_TRUST_DOMAIN_LEN`].
    #[error("trust domain is {len} bytes long, the limit is {MAX_TRUST_DOMAIN_LEN}")]
    TrustDomainTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The whole id is longer than [`MAX_ID_LEN`].
    #[error("SPIFFE id is {len} bytes long, the limit is {MAX_ID_LEN}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The path has an empty segment (`//`) or ends with `/`.
    #[error("SPIFFE id path has an empty segment (\"//\" or a trailing '/')")]
    EmptySegment,
    /// The path has a `.` or `..` segment.
    #[error("SPIFFE id path has a relative segment (\".\" or \"..\")")]
    DotSegment,
    /// The path holds a character outside `[a-zA-Z0-9._-]` (this includes `%`, `?`, `#`, `:`).
    #[error(
        "SPIFFE id path has invalid character {found:?} at byte {index} \
         (only letters, digits, '.', '-' and '_' are allowed in segments)"
    )]
    BadPathChar {
        /// The offending character.
        found: char,
        /// Its byte offset within the whole id.
        index: usize,
    },
}

// === impl TrustDomain ===

impl TrustDomain {
    /// Parses a bare trust domain name such as `cluster.local`.
    pub fn new(name: &str) -> Result<Self, SpiffeIdError> {
        validate_trust_domain(name)?;
        Ok(Self(Arc::from(name)))
    }

    /// The trust domain name, without scheme.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SPIFFE id of the trust domain itself, `spiffe://<name>`.
    pub fn id(&self) -> SpiffeId {
        let uri: Arc<str> = Arc::from(format!("{SCHEME_PREFIX}{}", self.0));
        let path_start = uri.len();
        SpiffeId {
            uri,
            path_start,
            istio: None,
        }
    }

    /// The Istio workload id `spiffe://<td>/ns/<namespace>/sa/<service_account>`.
    pub fn workload_id(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Result<SpiffeId, SpiffeIdError> {
        SpiffeId::istio(&self.0, namespace, service_account)
    }
}

impl std::borrow::Borrow<str> for TrustDomain {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustDomain({})", self.0)
    }
}

// === impl SpiffeId ===

impl SpiffeId {
    /// Parses a full SPIFFE id (`spiffe://td/path`), rejecting anything the spec forbids.
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        let path_start = validate_id(s)?;
        Ok(Self {
            uri: Arc::from(s),
            path_start,
            istio: istio_ranges(s, path_start),
        })
    }

    /// The Istio workload id `spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>`,
    /// each part checked as [`parse`](Self::parse) would check it, in one pass and one
    /// allocation (node proxies build one per connection).
    pub fn istio(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, SpiffeIdError> {
        let ns_start = SCHEME_PREFIX.len() + trust_domain.len() + "/ns/".len();
        let sa_start = ns_start + namespace.len() + "/sa/".len();
        let len = sa_start + service_account.len();
        if len > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong { len });
        }
        validate_trust_domain(trust_domain)?;
        // Each part is one segment: a '/' inside would shift the Istio shape.
        validate_segment(namespace, ns_start)?;
        validate_segment(service_account, sa_start)?;
        let mut uri = String::with_capacity(len);
        for part in [
            SCHEME_PREFIX,
            trust_domain,
            "/ns/",
            namespace,
            "/sa/",
            service_account,
        ] {
            uri.push_str(part);
        }
        // len <= MAX_ID_LEN (2048): every offset fits in a u16.
        let pos = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
        Ok(Self {
            uri: Arc::from(uri),
            path_start: SCHEME_PREFIX.len() + trust_domain.len(),
            istio: Some([
                pos(ns_start),
                pos(ns_start + namespace.len()),
                pos(sa_start),
                pos(len),
            ]),
        })
    }

    /// Parses the scheme-less form Istio uses in `AuthorizationPolicy` principals,
    /// `<td>/ns/<ns>/sa/<sa>`. A leading `spiffe://` is accepted too.
    pub fn from_principal(principal: &str) -> Result<Self, SpiffeIdError> {
        if principal.starts_with(SCHEME_PREFIX) {
            return Self::parse(principal);
        }
        Self::parse(&format!("{SCHEME_PREFIX}{principal}"))
    }

    /// The full id as a URI string.
    pub fn as_str(&self) -> &str {
        &self.uri
    }

    /// The trust domain name (borrowed; see [`trust_domain`](Self::trust_domain) for an owned one).
    pub fn trust_domain_name(&self) -> &str {
        &self.uri[SCHEME_PREFIX.len()..self.path_start]
    }

    /// The trust domain as an owned value.
    pub fn trust_domain(&self) -> TrustDomain {
        TrustDomain(Arc::from(self.trust_domain_name()))
    }

    /// The path, including its leading `/`; empty for a trust-domain id.
    pub fn path(&self) -> &str {
        &self.uri[self.path_start..]
    }

    /// The id without `spiffe://`, as Istio policies write principals: `td/ns/x/sa/y`.
    pub fn principal(&self) -> &str {
        &self.uri[SCHEME_PREFIX.len()..]
    }

    /// The namespace, when the path has Istio's exact shape `/ns/<ns>/sa/<sa>`.
    pub fn namespace(&self) -> Option<&str> {
        self.istio_parts().map(|(ns, _)| ns)
    }

    /// The service account, when the path has Istio's exact shape `/ns/<ns>/sa/<sa>`.
    pub fn service_account(&self) -> Option<&str> {
        self.istio_parts().map(|(_, sa)| sa)
    }

    fn istio_parts(&self) -> Option<(&str, &str)> {
        let [a, b, c, d] = self.istio?.map(usize::from);
        Some((&self.uri[a..b], &self.uri[c..d]))
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.uri)
    }
}

impl AsRef<str> for SpiffeId {
    fn as_ref(&self) -> &str {
        &self.uri
    }
}

// === validation ===

/// Where `/ns/<ns>/sa/<sa>` puts the namespace and service account, if the path has that shape.
fn istio_ranges(uri: &str, path_start: usize) -> Option<[u16; 4]> {
    let path = uri.get(path_start..)?;
    let mut segments = path.strip_prefix('/')?.split('/');
    let (Some("ns"), Some(ns), Some("sa"), Some(sa), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return None;
    };
    let ns_start = path_start + "/ns/".len();
    let sa_start = ns_start + ns.len() + "/sa/".len();
    // Ids are at most MAX_ID_LEN (2048) bytes, so every offset fits in a u16.
    let pos = |n: usize| u16::try_from(n).ok();
    Some([
        pos(ns_start)?,
        pos(ns_start + ns.len())?,
        pos(sa_start)?,
        pos(sa_start + sa.len())?,
    ])
}

fn validate_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
    if td.is_empty() {
        return Err(SpiffeIdError::MissingTrustDomain);
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong { len: td.len() });
    }
    match td
        .bytes()
        .position(|b| !matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_'))
    {
        None => Ok(()),
        Some(index) => Err(SpiffeIdError::BadTrustDomainChar {
            found: char_at(td, index),
            index,
        }),
    }
}

/// Checks one path segment that starts at byte `offset` of its id.
fn validate_segment(segment: &str, offset: usize) -> Result<(), SpiffeIdError> {
    match segment {
        "" => return Err(SpiffeIdError::EmptySegment),
        "." | ".." => return Err(SpiffeIdError::DotSegment),
        _ => {}
    }
    match segment
        .bytes()
        .position(|b| !matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_'))
    {
        None => Ok(()),
        Some(i) => Err(SpiffeIdError::BadPathChar {
            found: char_at(segment, i),
            index: offset + i,
        }),
    }
}

/// The character that starts at byte `i` of `s` (a byte found by an ASCII scan, so either an
/// ASCII byte or the first byte of a character).
fn char_at(s: &str, i: usize) -> char {
    s.get(i..)
        .and_then(|rest| rest.chars().next())
        .unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// Validates `s` and returns the byte index where its path starts.
fn validate_id(s: &str) -> Result<usize, SpiffeIdError> {
    if s.is_empty() {
        return Err(SpiffeIdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(SpiffeIdError::TooLong { len: s.len() });
    }
    let rest = s
        .strip_prefix(SCHEME_PREFIX)
        .ok_or(SpiffeIdError::WrongScheme)?;
    let td_end = rest.find('/').unwrap_or(rest.len());
    validate_trust_domain(&rest[..td_end])?;
    let path_start = SCHEME_PREFIX.len() + td_end;
    let path = &s[path_start..];
    if path.is_empty() {
        return Ok(path_start);
    }
    // `path` starts with '/': every segment follows a '/'.
    let mut offset = path_start + 1;
    for segment in path[1..].split('/') {
        validate_segment(segment, offset)?;
        offset += segment.len() + 1;
    }
    Ok(path_start)
}

#[cfg(test)]
mod tests;
