"""The fake istiod's own certificate authority (ECDSA P-256, built with ``cryptography``).

One root, an optional intermediate, a TLS serving certificate for the gRPC
port, and workload certificates signed from PKCS#10 CSRs.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Names the serving certificate answers to, besides the ones a caller adds.
DEFAULT_SERVER_SANS = (
    "localhost",
    "istiod",
    "istiod.istio-system",
    "istiod.istio-system.svc",
    "istiod.istio-system.svc.cluster.local",
    "127.0.0.1",
    "::1",
)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _ca_cert(subject: x509.Name, key, issuer_name: x509.Name, issuer_key, issuer_cert=None,
             years: int = 10) -> x509.Certificate:
    now = _now()
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(hours=1))
        .not_valid_after(now + _dt.timedelta(days=365 * years))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer_cert is not None:
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    return b.sign(issuer_key, hashes.SHA256())


@dataclass
class Issued:
    """A certificate the CA signed: leaf PEM plus the chain to return."""

    cert: x509.Certificate
    chain: list[str] = field(default_factory=list)  # leaf first, root last

    @property
    def pem(self) -> str:
        return _pem(self.cert)


class CertificateAuthority:
    def __init__(self, trust_domain: str = "cluster.local", intermediate: bool = False):
        self.trust_domain = trust_domain
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
            x509.NameAttribute(NameOID.COMMON_NAME, "fake-istiod root CA"),
        ])
        self.root_cert = _ca_cert(root_name, self.root_key, root_name, self.root_key)
        if intermediate:
            self.int_key = ec.generate_private_key(ec.SECP256R1())
            int_name = x509.Name([
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
                x509.NameAttribute(NameOID.COMMON_NAME, "fake-istiod intermediate CA"),
            ])
            self.int_cert = _ca_cert(int_name, self.int_key, root_name, self.root_key,
                                     issuer_cert=self.root_cert, years=5)
        else:
            self.int_key = None
            self.int_cert = None

    # -- helpers -----------------------------------------------------------------------------

    @property
    def root_pem(self) -> str:
        return _pem(self.root_cert)

    @property
    def _issuer(self):
        if self.int_cert is not None:
            return self.int_cert, self.int_key
        return self.root_cert, self.root_key

    def chain_above_leaf(self) -> list[str]:
        """PEMs returned after the leaf: the intermediate (if any), then the root."""
        out = []
        if self.int_cert is not None:
            out.append(_pem(self.int_cert))
        out.append(self.root_pem)
        return out

    def _leaf_builder(self, public_key, not_before, not_after):
        issuer_cert, issuer_key = self._issuer
        return (
            x509.CertificateBuilder()
            .issuer_name(issuer_cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=True,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                       ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                critical=False,
            )
        ), issuer_key

    # -- serving certificate -----------------------------------------------------------------

    def server_cert(self, extra_sans=()) -> tuple[bytes, bytes]:
        """(private key PEM, certificate chain PEM) for the gRPC TLS port."""
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        seen = set()
        for san in (*DEFAULT_SERVER_SANS, *extra_sans):
            if san in seen:
                continue
            seen.add(san)
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                names.append(x509.DNSName(san))
        now = _now()
        b, issuer_key = self._leaf_builder(key.public_key(), now - _dt.timedelta(hours=1),
                                           now + _dt.timedelta(days=365))
        b = b.subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "istiod")]))
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = b.sign(issuer_key, hashes.SHA256())
        chain = _pem(cert) + "".join(self.chain_above_leaf()[:-1])
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return key_pem, chain.encode()

    # -- workload certificates ---------------------------------------------------------------

    def sign_csr(self, csr: x509.CertificateSigningRequest, uri_san: str, validity_s: int,
                 backdate_s: int = 0) -> Issued:
        """Sign `csr`'s public key for `uri_san`, valid `validity_s` seconds from now.

        Like Istio's CA the subject is empty and the (then mandatory) SAN
        extension is critical.
        """
        now = _now()
        not_before = now - _dt.timedelta(seconds=backdate_s)
        b, issuer_key = self._leaf_builder(csr.public_key(), not_before,
                                           now + _dt.timedelta(seconds=validity_s))
        b = b.subject_name(x509.Name([]))
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri_san)]), critical=True)
        cert = b.sign(issuer_key, hashes.SHA256())
        return Issued(cert=cert, chain=[_pem(cert), *self.chain_above_leaf()])

    def issue(self, uri_san: str, validity_s: int) -> tuple[bytes, bytes]:
        """(private key PEM, certificate chain PEM) for `uri_san`: a workload certificate for a
        peer that does not ask the CA itself (Envoy as a waypoint, with files)."""
        key = ec.generate_private_key(ec.SECP256R1())
        csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(
            key, hashes.SHA256())
        issued = self.sign_csr(csr, uri_san, validity_s)
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return key_pem, "".join(issued.chain[:-1]).encode()


def csr_uri_sans(csr: x509.CertificateSigningRequest) -> list[str]:
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(ext.value.get_values_for_type(x509.UniformResourceIdentifier))


def cert_uri_sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(ext.value.get_values_for_type(x509.UniformResourceIdentifier))
