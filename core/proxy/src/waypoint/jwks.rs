//! Remote JWKS (`jwksUri`): fetched when the config changes, refreshed every 20 minutes (Istio's
//! default), retried every 10 s while a fetch fails. Until a key set arrives, tokens for that
//! issuer are refused (401), never accepted.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;
use tracing::{info, warn};

use ambit_policy::JwksUri;
use ambit_policy::jwt::jwks_uri_from_openid_configuration;

use super::Inner;

/// How often key sets are re-fetched.
const REFRESH: Duration = Duration::from_secs(20 * 60);
/// How soon a failed fetch is retried.
const RETRY: Duration = Duration::from_secs(10);
/// Largest JWKS document accepted.
const MAX_BYTES: usize = 1 << 20;

/// Wakes the refresh loop when the config changes.
#[derive(Debug, Default)]
pub(crate) struct Fetcher {
    changed: Notify,
}

impl Fetcher {
    pub(crate) fn wake(&self) {
        self.changed.notify_one();
    }
}

pub(crate) async fn refresh_loop(inner: Arc<Inner>) {
    loop {
        let wait = match refresh_once(&inner).await {
            Ok(()) => REFRESH,
            Err(_) => RETRY,
        };
        tokio::select! {
            _ = inner.jwks.changed.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Fetches every `jwksUri` of the current config once; the first error is returned (the
/// others are still tried).
pub(crate) async fn refresh_once(inner: &Inner) -> Result<(), String> {
    let l7 = inner.l7.load_full();
    let mut first = Ok(());
    for j in l7.authentication.jwks_uris() {
        let uri = &j.uri;
        let r = match fetch_jwks(&j).await {
            Ok(text) => l7
                .authentication
                .set_jwks(uri, &text)
                .map_err(|e| format!("JWKS from {uri} is not usable: {e}")),
            Err(e) => Err(format!("cannot fetch JWKS from {uri}: {e}")),
        };
        match r {
            Ok(keys) => info!(%uri, keys, "JWKS loaded"),
            Err(e) => {
                warn!(error = %e, "JWKS fetch failed; tokens of this issuer are refused until it succeeds");
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
    }
    first
}

/// The key set for `j`: fetched directly, or through the issuer's OpenID discovery document.
async fn fetch_jwks(j: &JwksUri) -> Result<String, String> {
    if !j.openid_discovery {
        return fetch(&j.uri, j.timeout).await;
    }
    let doc = fetch(&j.uri, j.timeout).await?;
    let jwks_uri = jwks_uri_from_openid_configuration(&doc).map_err(|e| e.to_string())?;
    fetch(&jwks_uri, j.timeout).await
}

async fn fetch(uri: &str, timeout: Duration) -> Result<String, String> {
    let parsed: Uri = uri.parse().map_err(|e| format!("bad URI: {e}"))?;
    if parsed.scheme_str() != Some("http") {
        return Err(
            "only http:// JWKS URIs are supported so far (use inline `jwks` for others)".into(),
        );
    }
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let resp = tokio::time::timeout(timeout, client.get(parsed))
        .await
        .map_err(|_| format!("timed out after {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let body = tokio::time::timeout(timeout, Limited::new(resp.into_body(), MAX_BYTES).collect())
        .await
        .map_err(|_| format!("timed out after {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    String::from_utf8(body.to_bytes().to_vec()).map_err(|_| "not UTF-8".into())
}
