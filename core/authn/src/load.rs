//! `RequestAuthentication` YAML → compiled rules.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ambit_config::attach::{self, TargetRef};
use ambit_config::{ConfigError, Object, Report};
use arc_swap::ArcSwapOption;
use http::HeaderName;
use serde::{Deserialize, Serialize};

use crate::keys::KeySet;
use crate::{JwtRule, Keys, Location, RaPolicy, RemoteJwks, normalize_audience};

/// Istio's default JWKS fetch timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Spec {
    selector: Option<serde_yaml_ng::Value>,
    target_ref: Option<TargetRef>,
    #[serde(default)]
    target_refs: Vec<TargetRef>,
    #[serde(default)]
    jwt_rules: Vec<WireRule>,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireRule {
    #[serde(default)]
    issuer: String,
    #[serde(default)]
    audiences: Vec<String>,
    jwks_uri: Option<String>,
    jwks: Option<String>,
    #[serde(default)]
    from_headers: Vec<FromHeader>,
    #[serde(default)]
    from_params: Vec<String>,
    #[serde(default)]
    from_cookies: Vec<String>,
    output_payload_to_header: Option<String>,
    #[serde(default)]
    forward_original_token: bool,
    #[serde(default)]
    output_claim_to_headers: Vec<ClaimToHeader>,
    timeout: Option<String>,
    #[serde(default)]
    space_delimited_claims: Vec<String>,
}

#[derive(Deserialize, Serialize)]
struct FromHeader {
    name: String,
    #[serde(default)]
    prefix: String,
}

#[derive(Deserialize, Serialize)]
struct ClaimToHeader {
    header: String,
    claim: String,
}

/// Compiles one RequestAuthentication; `None` when no waypoint applies it (warned). Remote
/// key-set slots are shared through `remote`, by URI.
pub(crate) fn policy(
    doc: &Object,
    root_namespace: &str,
    remote: &mut HashMap<String, Arc<RemoteJwks>>,
    report: &mut Report,
) -> Result<Option<RaPolicy>, ConfigError> {
    let name = doc.require_name(report)?.to_owned();
    let label = doc.label();
    let spec: Spec = report.decode(doc.spec.clone(), &label, "spec")?;
    let attachments = attach::resolve(
        spec.selector.is_some(),
        spec.target_ref,
        spec.target_refs,
        &doc.namespace,
        root_namespace,
        &label,
        report,
    )?;
    if attachments.is_empty() {
        return Ok(None);
    }
    let mut rules = Vec::with_capacity(spec.jwt_rules.len());
    for (i, r) in spec.jwt_rules.into_iter().enumerate() {
        let at = format!("spec.jwtRules[{i}]");
        rules.push(Arc::new(rule(r, &label, &at, remote, report)?));
    }
    Ok(Some(RaPolicy {
        key: format!("{}/{name}", doc.namespace),
        rules,
        attachments,
    }))
}

fn rule(
    r: WireRule,
    label: &str,
    at: &str,
    remote: &mut HashMap<String, Arc<RemoteJwks>>,
    report: &Report,
) -> Result<JwtRule, ConfigError> {
    let err = |field: &str, message: String| report.error(label, &format!("{at}.{field}"), message);
    let timeout = match &r.timeout {
        None => DEFAULT_TIMEOUT,
        Some(t) => ambit_config::duration::istio(t).map_err(|m| err("timeout", m))?,
    };
    let keys = match (r.jwks.as_deref(), r.jwks_uri.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(err("jwks", "set jwks or jwksUri, not both".into()));
        }
        (Some(inline), None) => Keys::Inline(Arc::new(
            KeySet::parse(inline).map_err(|e| err("jwks", e.to_string()))?,
        )),
        (None, uri) => {
            let (uri, openid_discovery) = match uri {
                Some(u) => {
                    if !(u.starts_with("https://") || u.starts_with("http://")) {
                        return Err(err(
                            "jwksUri",
                            format!("{u:?} must be an http:// or https:// URI"),
                        ));
                    }
                    (u.to_owned(), false)
                }
                None if r.issuer.starts_with("https://") || r.issuer.starts_with("http://") => (
                    format!(
                        "{}/.well-known/openid-configuration",
                        r.issuer.trim_end_matches('/')
                    ),
                    true,
                ),
                None => {
                    return Err(err(
                        "jwksUri",
                        "set jwks or jwksUri (keys can only be discovered when the issuer is an \
                         http(s) URL)"
                            .into(),
                    ));
                }
            };
            let slot = remote.entry(uri.clone()).or_insert_with(|| {
                Arc::new(RemoteJwks {
                    uri,
                    timeout,
                    openid_discovery,
                    keys: ArcSwapOption::empty(),
                })
            });
            Keys::Remote(slot.clone())
        }
    };
    let header = |field: String, name: &str| {
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| err(&field, format!("{name:?} is not a valid header name")))
    };
    let mut locations = Vec::new();
    for (j, h) in r.from_headers.iter().enumerate() {
        locations.push(Location::Header {
            name: header(format!("fromHeaders[{j}].name"), &h.name)?,
            prefix: h.prefix.clone(),
            ignore_case: false,
        });
    }
    for p in &r.from_params {
        locations.push(Location::Param(p.clone()));
    }
    for c in &r.from_cookies {
        locations.push(Location::Cookie(c.clone()));
    }
    if locations.is_empty() {
        locations.push(Location::Header {
            name: http::header::AUTHORIZATION,
            prefix: "Bearer ".into(),
            ignore_case: true,
        });
        locations.push(Location::Param("access_token".into()));
    }
    let output_payload_to_header = r
        .output_payload_to_header
        .as_deref()
        .filter(|h| !h.is_empty())
        .map(|h| header("outputPayloadToHeader".into(), h))
        .transpose()?;
    let mut output_claim_to_headers = Vec::with_capacity(r.output_claim_to_headers.len());
    for (j, c) in r.output_claim_to_headers.iter().enumerate() {
        let name = header(format!("outputClaimToHeaders[{j}].header"), &c.header)?;
        let path: Vec<String> = c.claim.split('.').map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            return Err(err(
                &format!("outputClaimToHeaders[{j}].claim"),
                format!(
                    "{:?} is not a claim name (dots separate nested names)",
                    c.claim
                ),
            ));
        }
        output_claim_to_headers.push((name, path));
    }
    let mut space_delimited_claims = vec!["scope".to_owned(), "permission".to_owned()];
    for c in r.space_delimited_claims {
        if !space_delimited_claims.contains(&c) {
            space_delimited_claims.push(c);
        }
    }
    Ok(JwtRule {
        issuer: r.issuer,
        audiences: r
            .audiences
            .iter()
            .map(|a| normalize_audience(a).to_owned())
            .collect(),
        keys,
        locations,
        forward_original_token: r.forward_original_token,
        output_payload_to_header,
        output_claim_to_headers,
        space_delimited_claims,
    })
}
