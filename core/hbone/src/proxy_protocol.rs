//! PROXY protocol version 2 (binary), as the "sandwich" waypoint hand-off uses it: command PROXY,
//! TCP over IPv4 or IPv6, and TLV 0xD0 carrying the authenticated client SPIFFE id.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The 12-byte signature every v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// TLV type of the peer's SPIFFE id (Istio).
pub const TLV_PEER_IDENTITY: u8 = 0xD0;
/// TLV type reserved by Istio for the target service hostname.
pub const TLV_SERVICE_HOST: u8 = 0xD1;

const HEADER_LEN: usize = 16;
const CMD_LOCAL: u8 = 0x20;
const CMD_PROXY: u8 = 0x21;
const FAM_UNSPEC: u8 = 0x00;
const FAM_TCP4: u8 = 0x11;
const FAM_TCP6: u8 = 0x21;

/// A decoded (or to-be-encoded) PROXY v2 header.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyHeader {
    /// Original source and destination; `None` for a LOCAL header (health checks).
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    /// Type-length-value extensions in wire order.
    pub tlvs: Vec<(u8, Vec<u8>)>,
}

/// Why bytes are not a PROXY v2 header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyHeaderError {
    /// More bytes are needed; `needed` is the total header length when known, else the minimum.
    #[error("incomplete PROXY v2 header: need {needed} bytes")]
    Incomplete {
        /// Bytes needed in total.
        needed: usize,
    },
    /// The signature does not match.
    #[error("not a PROXY v2 header (bad signature)")]
    Signature,
    /// Version other than 2 or an unknown command.
    #[error("unsupported PROXY version/command byte {0:#04x}")]
    VersionCommand(u8),
    /// Unsupported address family or transport (only TCP over IPv4/IPv6 and UNSPEC).
    #[error("unsupported PROXY address family/protocol byte {0:#04x}")]
    Family(u8),
    /// The address block is shorter than its family needs.
    #[error("PROXY address block too short for its family")]
    ShortAddresses,
    /// A TLV runs past the end of the header.
    #[error("PROXY TLV of type {kind:#04x} overruns the header")]
    Tlv {
        /// Its type.
        kind: u8,
    },
    /// Encoding would exceed the 65535-byte length field.
    #[error("PROXY header too large to encode")]
    TooLarge,
}

impl ProxyHeader {
    /// A PROXY header for a TCP connection from `src` to `dst`.
    pub fn new(src: SocketAddr, dst: SocketAddr) -> Self {
        Self {
            addresses: Some((src, dst)),
            tlvs: Vec::new(),
        }
    }

    /// Adds the peer-identity TLV (0xD0) with the SPIFFE id's URI.
    pub fn with_peer_identity(mut self, id: &str) -> Self {
        self.tlvs.push((TLV_PEER_IDENTITY, id.as_bytes().to_vec()));
        self
    }

