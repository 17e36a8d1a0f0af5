//! HTTP/1.1 WebSocket upgrades: offered upstream, and once the upstream answers `101`, the two
//! connections are joined byte for byte.

use http::Version;
use http::header::{self, HeaderMap, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::body::CountReads;
use crate::refusal::{Refusal, Reply};

/// An HTTP/1.1 WebSocket upgrade asked for downstream: forwarded upstream with its
/// `Connection: upgrade`, and when the upstream answers `101` the two connections are joined
/// byte for byte until both sides have closed. Other upgrades (`h2c`, ...) are not offered:
/// their headers are removed like any hop-by-hop header and the request goes on as a plain one,
/// since after a switch nothing on the connection would be authorized or routed again.
pub(crate) struct Upgrade {
    downstream: OnUpgrade,
}

impl Upgrade {
    /// The upgrade a request asks for: HTTP/1.1, `Upgrade: websocket` and `upgrade` among the
    /// `Connection` tokens (RFC 9110 §7.8). Takes the request's handle on its connection.
    pub(crate) fn requested(parts: &mut http::request::Parts) -> Option<Self> {
        if parts.version != Version::HTTP_11
            || !Self::is_websocket(parts.headers.get(header::UPGRADE))
        {
            return None;
        }
        let asked = parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
        if !asked {
            return None;
        }
        let downstream = parts.extensions.remove::<OnUpgrade>()?;
        Some(Self { downstream })
    }

    /// `Upgrade: websocket`, one token, any case.
    fn is_websocket(v: Option<&HeaderValue>) -> bool {
        v.is_some_and(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket"))
    }

    /// Puts the upgrade headers (back) on a request or a 101 after the hop-by-hop ones were
    /// removed.
    pub(crate) fn mark(headers: &mut HeaderMap) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }

    /// What to do with the upstream's answer: a `101` is only accepted when it switches to
    /// the WebSocket that was asked for (else 502); the connections to join come with it.
    pub(crate) fn answer(
        upgrade: Option<Self>,
        mut resp: Reply,
    ) -> Result<(Reply, Option<Splice>), Refusal> {
        if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
            return Ok((resp, None));
        }
        let spliced = match upgrade {
            Some(u) if Self::is_websocket(resp.headers().get(header::UPGRADE)) => resp
                .extensions_mut()
                .remove::<OnUpgrade>()
                .map(|upstream| Splice {
                    downstream: u.downstream,
                    upstream,
                }),
            _ => None,
        };
        match spliced {
            Some(s) => Ok((resp, Some(s))),
            None => Err(Refusal::protocol_error()),
        }
    }
}

/// A downstream and an upstream connection that have both switched protocols.
#[derive(Debug)]
pub(crate) struct Splice {
    downstream: OnUpgrade,
    upstream: OnUpgrade,
}

impl Splice {
    /// Copies both ways until both sides have closed (half-close passed on), then calls
    /// `done(bytes from downstream, bytes from upstream)`.
    pub(crate) async fn run(self, done: impl FnOnce(u64, u64)) {
        let (down, up) = match tokio::join!(self.downstream, self.upstream) {
            (Ok(d), Ok(u)) => (d, u),
            (d, u) => {
                let e = d
                    .err()
                    .or(u.err())
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                tracing::debug!(error = %e, "upgraded connection did not start");
                done(0, 0);
                return;
            }
        };
        let mut down = CountReads::new(TokioIo::new(down));
        let mut up = CountReads::new(TokioIo::new(up));
        if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
            tracing::debug!(error = %e, "upgraded connection ended with an error");
        }
        done(down.read, up.read);
    }
}
