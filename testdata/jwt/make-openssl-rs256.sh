#!/bin/sh
# Builds an RS256 JWT and its JWKS with openssl and the Python standard library only, so that
# ambit's verifier is checked against a token it did not produce itself
# (core/policy/tests/jwt.rs, `openssl_built_token_verifies`). Re-run to regenerate; the test
# passes a fixed "now", so the committed token never expires for it.
set -eu
cd "$(dirname "$0")"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out openssl-rs256.key.pem 2>/dev/null
modulus=$(openssl rsa -in openssl-rs256.key.pem -noout -modulus | cut -d= -f2)
b64url() { python3 -c 'import base64,sys; sys.stdout.write(base64.urlsafe_b64encode(sys.stdin.buffer.read()).rstrip(b"=").decode())'; }
n=$(printf '%s' "$modulus" | python3 -c 'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.stdin.read().strip()))' | b64url)
printf '{"keys":[{"kty":"RSA","kid":"openssl-1","alg":"RS256","use":"sig","n":"%s","e":"AQAB"}]}\n' "$n" > openssl-rs256.jwks.json
header=$(printf '{"alg":"RS256","typ":"JWT","kid":"openssl-1"}' | b64url)
payload=$(printf '{"iss":"https://openssl.example","sub":"carol","aud":"cart","iat":1700000000,"exp":1700003600,"scope":"read write"}' | b64url)
signature=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -sign openssl-rs256.key.pem -binary | b64url)
printf '%s.%s.%s\n' "$header" "$payload" "$signature" > openssl-rs256.jwt
