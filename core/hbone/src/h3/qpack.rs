//! QPACK (RFC 9204) without a dynamic table: we advertise a table capacity of 0, so a peer's
//! field sections can only use static references and literals, and ours use the same. That
//! keeps header decoding stateless (no encoder or decoder stream state, no blocked streams)
//! and costs a few bytes per tunnel, which is one header block each way.

use bytes::{BufMut, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::codec::{WireError, code};

/// The static table, RFC 9204 Appendix A: index → (name, value).
const STATIC: [(&str, &str); 99] = [
    (":authority", ""),
    (":path", "/"),
    ("age", "0"),
    ("content-disposition", ""),
    ("content-length", "0"),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("referer", ""),
    ("set-cookie", ""),
    (":method", "CONNECT"),
    (":method", "DELETE"),
    (":method", "GET"),
    (":method", "HEAD"),
    (":method", "OPTIONS"),
    (":method", "POST"),
    (":method", "PUT"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "103"),
    (":status", "200"),
    (":status", "304"),
    (":status", "404"),
    (":status", "503"),
    ("accept", "*/*"),
    ("accept", "application/dns-message"),
    ("accept-encoding", "gzip, deflate, br"),
    ("accept-ranges", "bytes"),
    ("access-control-allow-headers", "cache-control"),
    ("access-control-allow-headers", "content-type"),
    ("access-control-allow-origin", "*"),
    ("cache-control", "max-age=0"),
    ("cache-control", "max-age=2592000"),
    ("cache-control", "max-age=604800"),
    ("cache-control", "no-cache"),
    ("cache-control", "no-store"),
    ("cache-control", "public, max-age=31536000"),
    ("content-encoding", "br"),
    ("content-encoding", "gzip"),
    ("content-type", "application/dns-message"),
    ("content-type", "application/javascript"),
    ("content-type", "application/json"),
    ("content-type", "application/x-www-form-urlencoded"),
    ("content-type", "image/gif"),
    ("content-type", "image/jpeg"),
    ("content-type", "image/png"),
    ("content-type", "text/css"),
    ("content-type", "text/html; charset=utf-8"),
    ("content-type", "text/plain"),
    ("content-type", "text/plain;charset=utf-8"),
    ("range", "bytes=0-"),
    ("strict-transport-security", "max-age=31536000"),
    (
        "strict-transport-security",
        "max-age=31536000; includesubdomains",
    ),
    (
        "strict-transport-security",
        "max-age=31536000; includesubdomains; preload",
    ),
    ("vary", "accept-encoding"),
    ("vary", "origin"),
    ("x-content-type-options", "nosniff"),
    ("x-xss-protection", "1; mode=block"),
    (":status", "100"),
    (":status", "204"),
    (":status", "206"),
    (":status", "302"),
    (":status", "400"),
    (":status", "403"),
    (":status", "421"),
    (":status", "425"),
    (":status", "500"),
    ("accept-language", ""),
    ("access-control-allow-credentials", "FALSE"),
    ("access-control-allow-credentials", "TRUE"),
    ("access-control-allow-headers", "*"),
    ("access-control-allow-methods", "get"),
    ("access-control-allow-methods", "get, post, options"),
    ("access-control-allow-methods", "options"),
    ("access-control-expose-headers", "content-length"),
    ("access-control-request-headers", "content-type"),
    ("access-control-request-method", "get"),
    ("access-control-request-method", "post"),
    ("alt-svc", "clear"),
    ("authorization", ""),
    (
        "content-security-policy",
        "script-src 'none'; object-src 'none'; base-uri 'none'",
    ),
    ("early-data", "1"),
    ("expect-ct", ""),
    ("forwarded", ""),
    ("if-range", ""),
    ("origin", ""),
    ("purpose", "prefetch"),
    ("server", ""),
    ("timing-allow-origin", "*"),
    ("upgrade-insecure-requests", "1"),
    ("user-agent", ""),
    ("x-forwarded-for", ""),
    ("x-frame-options", "deny"),
    ("x-frame-options", "sameorigin"),
];

const IDX_AUTHORITY: u64 = 0;
const IDX_PATH: u64 = 1;
const IDX_METHOD_CONNECT: u64 = 15;
const IDX_SCHEME_HTTPS: u64 = 23;
const IDX_STATUS: u64 = 24;

/// Per-field overhead counted against the header size limit (RFC 9114 §4.2.2).
const FIELD_OVERHEAD: usize = 32;

/// A decoded field section: the pseudo-header fields and the rest.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Fields {
    pub(crate) method: Option<String>,
    pub(crate) scheme: Option<String>,
    pub(crate) authority: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) protocol: Option<String>,
    pub(crate) status: Option<StatusCode>,
    pub(crate) headers: HeaderMap,
}

