//! HTTP/3 wire codec (RFC 9114 §7): QUIC variable-length integers, frame headers, SETTINGS.
//! Pure functions over byte slices, so they can be fuzzed without a connection.

use bytes::{BufMut, Bytes, BytesMut};

/// Frame types this implementation reads or writes (RFC 9114 §7.2).
pub(crate) mod frame {
    pub(crate) const DATA: u64 = 0x00;
    pub(crate) const HEADERS: u64 = 0x01;
    pub(crate) const CANCEL_PUSH: u64 = 0x03;
    pub(crate) const SETTINGS: u64 = 0x04;
    pub(crate) const PUSH_PROMISE: u64 = 0x05;
    pub(crate) const GOAWAY: u64 = 0x07;
    pub(crate) const MAX_PUSH_ID: u64 = 0x0d;

    /// Types reserved because they are HTTP/2 frames with no HTTP/3 meaning (§7.2.8): a peer
    /// sending one is in error.
    pub(crate) fn is_http2_only(ty: u64) -> bool {
        matches!(ty, 0x02 | 0x06 | 0x08 | 0x09)
    }
}

/// Unidirectional stream types (RFC 9114 §6.2, RFC 9204 §4.2).
pub(crate) mod stream_type {
    pub(crate) const CONTROL: u64 = 0x00;
    pub(crate) const QPACK_ENCODER: u64 = 0x02;
    pub(crate) const QPACK_DECODER: u64 = 0x03;
}

/// SETTINGS identifiers (RFC 9114 §7.2.4.1, RFC 9204 §5, RFC 9220 §5, RFC 9297 §5.1).
pub(crate) mod setting {
    pub(crate) const QPACK_MAX_TABLE_CAPACITY: u64 = 0x01;
    pub(crate) const MAX_FIELD_SECTION_SIZE: u64 = 0x06;
    pub(crate) const QPACK_BLOCKED_STREAMS: u64 = 0x07;
    pub(crate) const ENABLE_CONNECT_PROTOCOL: u64 = 0x08;
    pub(crate) const H3_DATAGRAM: u64 = 0x33;

    /// HTTP/2 settings identifiers, an error in HTTP/3 (§7.2.4.1).
    pub(crate) fn is_http2_only(id: u64) -> bool {
        matches!(id, 0x02..=0x05)
    }
}

/// Application error codes (RFC 9114 §8.1, RFC 9204 §6).
pub(crate) mod code {
    pub(crate) const NO_ERROR: u32 = 0x100;
    pub(crate) const GENERAL_PROTOCOL_ERROR: u32 = 0x101;
    pub(crate) const STREAM_CREATION_ERROR: u32 = 0x103;
    pub(crate) const CLOSED_CRITICAL_STREAM: u32 = 0x104;
    pub(crate) const FRAME_UNEXPECTED: u32 = 0x105;
    pub(crate) const FRAME_ERROR: u32 = 0x106;
    pub(crate) const EXCESSIVE_LOAD: u32 = 0x107;
    pub(crate) const SETTINGS_ERROR: u32 = 0x109;
    pub(crate) const MISSING_SETTINGS: u32 = 0x10a;
    pub(crate) const REQUEST_REJECTED: u32 = 0x10b;
    pub(crate) const REQUEST_CANCELLED: u32 = 0x10c;
    pub(crate) const REQUEST_INCOMPLETE: u32 = 0x10d;
    pub(crate) const MESSAGE_ERROR: u32 = 0x10e;
    pub(crate) const CONNECT_ERROR: u32 = 0x10f;
    pub(crate) const QPACK_DECOMPRESSION_FAILED: u32 = 0x200;
    /// RFC 9297 §5.2.
    pub(crate) const H3_DATAGRAM_ERROR: u32 = 0x33;
}

/// A protocol violation found while decoding, with the HTTP/3 error code it calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireError {
    pub(crate) code: u32,
    pub(crate) reason: &'static str,
}

