//! A JWT issuer for tests and the demo: a key generated at run time, its public JWK, and
//! tokens signed with it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A signing key and its public JWK.
pub struct JwtSigner {
    /// The algorithm tokens are signed with.
    pub alg: Algorithm,
    /// The `kid` put in tokens (and in the JWK); `None` leaves it out of tokens.
    pub kid: Option<String>,
    /// The private key, for signing with other headers.
    pub key: EncodingKey,
    /// The public key as a JWK (with `kid`).
    pub jwk: Value,
    /// The private key as PKCS#8 DER.
    pub der: Vec<u8>,
}

impl std::fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSigner")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl JwtSigner {
    /// A fresh key for `alg` (ES256, ES384, EdDSA, or an RSA key for RS*/PS*) with `kid`.
    pub fn generate(alg: Algorithm, kid: &str) -> Self {
        let rcgen_alg = match alg {
            Algorithm::ES256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Algorithm::ES384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Algorithm::EdDSA => &rcgen::PKCS_ED25519,
            _ => &rcgen::PKCS_RSA_SHA256,
        };
        let pair = rcgen::KeyPair::generate_for(rcgen_alg).expect("generate a test key");
        let pem = pair.serialize_pem();
        let key = match alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
            _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
        }
        .expect("encoding key");
        let jwk = if alg == Algorithm::EdDSA {
            // jsonwebtoken derives OKP JWKs from PKCS#8 v1 only; rcgen writes v2.
            json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
                   "x": URL_SAFE_NO_PAD.encode(pair.public_key_raw())})
        } else {
            let mut jwk = Jwk::from_encoding_key(&key, alg).expect("public jwk");
            jwk.common.key_id = Some(kid.to_owned());
            // Let one RSA key serve every RSA algorithm.
            jwk.common.key_algorithm = None;
            serde_json::to_value(jwk).expect("jwk json")
        };
        Self {
            alg,
            kid: Some(kid.to_owned()),
            key,
            jwk,
            der: pair.serialize_der(),
        }
    }

    /// An ES256 signer with `kid`, the common case.
    pub fn es256(kid: &str) -> Self {
        Self::generate(Algorithm::ES256, kid)
    }

    /// The same key, signing tokens without a `kid`.
    pub fn without_kid(mut self) -> Self {
        self.kid = None;
        self
    }

    /// A token with `claims`, signed.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = self.kid.clone();
        jsonwebtoken::encode(&header, claims, &self.key).expect("sign")
    }

    /// A token from `iss` for `sub` with audience `aud`, issued now and expiring in
    /// `expires_in` seconds (negative: already expired), plus the claims in `extra`.
    pub fn token(&self, iss: &str, sub: &str, aud: &str, expires_in: i64, extra: Value) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut claims =
            json!({"iss": iss, "sub": sub, "aud": aud, "iat": now, "exp": now + expires_in});
        if let (Some(c), Value::Object(more)) = (claims.as_object_mut(), extra) {
            c.extend(more);
        }
        self.sign(&claims)
    }
}

/// A JWKS document holding the public keys of `signers`.
pub fn jwks(signers: &[&JwtSigner]) -> String {
    json!({"keys": signers.iter().map(|s| s.jwk.clone()).collect::<Vec<_>>()}).to_string()
}