/// The request pseudo-header fields to encode.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RequestLine<'a> {
    /// Classic CONNECT (RFC 9114 §4.4): `:method` and `:authority` only.
    Connect { authority: &'a str },
    /// Extended CONNECT (RFC 9220), as CONNECT-UDP uses: adds `:protocol`, `:scheme https`
    /// and `:path`.
    Extended {
        authority: &'a str,
        protocol: &'a str,
        path: &'a str,
    },
}

fn malformed(reason: &'static str) -> WireError {
    WireError::new(code::MESSAGE_ERROR, reason)
}

fn decompression(reason: &'static str) -> WireError {
    WireError::new(code::QPACK_DECOMPRESSION_FAILED, reason)
}

// === encoding ===

/// Encodes a request's field section.
pub(crate) fn encode_request(line: RequestLine<'_>, headers: &HeaderMap, out: &mut BytesMut) {
    out.put_slice(&[0, 0]);
    put_indexed(out, IDX_METHOD_CONNECT);
    match line {
        RequestLine::Connect { authority } => {
            put_name_ref(out, IDX_AUTHORITY, authority.as_bytes())
        }
        RequestLine::Extended {
            authority,
            protocol,
            path,
        } => {
            put_literal(out, b":protocol", protocol.as_bytes());
            put_indexed(out, IDX_SCHEME_HTTPS);
            put_name_ref(out, IDX_AUTHORITY, authority.as_bytes());
            put_name_ref(out, IDX_PATH, path.as_bytes());
        }
    }
    put_headers(out, headers);
}

/// Encodes a response's field section.
pub(crate) fn encode_response(status: StatusCode, headers: &HeaderMap, out: &mut BytesMut) {
    out.put_slice(&[0, 0]);
    let text = status.as_str();
    match STATIC
        .iter()
        .position(|&(n, v)| n == ":status" && v == text)
    {
        Some(i) => put_indexed(out, i as u64),
        None => put_name_ref(out, IDX_STATUS, text.as_bytes()),
    }
    put_headers(out, headers);
}

fn put_headers(out: &mut BytesMut, headers: &HeaderMap) {
    for (name, value) in headers {
        put_literal(out, name.as_str().as_bytes(), value.as_bytes());
    }
}

/// Indexed field line, static table: `1 T=1 index(6+)`.
fn put_indexed(out: &mut BytesMut, index: u64) {
    put_prefix_int(out, 0xc0, 6, index);
}

/// Literal field line with a static name reference: `01 N=0 T=1 index(4+)`, then the value.
fn put_name_ref(out: &mut BytesMut, index: u64, value: &[u8]) {
    put_prefix_int(out, 0x50, 4, index);
    put_string(out, 0x00, 7, value);
}

/// Literal field line with a literal name: `001 N=0 H=0 len(3+)` name, then the value.
fn put_literal(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    put_string(out, 0x20, 3, name);
    put_string(out, 0x00, 7, value);
}

/// A string literal without Huffman coding (H = 0).
fn put_string(out: &mut BytesMut, first: u8, prefix: u8, s: &[u8]) {
    put_prefix_int(out, first, prefix, s.len() as u64);
    out.put_slice(s);
}

