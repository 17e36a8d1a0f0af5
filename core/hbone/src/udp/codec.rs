//! CONNECT-UDP's wire pieces (RFC 9298, RFC 9297): the URI template's path, DATAGRAM
//! capsules on the request stream, and HTTP/3 datagrams. Pure functions, fuzzed.

use std::net::{IpAddr, SocketAddr};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::varint;

/// The default URI template's path (RFC 9298 §3): `{target_host}/{target_port}/` follow.
pub(crate) const PATH_PREFIX: &str = "/.well-known/masque/udp/";
/// The `:protocol` of a CONNECT-UDP request.
pub(crate) const PROTOCOL: &str = "connect-udp";
/// The DATAGRAM capsule type (RFC 9297 §3.5).
const CAPSULE_DATAGRAM: u64 = 0x00;
/// The context id of a plain UDP payload (RFC 9298 §4).
const CONTEXT_UDP: u64 = 0;
/// The largest capsule read: a UDP payload is at most 65,527 bytes, plus a little framing.
pub(crate) const MAX_CAPSULE: usize = 65_535 + 16;

/// `/.well-known/masque/udp/{host}/{port}/` for `target`; IPv6 colons percent-encoded.
pub(crate) fn path(target: SocketAddr) -> String {
    let host = match target.ip() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => v6.to_string().replace(':', "%3A"),
    };
    format!("{PATH_PREFIX}{host}/{}/", target.port())
}

/// The target of a CONNECT-UDP path. Only IP literals are accepted: a mesh tunnel names the
/// address it was steered to, never a name to resolve.
pub(crate) fn parse_path(path: &str) -> Option<SocketAddr> {
    let rest = path.strip_prefix(PATH_PREFIX)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = rest.split_once('/')?;
    let host = host.replace("%3A", ":").replace("%3a", ":");
    let ip: IpAddr = host.parse().ok()?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    Some(SocketAddr::new(ip, port))
}

/// Appends a DATAGRAM capsule carrying one UDP payload.
pub(crate) fn put_datagram_capsule(buf: &mut BytesMut, payload: &[u8]) {
    let len = varint::len(CONTEXT_UDP) + payload.len();
    varint::put(buf, CAPSULE_DATAGRAM);
    varint::put(buf, len as u64);
    varint::put(buf, CONTEXT_UDP);
    buf.put_slice(payload);
}

/// An HTTP/3 datagram whose quarter stream id is past 2^60 - 1: a connection error
/// (H3_DATAGRAM_ERROR), not a datagram to drop.
#[cfg(any(feature = "h3", test, fuzzing))]
pub(crate) const QUARTER_OUT_OF_RANGE: CapsuleError =
    CapsuleError("quarter stream id out of range");

/// A capsule stream that broke the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CapsuleError(pub(crate) &'static str);

impl std::fmt::Display for CapsuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Reads capsules from a request stream's bytes as they arrive: yields UDP payloads of
/// DATAGRAM capsules; skips other capsule types (RFC 9297 §3.2) and other contexts.
#[derive(Debug, Default)]
pub(crate) struct CapsuleReader {
    buf: BytesMut,
    /// Bytes of an ignored capsule still to skip.
    skip: u64,
}

impl CapsuleReader {
    /// Adds stream bytes.
    pub(crate) fn push(&mut self, mut data: Bytes) {
        if self.skip > 0 {
            let n = data
                .len()
                .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
            data.advance(n);
            self.skip -= n as u64;
        }
        self.buf.extend_from_slice(&data);
    }

    /// The next UDP payload, `None` when more bytes are needed.
    pub(crate) fn next(&mut self) -> Result<Option<Bytes>, CapsuleError> {
        loop {
            if self.skip > 0 {
                let n = self
                    .buf
                    .len()
                    .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                self.buf.advance(n);
                self.skip -= n as u64;
                if self.skip > 0 {
                    return Ok(None);
                }
            }
            let Some((ty, a)) = varint::get(&self.buf) else {
                return Ok(None);
            };
            let Some((len, b)) = varint::get(&self.buf[a..]) else {
                return Ok(None);
            };
            if ty != CAPSULE_DATAGRAM {
                self.buf.advance(a + b);
                self.skip = len;
                continue;
            }
            let len = usize::try_from(len)
                .ok()
                .filter(|&l| l <= MAX_CAPSULE)
                .ok_or(CapsuleError("DATAGRAM capsule larger than a UDP payload"))?;
            if self.buf.len() < a + b + len {
                return Ok(None);
            }
            self.buf.advance(a + b);
            let mut body = self.buf.split_to(len).freeze();
            let Some((context, c)) = varint::get(&body) else {
                return Err(CapsuleError("DATAGRAM capsule without a context id"));
            };
            if context != CONTEXT_UDP {
                continue;
            }
            body.advance(c);
            return Ok(Some(body));
        }
    }
}

