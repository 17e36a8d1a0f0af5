import pytest

import ambit


def test_spiffe_id_parts_and_errors():
    i = ambit.SpiffeId("spiffe://cluster.local/ns/shop/sa/web")
    assert (i.trust_domain, i.namespace, i.service_account) == ("cluster.local", "shop", "web")
    assert i.principal == "cluster.local/ns/shop/sa/web"
    assert str(i) == "spiffe://cluster.local/ns/shop/sa/web"
    assert ambit.SpiffeId("cluster.local/ns/shop/sa/web") == i
    assert len({i, ambit.SpiffeId(str(i))}) == 1
    with pytest.raises(ambit.IdentityError, match="invalid character"):
        ambit.SpiffeId("spiffe://Bad/ns")
    assert issubclass(ambit.IdentityError, ambit.AmbitError)


def test_ca_issues_credentials_that_load_back_from_pem():
    ca = ambit.CertificateAuthority("example.org")
    creds = ca.issue("spiffe://example.org/ns/a/sa/b", ttl=3600)
    assert creds.id == ambit.SpiffeId("spiffe://example.org/ns/a/sa/b")
    assert creds.chain_pem.startswith("-----BEGIN CERTIFICATE-----")
    again = ambit.Credentials.from_pem(creds.chain_pem, creds.key_pem, ca.root_pem)
    assert again.id == creds.id
    with pytest.raises(ambit.IdentityError, match="issues for trust domain"):
        ca.issue("spiffe://elsewhere/ns/a/sa/b")
    with pytest.raises(ambit.IdentityError):
        ambit.Credentials.from_pem("garbage", "garbage", "garbage")
