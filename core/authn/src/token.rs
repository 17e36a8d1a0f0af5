//! One request through the applicable rules: find tokens, verify each, build the outcome.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD_INDIFFERENT as B64;
use http::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::Algorithm;

use super::keys::token_algorithm;
use super::{
    AuthnOutcome, CLOCK_SKEW_SECONDS, HeaderEdits, JwtError, JwtRule, Keys, Location, RequestAuth,
    claim_header_text, extract, normalize_audience,
};

/// A token split and decoded, not yet verified.
struct Parsed<'t> {
    alg: Algorithm,
    kid: Option<String>,
    /// `header.payload`, what the signature covers.
    message: &'t str,
    payload_b64: &'t str,
    signature: &'t str,
    claims: serde_json::Map<String, serde_json::Value>,
    issuer: String,
}

struct Found<'r, 'h> {
    location: &'r Location,
    token: &'h str,
}

pub(super) fn authenticate(
    rules: &[&JwtRule],
    headers: &HeaderMap,
    path_and_query: &str,
    now: u64,
) -> AuthnOutcome {
    let query = path_and_query
        .split_once('?')
        .map(|(_, q)| q.split_once('#').map_or(q, |(q, _)| q));
    let mut edits = HeaderEdits::default();
    // Output headers are ours to set: never pass a client's own values through.
    for r in rules {
        let outputs = r
            .output_payload_to_header
            .iter()
            .chain(r.output_claim_to_headers.iter().map(|(h, _)| h));
        for h in outputs {
            push_unique(&mut edits.remove, h);
        }
    }
    let mut found: Vec<Found<'_, '_>> = Vec::new();
    for r in rules {
        for location in &r.locations {
            for token in extract::find(location, headers, query) {
                if !found
                    .iter()
                    .any(|f| f.token == token && f.location.same_place(location))
                {
                    found.push(Found { location, token });
                }
            }
        }
    }
    if found.is_empty() {
        return AuthnOutcome::Anonymous { edits };
    }
    let mut first: Option<RequestAuth> = None;
    for f in &found {
        let parsed = match Parsed::parse(f.token) {
            Ok(p) => p,
            Err(reason) => return AuthnOutcome::Denied { reason },
        };
        let mut failure = None;
        let mut verified = None;
        let candidates = rules.iter().filter(|r| {
            r.locations.iter().any(|l| l.same_place(f.location))
                && (r.issuer.is_empty() || r.issuer == parsed.issuer)
        });
        for r in candidates {
            match r.verify(&parsed, now) {
                Ok(()) => {
                    verified = Some(*r);
                    break;
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        let Some(rule) = verified else {
            return AuthnOutcome::Denied {
                reason: failure.unwrap_or(JwtError::UnknownIssuer),
            };
        };
        let claims = rule.normalize_claims(parsed.claims);
        rule.edits(f, parsed.payload_b64, &claims, &mut edits);
        if first.is_none() {
            first = RequestAuth::from_claims(serde_json::Value::Object(claims));
        }
    }
    match first {
        Some(auth) => AuthnOutcome::Authenticated { auth, edits },
        // Unreachable in practice: a verified token has an object payload with a string `iss`
        // or an empty one (issuer-less rule); treat the odd case as a format error.
        None => AuthnOutcome::Denied {
            reason: JwtError::BadIssuer,
        },
    }
}

fn push_unique(list: &mut Vec<HeaderName>, h: &HeaderName) {
    if !list.contains(h) {
        list.push(h.clone());
    }
}

impl Location {
    /// Same header, parameter or cookie (prefixes aside).
    fn same_place(&self, other: &Location) -> bool {
        match (self, other) {
            (Location::Header { name: a, .. }, Location::Header { name: b, .. }) => a == b,
            (Location::Param(a), Location::Param(b))
            | (Location::Cookie(a), Location::Cookie(b)) => a == b,
            _ => false,
        }
    }
}

impl<'t> Parsed<'t> {
    fn parse(token: &'t str) -> Result<Self, JwtError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::BadFormat);
        };
        let message = &token[..header.len() + 1 + payload.len()];
        let header = B64.decode(header).map_err(|_| JwtError::HeaderBadBase64)?;
        let header: serde_json::Value =
            serde_json::from_slice(&header).map_err(|_| JwtError::HeaderBadJson)?;
        let header = header.as_object().ok_or(JwtError::HeaderBadJson)?;
        let alg = header
            .get("alg")
            .and_then(|a| a.as_str())
            .ok_or(JwtError::HeaderBadAlg)?;
        // `none` and HS* stop here, before any key is consulted.
        let alg = token_algorithm(alg).ok_or(JwtError::UnsupportedAlg)?;
        let kid = match header.get("kid") {
            None => None,
            Some(serde_json::Value::String(k)) => Some(k.clone()),
            Some(_) => return Err(JwtError::HeaderBadKid),
        };
        if header.contains_key("crit") {
            return Err(JwtError::UnsupportedCritical);
        }
        let payload_json = B64
            .decode(payload)
            .map_err(|_| JwtError::PayloadBadBase64)?;
        let claims: serde_json::Value =
            serde_json::from_slice(&payload_json).map_err(|_| JwtError::PayloadBadJson)?;
        let serde_json::Value::Object(claims) = claims else {
            return Err(JwtError::PayloadBadJson);
        };
        let issuer = match claims.get("iss") {
            None => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(_) => return Err(JwtError::BadIssuer),
        };
        let signature = signature.trim_end_matches('=');
        if B64.decode(signature).is_err() {
            return Err(JwtError::SignatureBadBase64);
        }
        Ok(Self {
            alg,
            kid,
            message,
            payload_b64: payload,
            signature,
            claims,
            issuer,
        })
    }
}

impl JwtRule {
    /// Signature first, then the claims the rule constrains.
    fn verify(&self, t: &Parsed<'_>, now: u64) -> Result<(), JwtError> {
        let guard;
        let keys = match &self.keys {
            Keys::Inline(set) => &**set,
            Keys::Remote(slot) => {
                guard = slot.keys.load();
                guard.as_deref().ok_or(JwtError::JwksNotFetched)?
            }
        };
        keys.verify(t.alg, t.kid.as_deref(), t.message.as_bytes(), t.signature)?;
        let time = |name: &str, bad: JwtError| match t.claims.get(name) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or(bad),
        };
        if let Some(exp) = time("exp", JwtError::BadExp)?
            && now > exp.saturating_add(CLOCK_SKEW_SECONDS)
        {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = time("nbf", JwtError::BadNbf)?
            && now.saturating_add(CLOCK_SKEW_SECONDS) < nbf
        {
            return Err(JwtError::NotYetValid);
        }
        if t.claims.get("sub").is_some_and(|s| !s.is_string()) {
            return Err(JwtError::BadSubject);
        }
        let audiences: Vec<&str> = match t.claims.get("aud") {
            None => Vec::new(),
            Some(serde_json::Value::String(a)) => vec![a.as_str()],
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .map(|a| a.as_str().ok_or(JwtError::BadAudience))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(JwtError::BadAudience),
        };
        if !self.audiences.is_empty()
            && !audiences.iter().any(|a| {
                self.audiences
                    .iter()
                    .any(|want| want == normalize_audience(a))
            })
        {
            return Err(JwtError::AudienceNotAllowed);
        }
        Ok(())
    }

    /// Space-delimited string claims become lists, as Envoy's `normalize_payload_in_metadata`.
    fn normalize_claims(
        &self,
        mut claims: serde_json::Map<String, serde_json::Value>,
    ) -> serde_json::Map<String, serde_json::Value> {
        for name in &self.space_delimited_claims {
            if let Some(serde_json::Value::String(s)) = claims.get(name) {
                let list = s
                    .split_whitespace()
                    .map(|p| serde_json::Value::String(p.to_owned()))
                    .collect();
                claims.insert(name.clone(), serde_json::Value::Array(list));
            }
        }
        claims
    }

    fn edits(
        &self,
        found: &Found<'_, '_>,
        payload_b64: &str,
        claims: &serde_json::Map<String, serde_json::Value>,
        edits: &mut HeaderEdits,
    ) {
        if !self.forward_original_token {
            match found.location {
                Location::Header { name, .. } => push_unique(&mut edits.remove, name),
                Location::Param(p) => {
                    if !edits.remove_params.contains(p) {
                        edits.remove_params.push(p.clone());
                    }
                }
                Location::Cookie(c) => {
                    if !edits.remove_cookies.contains(c) {
                        edits.remove_cookies.push(c.clone());
                    }
                }
            }
        }
        let mut set = |name: &HeaderName, value: Option<HeaderValue>| {
            // The first verified token (the one giving the principal) sets each header.
            if let Some(v) = value.filter(|_| !edits.set.iter().any(|(n, _)| n == name)) {
                edits.set.push((name.clone(), v));
            }
        };
        if let Some(h) = &self.output_payload_to_header {
            set(h, HeaderValue::from_str(payload_b64).ok());
        }
        for (h, path) in &self.output_claim_to_headers {
            let value = path
                .iter()
                .try_fold(None::<&serde_json::Value>, |v, k| {
                    let obj = match v {
                        None => claims,
                        Some(v) => v.as_object()?,
                    };
                    obj.get(k.as_str()).map(Some)
                })
                .flatten()
                .and_then(claim_header_text)
                .and_then(|s| HeaderValue::from_str(&s).ok());
            set(h, value);
        }
    }
}