/// An HTTP/3 datagram for the request stream `stream_id` (RFC 9297 §2.1): the quarter stream
/// id, the context id, the UDP payload.
#[cfg(any(feature = "h3", test))]
pub(crate) fn h3_datagram(stream_id: u64, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(16 + payload.len());
    varint::put(&mut b, stream_id / 4);
    varint::put(&mut b, CONTEXT_UDP);
    b.put_slice(payload);
    b.freeze()
}

/// The stream a received HTTP/3 datagram belongs to (the quarter stream id times 4) and its
/// UDP payload; the payload is `None` for another context. `Err` for a truncated datagram.
#[cfg(any(feature = "h3", test, fuzzing))]
pub(crate) fn parse_h3_datagram(mut d: Bytes) -> Result<(u64, Option<Bytes>), CapsuleError> {
    let (quarter, a) = varint::get(&d).ok_or(CapsuleError("truncated HTTP/3 datagram"))?;
    let (context, b) =
        varint::get(&d[a..]).ok_or(CapsuleError("HTTP/3 datagram without a context id"))?;
    // RFC 9297 §2.1: the quarter stream id is at most 2^60 - 1 (a stream id is 62 bits).
    if quarter >= 1 << 60 {
        return Err(QUARTER_OUT_OF_RANGE);
    }
    d.advance(a + b);
    Ok((quarter * 4, (context == CONTEXT_UDP).then_some(d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip_for_both_families() {
        for t in ["10.0.0.7:53", "[fd00::7]:5353", "[::1]:9"] {
            let t: SocketAddr = t.parse().expect("addr");
            let p = path(t);
            assert!(p.starts_with(PATH_PREFIX) && p.ends_with('/'), "{p}");
            assert!(!p[PATH_PREFIX.len()..].contains(':'), "{p}");
            assert_eq!(parse_path(&p), Some(t), "{p}");
        }
        for bad in [
            "/.well-known/masque/udp/example.com/53/",
            "/.well-known/masque/udp/10.0.0.1/0/",
            "/.well-known/masque/udp/10.0.0.1/",
            "/other/10.0.0.1/53/",
            "/.well-known/masque/udp/10.0.0.1/99999/",
        ] {
            assert_eq!(parse_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn capsules_split_anywhere_still_decode() {
        let mut wire = BytesMut::new();
        put_datagram_capsule(&mut wire, b"first");
        // An unknown capsule type (0x17, 3 bytes) is skipped.
        wire.put_slice(&[0x17, 0x03, 1, 2, 3]);
        put_datagram_capsule(&mut wire, b"");
        put_datagram_capsule(&mut wire, &[9u8; 2000]);
        let wire = wire.freeze();
        for step in [1usize, 2, 3, 7, 100, wire.len()] {
            let mut r = CapsuleReader::default();
            let mut got = Vec::new();
            for chunk in wire.chunks(step) {
                r.push(Bytes::copy_from_slice(chunk));
                while let Some(p) = r.next().expect("valid") {
                    got.push(p);
                }
            }
            assert_eq!(got.len(), 3, "step {step}");
            assert_eq!(&got[0][..], b"first");
            assert!(got[1].is_empty());
            assert_eq!(got[2].len(), 2000);
        }
    }

    #[test]
    fn oversized_capsules_and_short_datagrams_are_errors() {
        let mut r = CapsuleReader::default();
        let mut b = BytesMut::new();
        varint::put(&mut b, 0);
        varint::put(&mut b, 1 << 20);
        r.push(b.freeze());
        assert!(r.next().is_err());
        assert!(parse_h3_datagram(Bytes::from_static(&[0x40])).is_err());
        let d = h3_datagram(8, b"payload");
        assert_eq!(
            parse_h3_datagram(d).expect("valid"),
            (8, Some(Bytes::from_static(b"payload")))
        );
        // Another context id: the datagram is not a UDP payload.
        assert_eq!(
            parse_h3_datagram(Bytes::from_static(&[0x02, 0x01, 0xff])).expect("valid"),
            (8, None)
        );
    }

    #[test]
    fn quarter_stream_ids_end_at_2_60() {
        let at = |quarter: u64| {
            let mut b = BytesMut::new();
            varint::put(&mut b, quarter);
            varint::put(&mut b, 0);
            parse_h3_datagram(b.freeze())
        };
        let last = (1u64 << 60) - 1;
        assert_eq!(at(last).expect("the last quarter id").0, last * 4);
        assert_eq!(at(1 << 60), Err(QUARTER_OUT_OF_RANGE));
        assert_eq!(at((1 << 62) - 1), Err(QUARTER_OUT_OF_RANGE));
    }
}
