//! The identity a verified JWT gives a request: an input to L7 authorization. Authentication
//! itself (`RequestAuthentication`, JWT verification) lives in ambit-authn, which produces it;
//! this crate only reads it, so authorization builds without any JWT library.

/// The identity a verified JWT gives a request: what `requestPrincipals` and `request.auth.*`
/// match against.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RequestAuth {
    /// `iss`.
    pub issuer: String,
    /// `sub`, if the token has one.
    pub subject: Option<String>,
    /// `aud` (a string or a list in the token).
    pub audiences: Vec<String>,
    /// `azp`, the authorized presenter.
    pub presenter: Option<String>,
    /// Every claim, with the rule's space-delimited claims (`scope`, `permission`, and
    /// `spaceDelimitedClaims`) split into lists.
    pub claims: serde_json::Value,
}

// === impl RequestAuth ===

impl RequestAuth {
    /// Builds the request identity from a verified claim set (`iss`, `sub`, `aud`, `azp` read
    /// from it). `None` when `claims` is not an object or has no string `iss`.
    pub fn from_claims(claims: serde_json::Value) -> Option<Self> {
        let obj = claims.as_object()?;
        let issuer = obj.get("iss")?.as_str()?.to_owned();
        let subject = obj.get("sub").and_then(|s| s.as_str()).map(str::to_owned);
        let presenter = obj.get("azp").and_then(|s| s.as_str()).map(str::to_owned);
        let audiences = match obj.get("aud") {
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(v)) => v
                .iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        Some(Self {
            issuer,
            subject,
            audiences,
            presenter,
            claims,
        })
    }

    /// `iss/sub` (Istio's request principal); `iss/` when the token has no `sub`.
    pub fn principal(&self) -> String {
        format!("{}/{}", self.issuer, self.subject.as_deref().unwrap_or(""))
    }

    /// A claim by path (`["a", "b"]` is `claims.a.b`).
    pub fn claim(&self, path: &[String]) -> Option<&serde_json::Value> {
        path.iter()
            .try_fold(&self.claims, |v, k| v.as_object()?.get(k.as_str()))
    }
}
