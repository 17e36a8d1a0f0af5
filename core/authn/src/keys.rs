//! JSON Web Key Sets: parsing (public signature keys only) and Envoy's key selection.

use std::str::FromStr;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::{JwksError, JwtError};

/// The usable keys of one JWKS.
#[derive(Debug)]
pub(crate) struct KeySet {
    keys: Vec<Key>,
}

#[derive(Debug)]
struct Key {
    kid: Option<String>,
    /// The JWK's `alg`, when it pins one.
    alg: Option<Algorithm>,
    kind: KeyKind,
    key: DecodingKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    fn supports(self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (
                KeyKind::Rsa,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ) | (KeyKind::P256, Algorithm::ES256)
                | (KeyKind::P384, Algorithm::ES384)
                | (KeyKind::Ed25519, Algorithm::EdDSA)
        )
    }
}

/// The signature algorithms a token may use. HMAC is deliberately absent: a JWKS is public.
pub(crate) fn token_algorithm(alg: &str) -> Option<Algorithm> {
    match alg {
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" | "ES256" | "ES384" | "EdDSA" => {
            Algorithm::from_str(alg).ok()
        }
        _ => None,
    }
}

impl KeySet {
    /// Parses a JWKS document. Keys that cannot verify signatures here (HMAC `oct` keys,
    /// encryption keys, P-521, unknown types or algorithms) are skipped; a set with no usable key
    /// is an error.
    pub(crate) fn parse(json: &str) -> Result<Self, JwksError> {
        let doc: serde_json::Value =
            serde_json::from_str(json).map_err(|e| JwksError::Malformed(e.to_string()))?;
        let Some(list) = doc.get("keys").and_then(|k| k.as_array()) else {
            return Err(JwksError::Malformed(
                "expected an object with a \"keys\" array".into(),
            ));
        };
        let mut keys = Vec::with_capacity(list.len());
        let mut skipped = Vec::new();
        for (i, raw) in list.iter().enumerate() {
            match Self::key(raw) {
                Ok(k) => keys.push(k),
                Err(why) => skipped.push(format!("keys[{i}]: {why}")),
            }
        }
        if keys.is_empty() {
            let why = if skipped.is_empty() {
                "the set is empty".to_owned()
            } else {
                skipped.join("; ")
            };
            return Err(JwksError::NoUsableKeys(why));
        }
        Ok(Self { keys })
    }

    fn key(raw: &serde_json::Value) -> Result<Key, String> {
        if raw.get("kty").and_then(|k| k.as_str()) == Some("oct") {
            return Err("symmetric (oct) keys are never used: HMAC tokens are refused".into());
        }
        let jwk: Jwk = serde_json::from_value(raw.clone()).map_err(|e| e.to_string())?;
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return Err("an encryption key (use: enc)".into());
        }
        let kind = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => KeyKind::Rsa,
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => KeyKind::P256,
                EllipticCurve::P384 => KeyKind::P384,
                _ => return Err("unsupported elliptic curve (P-256 and P-384 are)".into()),
            },
            AlgorithmParameters::OctetKeyPair(p) => match p.curve {
                EllipticCurve::Ed25519 => KeyKind::Ed25519,
                _ => return Err("unsupported OKP curve (Ed25519 is)".into()),
            },
            _ => return Err("unsupported key type (RSA, EC and OKP are)".into()),
        };
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(a) => {
                let alg = token_algorithm(&a.to_string())
                    .ok_or_else(|| format!("algorithm {a} is not accepted"))?;
                if !kind.supports(alg) {
                    return Err(format!("algorithm {a} does not fit the key type"));
                }
                Some(alg)
            }
        };
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
        Ok(Key {
            kid: jwk.common.key_id,
            alg,
            kind,
            key,
        })
    }

    /// Number of usable keys.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Verifies `signature` (base64url) over `message` with the keys Envoy would try: same
    /// `kid` (or either side has none), same `alg` (if the key pins one), fitting type.
    pub(crate) fn verify(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
        message: &[u8],
        signature: &str,
    ) -> Result<(), JwtError> {
        let mut tried = false;
        for k in &self.keys {
            if kid.zip(k.kid.as_deref()).is_some_and(|(a, b)| a != b)
                || k.alg.is_some_and(|a| a != alg)
                || !k.kind.supports(alg)
            {
                continue;
            }
            tried = true;
            if jsonwebtoken::crypto::verify(signature, message, &k.key, alg).unwrap_or(false) {
                return Ok(());
            }
        }
        Err(if tried {
            JwtError::VerificationFailed
        } else {
            JwtError::KidAlgMismatch
        })
    }
}

/// Reads `jwks_uri` from an OpenID Provider configuration document (fetched from
/// `<issuer>/.well-known/openid-configuration`).
pub fn jwks_uri_from_openid_configuration(json: &str) -> Result<String, JwksError> {
    let doc: serde_json::Value =
        serde_json::from_str(json).map_err(|e| JwksError::Malformed(e.to_string()))?;
    doc.get("jwks_uri")
        .and_then(|u| u.as_str())
        .map(str::to_owned)
        .ok_or_else(|| JwksError::NoJwksUri("missing or not a string".into()))
}
