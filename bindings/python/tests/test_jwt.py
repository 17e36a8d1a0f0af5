"""JWT RequestAuthentication from Python: tokens are made by PyJWT + cryptography (an
independent JOSE implementation), verified by ambit.Authenticators."""

import json
import time

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

import ambit

ISSUER = "https://issuer.example"
WAYPOINT = ("shop", "waypoint")
CART = ("shop", "cart")


def es256_key(kid):
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=kid, alg="ES256", use="sig")
    return key, jwk


def rs256_key(kid):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=kid, alg="RS256", use="sig")
    return key, jwk


def token(key, kid, alg="ES256", iss=ISSUER, sub="alice", aud="cart", exp_in=600, **claims):
    now = int(time.time())
    body = {"iss": iss, "sub": sub, "aud": aud, "iat": now, "exp": now + exp_in, **claims}
    return pyjwt.encode(body, key, algorithm=alg, headers={"kid": kid})


def hs256(secret, claims):
    """HS256 by hand (PyJWT rightly refuses a PEM public key as an HMAC secret)."""
    import base64
    import hashlib
    import hmac

    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    signing = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "es-1"}).encode()) + "." + b64(
        json.dumps(claims).encode()
    )
    return signing + "." + b64(hmac.new(secret, signing.encode(), hashlib.sha256).digest())


def request_authentication(jwks=None, jwks_uri=None, extra=""):
    source = f"jwks: '{json.dumps(jwks)}'" if jwks else f"jwksUri: {jwks_uri}"
    return f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: shop}}
spec:
  targetRefs: [{{kind: Service, group: "", name: cart}}]
  jwtRules:
  - issuer: {ISSUER}
    audiences: [cart]
    {source}
{extra}"""


def authenticate(authn, tok=None, path="/", **kw):
    headers = {"authorization": f"Bearer {tok}"} if tok else {}
    return authn.authenticate(headers, path, waypoint=WAYPOINT, service=CART, **kw)


@pytest.fixture(scope="module")
def keys():
    es, es_jwk = es256_key("es-1")
    rs, rs_jwk = rs256_key("rs-1")
    return es, rs, {"keys": [es_jwk, rs_jwk]}


def test_each_token_decided_like_envoy(keys):
    es, rs, jwks = keys
    authn = ambit.Authenticators.from_yaml(request_authentication(jwks))
    assert len(authn) == 1 and authn.warnings == []
    assert authn.applies_to(waypoint=WAYPOINT, service=CART)
    assert not authn.applies_to(waypoint=WAYPOINT, service=("shop", "orders"))

    ok = authenticate(authn, token(es, "es-1", groups=["admins"]))
    assert ok and ok.kind == "authenticated" and ok.status is None
    assert ok.principal == f"{ISSUER}/alice"
    assert ok.auth is not None and ok.auth.claims["groups"] == ["admins"] and ok.auth.audiences == ["cart"]
    assert ok.headers is not None and "authorization" not in dict(ok.headers), "not forwarded by default"
    assert authenticate(authn, token(rs, "rs-1", alg="RS256")).kind == "authenticated"

    anonymous = authenticate(authn)
    assert anonymous and anonymous.kind == "anonymous" and anonymous.principal is None

    other_key, _ = es256_key("es-1")
    hs_secret = es.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header, payload, _sig = token(es, "es-1").split(".")
    refused = {
        "expired": (token(es, "es-1", exp_in=-3600), "Jwt is expired"),
        "wrong issuer": (token(es, "es-1", iss="https://evil.example"), "Jwt issuer is not configured"),
        "wrong audience": (token(es, "es-1", aud="orders"), "Audiences in Jwt are not allowed"),
        "bad signature": (token(other_key, "es-1"), "Jwt verification fails"),
        "unknown kid": (token(es, "es-9"), "Jwks doesn't have key to match kid or alg from Jwt"),
        "alg none": (pyjwt.encode({"iss": ISSUER, "sub": "x"}, None, algorithm="none"), "[alg] is not supported"),
        # HS256 keyed with the public key: the classic algorithm-confusion forgery.
        "hs256 confusion": (hs256(hs_secret, {"iss": ISSUER, "sub": "x", "aud": "cart"}), "[alg] is not supported"),
        "garbage": (f"{header}.{payload}", "Header.Payload.Signature"),
    }
    for what, (tok, reason) in refused.items():
        r = authenticate(authn, tok)
        assert not r and r.kind == "denied" and r.status == 401, what
        assert r.reason is not None and reason in r.reason, (what, r.reason)
        assert r.headers is None and r.auth is None


def test_now_is_the_callers_clock(keys):
    es, _, jwks = keys
    authn = ambit.Authenticators.from_yaml(request_authentication(jwks))
    tok = token(es, "es-1", exp_in=600)
    assert authenticate(authn, tok, now=time.time()).kind == "authenticated"
    assert authenticate(authn, tok, now=time.time() + 3600).reason == "Jwt is expired"


def test_remote_jwks_installed_and_rotated(keys):
    es, _, _ = keys
    uri = "https://issuer.example/jwks.json"
    authn = ambit.Authenticators.from_yaml(request_authentication(jwks_uri=uri))
    assert authn.jwks_uris == [(uri, 5.0, False)]
    assert not authn.has_jwks(uri)
    tok = token(es, "es-1")
    assert authenticate(authn, tok).reason == "Jwks remote fetch is failed"

    _, first = es256_key("es-1")
    first_jwks = {"keys": [json.loads(ECAlgorithm.to_jwk(es.public_key())) | {"kid": "es-1", "alg": "ES256"}]}
    assert authn.set_jwks(uri, json.dumps(first_jwks)) == 1 and authn.has_jwks(uri)
    assert authenticate(authn, tok).kind == "authenticated"

    # Rotation: the new set has only a new key; old tokens stop verifying, new ones pass.
    new_key, new_jwk = es256_key("es-2")
    assert authn.set_jwks(uri, json.dumps({"keys": [new_jwk]})) == 1
    assert "kid" in (authenticate(authn, tok).reason or "")
    assert authenticate(authn, token(new_key, "es-2")).kind == "authenticated"

    with pytest.raises(ambit.ConfigError, match="JSON Web Key Set"):
        authn.set_jwks(uri, "{not json")
    assert authenticate(authn, token(new_key, "es-2")).kind == "authenticated", "previous set kept"
    with pytest.raises(ambit.ConfigError, match="no RequestAuthentication rule uses"):
        authn.set_jwks("https://elsewhere/jwks", json.dumps({"keys": [new_jwk]}))


def test_output_claims_and_forwarded_token(keys):
    es, _, jwks = keys
    extra = """    forwardOriginalToken: true
    outputClaimToHeaders: [{header: x-jwt-sub, claim: sub}]
"""
    authn = ambit.Authenticators.from_yaml(request_authentication(jwks, extra=extra))
    tok = token(es, "es-1")
    r = authenticate(authn, tok)
    assert r.headers is not None
    headers = dict(r.headers)
    assert headers["x-jwt-sub"] == "alice"
    assert headers["authorization"] == f"Bearer {tok}"
    # A client cannot forge the output header without a token.
    anon = authn.authenticate({"x-jwt-sub": "root"}, "/", waypoint=WAYPOINT, service=CART)
    assert anon.headers is not None and "x-jwt-sub" not in dict(anon.headers)


def test_config_errors():
    with pytest.raises(ambit.ConfigError) as e:
        ambit.Authenticators.from_yaml(request_authentication(jwks={"keys": "nope"}))
    assert e.value.object == "RequestAuthentication shop/jwt"
    assert e.value.field is not None and "jwks" in e.value.field