/// A prefixed integer (RFC 7541 §5.1): `first` holds the bits above the `prefix` bits.
fn put_prefix_int(out: &mut BytesMut, first: u8, prefix: u8, mut v: u64) {
    let max = (1u64 << prefix) - 1;
    if v < max {
        out.put_u8(first | v as u8);
        return;
    }
    out.put_u8(first | max as u8);
    v -= max;
    while v >= 0x80 {
        out.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

// === decoding ===

/// Decodes a field section of at most `max_size` (counted as RFC 9114 §4.2.2 does), checking
/// HTTP/3's rules for field names (§4.2, §4.3). References to a dynamic table are errors: we
/// told the peer it has none.
pub(crate) fn decode(block: &[u8], max_size: usize) -> Result<Fields, WireError> {
    let mut r = Reader { buf: block };
    let required_insert_count = r.prefix_int(8)?;
    if required_insert_count != 0 {
        return Err(decompression("field section refers to a dynamic table"));
    }
    r.prefix_int(7)?; // Sign and Delta Base: meaningless without a dynamic table.
    let mut fields = Fields::default();
    let mut size = 0usize;
    let mut regular_seen = false;
    while let Some(&b) = r.buf.first() {
        let (name, value) = if b & 0x80 != 0 {
            if b & 0x40 == 0 {
                return Err(decompression(
                    "indexed field line refers to a dynamic table",
                ));
            }
            let (n, v) = static_entry(r.prefix_int(6)?)?;
            (n.as_bytes().to_vec(), v.as_bytes().to_vec())
        } else if b & 0x40 != 0 {
            if b & 0x10 == 0 {
                return Err(decompression("name reference into a dynamic table"));
            }
            let (n, _) = static_entry(r.prefix_int(4)?)?;
            (n.as_bytes().to_vec(), r.string(7, max_size)?)
        } else if b & 0x20 != 0 {
            let name = r.string(3, max_size)?;
            (name, r.string(7, max_size)?)
        } else {
            return Err(decompression("post-base reference into a dynamic table"));
        };
        size = size
            .saturating_add(name.len())
            .saturating_add(value.len())
            .saturating_add(FIELD_OVERHEAD);
        if size > max_size {
            return Err(WireError::new(
                code::EXCESSIVE_LOAD,
                "field section larger than advertised",
            ));
        }
        if name.first() == Some(&b':') {
            if regular_seen {
                return Err(malformed("pseudo-header field after a regular field"));
            }
            fields.set_pseudo(&name, value)?;
        } else {
            regular_seen = true;
            fields.push_header(&name, &value)?;
        }
    }
    Ok(fields)
}

fn static_entry(index: u64) -> Result<(&'static str, &'static str), WireError> {
    usize::try_from(index)
        .ok()
        .and_then(|i| STATIC.get(i))
        .copied()
        .ok_or_else(|| decompression("static table index out of range"))
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, WireError> {
        let (&b, rest) = self
            .buf
            .split_first()
            .ok_or_else(|| decompression("truncated field section"))?;
        self.buf = rest;
        Ok(b)
    }

    fn prefix_int(&mut self, prefix: u8) -> Result<u64, WireError> {
        let max = (1u64 << prefix) - 1;
        let mut v = u64::from(self.byte()?) & max;
        if v < max {
            return Ok(v);
        }
        let mut shift = 0u32;
        loop {
            let b = self.byte()?;
            if shift > 56 {
                return Err(decompression("integer too large"));
            }
            v += u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
    }

    /// A string literal whose H flag sits just above its `prefix` length bits.
    fn string(&mut self, prefix: u8, max: usize) -> Result<Vec<u8>, WireError> {
        let huffman = self.buf.first().is_some_and(|b| b & (1 << prefix) != 0);
        let len = self.prefix_int(prefix)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > max {
            return Err(WireError::new(
                code::EXCESSIVE_LOAD,
                "field section larger than advertised",
            ));
        }
        if len > self.buf.len() {
            return Err(decompression(
                "string literal longer than its field section",
            ));
        }
        let (raw, rest) = self.buf.split_at(len);
        self.buf = rest;
        if !huffman {
            return Ok(raw.to_vec());
        }
        let mut out = Vec::with_capacity(raw.len() * 8 / 5 + 1);
        httlib_huffman::decode(raw, &mut out, httlib_huffman::DecoderSpeed::FourBits)
            .map_err(|_| decompression("invalid Huffman string"))?;
        Ok(out)
    }
}

impl Fields {
    fn set_pseudo(&mut self, name: &[u8], value: Vec<u8>) -> Result<(), WireError> {
        let text =
            || String::from_utf8(value.clone()).map_err(|_| malformed("pseudo-header not UTF-8"));
        let slot = match name {
            b":method" => &mut self.method,
            b":scheme" => &mut self.scheme,
            b":authority" => &mut self.authority,
            b":path" => &mut self.path,
            b":protocol" => &mut self.protocol,
            b":status" => {
                if self.status.is_some() {
                    return Err(malformed("repeated :status"));
                }
                let status =
                    StatusCode::from_bytes(&value).map_err(|_| malformed("invalid :status"))?;
                self.status = Some(status);
                return Ok(());
            }
            _ => return Err(malformed("unknown pseudo-header field")),
        };
        if slot.is_some() {
            return Err(malformed("repeated pseudo-header field"));
        }
        *slot = Some(text()?);
        Ok(())
    }

    fn push_header(&mut self, name: &[u8], value: &[u8]) -> Result<(), WireError> {
        if name.iter().any(u8::is_ascii_uppercase) {
            return Err(malformed("uppercase field name"));
        }
        let name = HeaderName::from_bytes(name).map_err(|_| malformed("invalid field name"))?;
        // Connection-specific fields make a message malformed (RFC 9114 §4.2).
        if matches!(
            name.as_str(),
            "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade"
        ) || (name == http::header::TE && value != b"trailers")
        {
            return Err(malformed("connection-specific field"));
        }
        let value = HeaderValue::from_bytes(value).map_err(|_| malformed("invalid field value"))?;
        self.headers.append(name, value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips() {
        let mut h = HeaderMap::new();
        h.insert("baggage", HeaderValue::from_static("k8s.namespace.name=a"));
        h.insert("traceparent", HeaderValue::from_static("00-aa-bb-01"));
        let mut out = BytesMut::new();
        encode_request(
            RequestLine::Connect {
                authority: "10.0.0.1:8080",
            },
            &h,
            &mut out,
        );
        let f = decode(&out, 16 * 1024).expect("decodes");
        assert_eq!(f.method.as_deref(), Some("CONNECT"));
        assert_eq!(f.authority.as_deref(), Some("10.0.0.1:8080"));
        assert_eq!((f.scheme, f.path, f.protocol), (None, None, None));
        assert_eq!(f.headers, h);
    }

    #[test]
    fn responses_round_trip_with_static_and_literal_statuses() {
        for status in [200, 400, 401, 503, 599] {
            let status = StatusCode::from_u16(status).expect("status");
            let mut out = BytesMut::new();
            encode_response(status, &HeaderMap::new(), &mut out);
            assert_eq!(decode(&out, 1024).expect("decodes").status, Some(status));
        }
        let mut out = BytesMut::new();
        encode_response(StatusCode::OK, &HeaderMap::new(), &mut out);
        assert_eq!(&out[..], &[0, 0, 0xd9], ":status 200 is static index 25");
    }

    #[test]
    fn the_static_table_has_its_rfc_landmarks() {
        assert_eq!(STATIC[15], (":method", "CONNECT"));
        assert_eq!(STATIC[25], (":status", "200"));
        assert_eq!(STATIC[63], (":status", "100"));
        assert_eq!(STATIC[71], (":status", "500"));
        assert_eq!(STATIC[88], ("forwarded", ""));
        assert_eq!(STATIC[98], ("x-frame-options", "sameorigin"));
    }

    /// RFC 7541 C.4.1: "www.example.com" Huffman-coded, as a literal with name reference
    /// to `:authority`.
    #[test]
    fn huffman_strings_decode() {
        let mut block = vec![0, 0, 0x50, 0x80 | 12];
        block.extend_from_slice(&[
            0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
        ]);
        let f = decode(&block, 1024).expect("decodes");
        assert_eq!(f.authority.as_deref(), Some("www.example.com"));
    }

    #[test]
    fn bad_sections_are_refused_with_their_codes() {
        let code_of = |b: &[u8]| decode(b, 1024).err().map(|e| e.code);
        // Required Insert Count 1.
        assert_eq!(code_of(&[1, 0]), Some(code::QPACK_DECOMPRESSION_FAILED));
        // Dynamic indexed line.
        assert_eq!(
            code_of(&[0, 0, 0x80]),
            Some(code::QPACK_DECOMPRESSION_FAILED)
        );
        // Static index 99 is past the table.
        assert_eq!(
            code_of(&[0, 0, 0xff, 0x24]),
            Some(code::QPACK_DECOMPRESSION_FAILED)
        );
        // A string longer than what is left.
        assert_eq!(
            code_of(&[0, 0, 0x50, 0x05, b'a']),
            Some(code::QPACK_DECOMPRESSION_FAILED)
        );
        // Uppercase name, pseudo after regular, unknown pseudo.
        assert_eq!(code_of(&[0, 0, 0x21, b'A', 0]), Some(code::MESSAGE_ERROR));
        assert_eq!(
            code_of(&[0, 0, 0x21, b'a', 0, 0xcf]),
            Some(code::MESSAGE_ERROR)
        );
        assert_eq!(
            code_of(&[0, 0, 0x22, b':', b'x', 0]),
            Some(code::MESSAGE_ERROR)
        );
        // Over the size limit.
        let mut big = BytesMut::new();
        let mut h = HeaderMap::new();
        h.insert("x", HeaderValue::from_bytes(&[b'a'; 2000]).expect("value"));
        encode_request(RequestLine::Connect { authority: "a:1" }, &h, &mut big);
        assert_eq!(code_of(&big), Some(code::EXCESSIVE_LOAD));
        // Endless prefix integer.
        assert_eq!(
            code_of(&[
                0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
            ]),
            Some(code::QPACK_DECOMPRESSION_FAILED)
        );
    }
}