    /// The first TLV of `kind`.
    pub fn tlv(&self, kind: u8) -> Option<&[u8]> {
        self.tlvs
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.as_slice())
    }

    /// The peer identity TLV as text, if present and UTF-8.
    pub fn peer_identity(&self) -> Option<&str> {
        self.tlv(TLV_PEER_IDENTITY)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Encodes the header. Mixed families are sent as IPv6 (IPv4-mapped).
    pub fn encode(&self) -> Result<Vec<u8>, ProxyHeaderError> {
        let mut body = Vec::new();
        let (cmd, fam) = match self.addresses {
            None => (CMD_LOCAL, FAM_UNSPEC),
            Some((src, dst)) => match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    body.extend_from_slice(&s.octets());
                    body.extend_from_slice(&d.octets());
                    body.extend_from_slice(&src.port().to_be_bytes());
                    body.extend_from_slice(&dst.port().to_be_bytes());
                    (CMD_PROXY, FAM_TCP4)
                }
                (s, d) => {
                    body.extend_from_slice(&v6(s).octets());
                    body.extend_from_slice(&v6(d).octets());
                    body.extend_from_slice(&src.port().to_be_bytes());
                    body.extend_from_slice(&dst.port().to_be_bytes());
                    (CMD_PROXY, FAM_TCP6)
                }
            },
        };
        for (kind, value) in &self.tlvs {
            let len = u16::try_from(value.len()).map_err(|_| ProxyHeaderError::TooLarge)?;
            body.push(*kind);
            body.extend_from_slice(&len.to_be_bytes());
            body.extend_from_slice(value);
        }
        let len = u16::try_from(body.len()).map_err(|_| ProxyHeaderError::TooLarge)?;
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&SIGNATURE);
        out.push(cmd);
        out.push(fam);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decodes a header from the start of `buf`; returns it and how many bytes it used.
    /// With too few bytes, returns [`ProxyHeaderError::Incomplete`] so a caller can read more.
    pub fn decode(buf: &[u8]) -> Result<(Self, usize), ProxyHeaderError> {
        let have = buf.len().min(SIGNATURE.len());
        if buf[..have] != SIGNATURE[..have] {
            return Err(ProxyHeaderError::Signature);
        }
        if buf.len() < HEADER_LEN {
            return Err(ProxyHeaderError::Incomplete { needed: HEADER_LEN });
        }
        let (cmd, fam) = (buf[12], buf[13]);
        if cmd != CMD_PROXY && cmd != CMD_LOCAL {
            return Err(ProxyHeaderError::VersionCommand(cmd));
        }
        let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        let total = HEADER_LEN + len;
        if buf.len() < total {
            return Err(ProxyHeaderError::Incomplete { needed: total });
        }
        let body = &buf[HEADER_LEN..total];
        let (addresses, rest) = match fam {
            FAM_TCP4 => {
                let a = body.get(..12).ok_or(ProxyHeaderError::ShortAddresses)?;
                let ip = |o: &[u8]| IpAddr::from([o[0], o[1], o[2], o[3]]);
                let port = |o: &[u8]| u16::from_be_bytes([o[0], o[1]]);
                (
                    Some((
                        SocketAddr::new(ip(&a[0..4]), port(&a[8..10])),
                        SocketAddr::new(ip(&a[4..8]), port(&a[10..12])),
                    )),
                    &body[12..],
                )
            }
            FAM_TCP6 => {
                let a = body.get(..36).ok_or(ProxyHeaderError::ShortAddresses)?;
                let ip = |o: &[u8]| {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(o);
                    IpAddr::from(b)
                };
                let port = |o: &[u8]| u16::from_be_bytes([o[0], o[1]]);
                (
                    Some((
                        SocketAddr::new(ip(&a[0..16]), port(&a[32..34])),
                        SocketAddr::new(ip(&a[16..32]), port(&a[34..36])),
                    )),
                    &body[36..],
                )
            }
            FAM_UNSPEC => (None, body),
            other => return Err(ProxyHeaderError::Family(other)),
        };
        // A LOCAL header carries no meaningful addresses, whatever the family says.
        let addresses = if cmd == CMD_LOCAL { None } else { addresses };
        let mut tlvs = Vec::new();
        let mut rest = rest;
        while !rest.is_empty() {
            let kind = rest[0];
            let hdr = rest.get(..3).ok_or(ProxyHeaderError::Tlv { kind })?;
            let vlen = usize::from(u16::from_be_bytes([hdr[1], hdr[2]]));
            let value = rest
                .get(3..3 + vlen)
                .ok_or(ProxyHeaderError::Tlv { kind })?;
            tlvs.push((kind, value.to_vec()));
            rest = &rest[3 + vlen..];
        }
        Ok((Self { addresses, tlvs }, total))
    }
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_v4_v6_and_identity() {
        for (src, dst) in [
            ("10.0.0.1:43210", "10.0.0.2:8080"),
            ("[fd00::1]:1", "[fd00::2]:65535"),
        ] {
            let h = ProxyHeader::new(src.parse().expect("a"), dst.parse().expect("a"))
                .with_peer_identity("spiffe://cluster.local/ns/a/sa/b");
            let wire = h.encode().expect("encode");
            assert_eq!(&wire[..12], &SIGNATURE);
            let (back, used) = ProxyHeader::decode(&wire).expect("decode");
            assert_eq!(used, wire.len());
            assert_eq!(back, h);
            assert_eq!(
                back.peer_identity(),
                Some("spiffe://cluster.local/ns/a/sa/b")
            );
            // Every strict prefix asks for more bytes rather than failing or panicking.
            for cut in 0..wire.len() {
                assert!(
                    matches!(
                        ProxyHeader::decode(&wire[..cut]),
                        Err(ProxyHeaderError::Incomplete { .. })
                    ),
                    "cut {cut}"
                );
            }
        }
    }

    #[test]
    fn known_v4_bytes() {
        let h = ProxyHeader::new(
            "1.2.3.4:256".parse().expect("a"),
            "5.6.7.8:80".parse().expect("a"),
        )
        .with_peer_identity("x");
        let wire = h.encode().expect("encode");
        assert_eq!(
            &wire[12..],
            &[
                0x21, 0x11, 0, 16, 1, 2, 3, 4, 5, 6, 7, 8, 1, 0, 0, 80, 0xD0, 0, 1, b'x'
            ]
        );
    }

    #[test]
    fn mixed_families_are_mapped_and_local_has_no_addresses() {
        let h = ProxyHeader::new(
            "1.2.3.4:1".parse().expect("a"),
            "[fd00::1]:2".parse().expect("a"),
        );
        let (back, _) = ProxyHeader::decode(&h.encode().expect("e")).expect("d");
        let (src, _) = back.addresses.expect("addresses");
        assert_eq!(src.ip(), "::ffff:1.2.3.4".parse::<IpAddr>().expect("ip"));
        let local = ProxyHeader {
            addresses: None,
            tlvs: vec![],
        };
        let (back, used) = ProxyHeader::decode(&local.encode().expect("e")).expect("d");
        assert_eq!((back, used), (local, 16));
    }

    #[test]
    fn rejects_garbage() {
        let good = ProxyHeader::new(
            "1.2.3.4:1".parse().expect("a"),
            "5.6.7.8:2".parse().expect("a"),
        )
        .encode()
        .expect("e");
        assert_eq!(
            ProxyHeader::decode(b"GET / HTTP/1.1\r\n"),
            Err(ProxyHeaderError::Signature)
        );
        let mut b = good.clone();
        b[12] = 0x22;
        assert_eq!(
            ProxyHeader::decode(&b),
            Err(ProxyHeaderError::VersionCommand(0x22))
        );
        let mut b = good.clone();
        b[13] = 0x12; // UDP over IPv4
        assert_eq!(ProxyHeader::decode(&b), Err(ProxyHeaderError::Family(0x12)));
        let mut b = good.clone();
        b[15] = 4; // address block shorter than IPv4 needs
        b.truncate(20);
        assert_eq!(
            ProxyHeader::decode(&b),
            Err(ProxyHeaderError::ShortAddresses)
        );
        let mut b = good;
        b[15] += 3;
        b.extend_from_slice(&[0xD0, 0xFF, 0xFF]); // TLV claims 65535 bytes
        assert_eq!(
            ProxyHeader::decode(&b),
            Err(ProxyHeaderError::Tlv { kind: 0xD0 })
        );
        let huge = ProxyHeader {
            addresses: None,
            tlvs: vec![(1, vec![0; 70_000])],
        };
        assert_eq!(huge.encode(), Err(ProxyHeaderError::TooLarge));
    }
}