impl WireError {
    pub(crate) const fn new(code: u32, reason: &'static str) -> Self {
        Self { code, reason }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (HTTP/3 error {:#x})", self.reason, self.code)
    }
}

pub(crate) use crate::varint::{get as get_varint, put as put_varint};

/// A frame's type and payload length, read before its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub(crate) ty: u64,
    pub(crate) len: u64,
}

/// Reads a frame header from the front of `buf`: the header and its encoded length, or
/// `None` when more bytes are needed.
pub(crate) fn get_frame_header(buf: &[u8]) -> Option<(FrameHeader, usize)> {
    let (ty, a) = get_varint(buf)?;
    let (len, b) = get_varint(&buf[a..])?;
    Some((FrameHeader { ty, len }, a + b))
}

/// Appends a frame header.
pub(crate) fn put_frame_header(buf: &mut impl BufMut, ty: u64, len: u64) {
    put_varint(buf, ty);
    put_varint(buf, len);
}

/// A whole frame: header and payload.
pub(crate) fn frame(ty: u64, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(16 + payload.len());
    put_frame_header(&mut b, ty, payload.len() as u64);
    b.put_slice(payload);
    b.freeze()
}

/// What a peer's SETTINGS frame said that matters here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PeerSettings {
    /// SETTINGS_MAX_FIELD_SECTION_SIZE, when sent.
    pub(crate) max_field_section_size: Option<u64>,
    /// SETTINGS_ENABLE_CONNECT_PROTOCOL = 1.
    pub(crate) extended_connect: bool,
    /// SETTINGS_H3_DATAGRAM = 1.
    pub(crate) datagram: bool,
}

/// Decodes a SETTINGS payload. Unknown identifiers are ignored (§7.2.4); HTTP/2 ones, a
/// repeated identifier or a truncated pair are errors.
pub(crate) fn parse_settings(mut payload: &[u8]) -> Result<PeerSettings, WireError> {
    const BAD: WireError = WireError::new(code::FRAME_ERROR, "truncated SETTINGS frame");
    let mut out = PeerSettings::default();
    let mut seen: Vec<u64> = Vec::new();
    while !payload.is_empty() {
        let (id, a) = get_varint(payload).ok_or(BAD)?;
        let (value, b) = get_varint(&payload[a..]).ok_or(BAD)?;
        payload = &payload[a + b..];
        if setting::is_http2_only(id) {
            return Err(WireError::new(
                code::SETTINGS_ERROR,
                "HTTP/2 setting in HTTP/3 SETTINGS",
            ));
        }
        if seen.contains(&id) {
            return Err(WireError::new(code::SETTINGS_ERROR, "repeated setting"));
        }
        if seen.len() < 64 {
            seen.push(id);
        }
        let flag = |v: u64| match v {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::new(
                code::SETTINGS_ERROR,
                "boolean setting not 0 or 1",
            )),
        };
        match id {
            setting::MAX_FIELD_SECTION_SIZE => out.max_field_section_size = Some(value),
            setting::ENABLE_CONNECT_PROTOCOL => out.extended_connect = flag(value)?,
            setting::H3_DATAGRAM => out.datagram = flag(value)?,
            _ => {}
        }
    }
    Ok(out)
}

/// Our SETTINGS frame: no QPACK dynamic table (so no peer header block can block or refer to
/// state), our header size limit, and datagrams when CONNECT-UDP is served.
pub(crate) fn settings_frame(max_field_section_size: u64, datagram: bool) -> Bytes {
    let mut p = BytesMut::with_capacity(16);
    for (id, v) in [
        (setting::QPACK_MAX_TABLE_CAPACITY, 0),
        (setting::QPACK_BLOCKED_STREAMS, 0),
        (setting::MAX_FIELD_SECTION_SIZE, max_field_section_size),
    ] {
        put_varint(&mut p, id);
        put_varint(&mut p, v);
    }
    if datagram {
        put_varint(&mut p, setting::H3_DATAGRAM);
        put_varint(&mut p, 1);
        put_varint(&mut p, setting::ENABLE_CONNECT_PROTOCOL);
        put_varint(&mut p, 1);
    }
    frame(frame::SETTINGS, &p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_ours_and_refuse_http2_ids() {
        let f = settings_frame(16384, true);
        let (h, n) = get_frame_header(&f).expect("header");
        assert_eq!(h.ty, frame::SETTINGS);
        let s = parse_settings(&f[n..]).expect("ours parse");
        assert_eq!(s.max_field_section_size, Some(16384));
        assert!(s.datagram && s.extended_connect);
        assert_eq!(
            parse_settings(&[0x02, 0x00]).map_err(|e| e.code),
            Err(code::SETTINGS_ERROR)
        );
        assert_eq!(
            parse_settings(&[0x06, 0x01, 0x06, 0x02]).map_err(|e| e.code),
            Err(code::SETTINGS_ERROR)
        );
        assert_eq!(
            parse_settings(&[0x06]).map_err(|e| e.code),
            Err(code::FRAME_ERROR)
        );
        // Reserved identifiers (0x1f * N + 0x21) are ignored.
        assert_eq!(parse_settings(&[0x21, 0x05]), Ok(PeerSettings::default()));
    }
}
