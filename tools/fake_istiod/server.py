"""FakeIstiod: a test double of istiod's ambient-facing APIs.

Serves, over gRPC with TLS, on one port:

* ``/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources``
  (delta xDS) for ``type.googleapis.com/istio.workload.Address`` and
  ``type.googleapis.com/istio.security.Authorization``;
* ``/istio.v1.auth.IstioCertificateService/CreateCertificate`` (CSR signing).

Everything a client sends is recorded so tests can assert it; knobs make the
fake misbehave on purpose. See README.md for the API.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
import uuid
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import grpc
from cryptography import x509
from google.protobuf import any_pb2, json_format

from . import convert, pki, protos

log = logging.getLogger("fake_istiod")

ADDRESS_TYPE = "type.googleapis.com/istio.workload.Address"
AUTHORIZATION_TYPE = "type.googleapis.com/istio.security.Authorization"
TYPE_URLS = (ADDRESS_TYPE, AUTHORIZATION_TYPE)

_KIND_TO_TYPE = {
    "workload": ADDRESS_TYPE,
    "service": ADDRESS_TYPE,
    "address": ADDRESS_TYPE,
    "authorization": AUTHORIZATION_TYPE,
    "policy": AUTHORIZATION_TYPE,
}

DEFAULT_VALIDITY_S = 24 * 3600


def type_url_of(kind: str) -> str:
    """'workload' / 'service' / 'authorization' (or a type URL) -> type URL."""
    if kind in TYPE_URLS or kind.startswith("type.googleapis.com/"):
        return kind
    try:
        return _KIND_TO_TYPE[kind.lower()]
    except KeyError:
        raise ValueError(f"unknown resource kind {kind!r}") from None


def _ip_str(raw: bytes) -> str | None:
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return None


# -- records ------------------------------------------------------------------------------------


@dataclass
class CallRecord:
    """One gRPC call (ADS stream or CSR), accepted or not."""

    method: str
    metadata: dict[str, str]
    peer: str
    ok: bool
    error: str = ""
    time: float = field(default_factory=time.time)

    @property
    def token(self) -> str | None:
        """The bearer token sent, without the ``Bearer `` prefix (None if absent)."""
        auth = self.metadata.get("authorization")
        if auth is None:
            return None
        return auth[len("Bearer "):] if auth.startswith("Bearer ") else auth


@dataclass
class AckRecord:
    stream_id: int
    node_id: str
    type_url: str
    nonce: str
    nack: bool
    error: str  # error_detail.message ('' for an ACK)
    code: int  # error_detail.code
    known: bool  # the nonce is one this fake sent on this stream
    time: float = field(default_factory=time.time)


@dataclass
class ResponseRecord:
    stream_id: int
    type_url: str
    nonce: str
    resources: list[tuple[str, str]]  # (name, version)
    removed: list[str]
    time: float = field(default_factory=time.time)

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.resources]


@dataclass
class CsrRecord:
    """One CreateCertificate call that passed authentication."""

    requested_sans: list[str]  # URI SANs in the CSR
    impersonated_identity: str | None  # metadata ImpersonatedIdentity
    validity_duration: int  # as requested (seconds)
    metadata: dict[str, Any]  # IstioCertificateRequest.metadata as a dict
    call_metadata: dict[str, str]  # gRPC headers
    csr_pem: str
    issued_san: str | None = None
    validity_issued: int | None = None
    cert_chain: list[str] = field(default_factory=list)
    error: str = ""  # gRPC status name if the call failed
    time: float = field(default_factory=time.time)


@dataclass
class _Sub:
    wildcard: bool = False
    names: set[str] = field(default_factory=set)


class StreamRecord:
    """One accepted Delta ADS stream."""

    def __init__(self, sid: int, peer: str, metadata: dict[str, str]):
        self.id = sid
        self.peer = peer
        self.metadata = metadata
        self.node_id: str | None = None
        self.node_cluster: str | None = None
        self.node_metadata: dict[str, Any] | None = None
        self.requests: list[Any] = []  # every DeltaDiscoveryRequest, decoded
        self.initial_resource_versions: dict[str, dict[str, str]] = {}
        self.initial_nonces: dict[str, str] = {}  # type_url -> nonce of first response
        self.subscriptions: dict[str, _Sub] = {}
        self.sent: dict[str, set[str]] = {}  # type_url -> names ever sent on this stream
        self.nonces: set[str] = set()
        self.active = True
        self.opened_at = time.time()
        self.closed_at: float | None = None
        self._out: queue.Queue = queue.Queue()

    @property
    def token(self) -> str | None:
        auth = self.metadata.get("authorization", "")
        return auth[len("Bearer "):] if auth.startswith("Bearer ") else (auth or None)

    @property
    def type_urls(self) -> list[str]:
        return list(self.subscriptions)

    def __repr__(self) -> str:
        return (f"StreamRecord(id={self.id}, node_id={self.node_id!r}, active={self.active}, "
                f"types={self.type_urls})")


@dataclass
class _Entry:
    type_url: str
    name: str
    version: str
    value: bytes  # serialized resource (Any.value)
    any_type_url: str
    aliases: list[str]
    kind: str  # workload | service | authorization | raw


# -- the fake -----------------------------------------------------------------------------------


class FakeIstiod:
    """A fake istiod. Thread-safe; all methods may be called from any thread.

    Parameters:
        trust_domain: used for the CA's subject and the wrong-SAN knob.
        token: expected bearer token (None: any or none accepted).
        cluster_id: expected ``clusterid`` header (None: not checked).
        host, port: listen address; port 0 picks a free port (kept on restart).
        intermediate: sign workload and serving certs with an intermediate CA.
        server_sans: extra DNS names / IPs for the serving certificate.
        state_dir: where root-cert.pem is written (default: a temp dir).
    """

    def __init__(
        self,
        trust_domain: str = "cluster.local",
        token: str | None = None,
        cluster_id: str | None = "Kubernetes",
        host: str = "127.0.0.1",
        port: int = 0,
        intermediate: bool = False,
        server_sans: Iterable[str] = (),
        state_dir: str | os.PathLike | None = None,
        max_workers: int = 64,
    ):
        self.pb = protos.load()
        self.trust_domain = trust_domain
        self.cluster_id = cluster_id
        self.host = host
        self._port = port
        self._token = token
        self._max_workers = max_workers

        # Knobs (plain attributes; change them at any time).
        self.ca_available = True  # False: CreateCertificate fails UNAVAILABLE
        self.ca_wrong_san: bool | str = False  # True or a SPIFFE id: issue another SAN
        self.ca_validity_override: int | None = None  # force this validity (seconds)
        self.ca_backdate_s = 0  # not_before = now - this
        self.ca_allow_impersonation = True  # False: ImpersonatedIdentity -> UNAUTHENTICATED
        self.xds_available = True  # False: new ADS streams fail UNAVAILABLE

        # Records.
        self.calls: list[CallRecord] = []
        self.streams: list[StreamRecord] = []
        self.acks: list[AckRecord] = []
        self.responses: list[ResponseRecord] = []
        self.csr_requests: list[CsrRecord] = []

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._entries: dict[str, dict[str, _Entry]] = {t: {} for t in TYPE_URLS}
        self._version = 0
        self._sid = itertools.count(1)
        self._nonce_seq = itertools.count(1)
        self._batch: list[tuple[str, str]] | None = None

        self._own_dir = state_dir is None
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="fake-istiod-"))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.ca = pki.CertificateAuthority(trust_domain, intermediate=intermediate)
        self.root_cert_path = self.state_dir / "root-cert.pem"
        self.root_cert_path.write_text(self.ca.root_pem)
        self._server_key, self._server_chain = self.ca.server_cert(
            [host, *server_sans] if host not in ("0.0.0.0", "::", "") else list(server_sans))
        self._server: grpc.Server | None = None
        self._executor: futures.ThreadPoolExecutor | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> str:
        """``https://host:port``, the value for XDS_ADDRESS / CA_ADDRESS."""
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{h}:{self._port}"

    @property
    def root_pem(self) -> str:
        return self.ca.root_pem

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> "FakeIstiod":
        """Start serving (again, on the same port after a stop). Returns self."""
        with self._lock:
            if self._server is not None:
                return self
            self._executor = futures.ThreadPoolExecutor(max_workers=self._max_workers,
                                                        thread_name_prefix="fake-istiod")
            server = grpc.server(self._executor, options=[
                ("grpc.max_receive_message_length", 200 * 1024 * 1024),
                ("grpc.max_send_message_length", 200 * 1024 * 1024),
                # Istio-style clients (hyper) PING every 30 s on an open stream; gRPC core's
                # default ping-abuse policy would GOAWAY an idle ADS stream after ~2 min.
                ("grpc.http2.min_ping_interval_without_data_ms", 1000),
                ("grpc.http2.max_ping_strikes", 0),
                ("grpc.keepalive_permit_without_calls", 1),
            ])
            handlers = {
                "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                    self._ads,
                    request_deserializer=self.pb.discovery.DeltaDiscoveryRequest.FromString,
                    response_serializer=self.pb.discovery.DeltaDiscoveryResponse.SerializeToString,
                ),
            }
            server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
                "envoy.service.discovery.v3.AggregatedDiscoveryService", handlers)])
            server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
                "istio.v1.auth.IstioCertificateService", {
                    "CreateCertificate": grpc.unary_unary_rpc_method_handler(
                        self._create_certificate,
                        request_deserializer=self.pb.ca.IstioCertificateRequest.FromString,
                        response_serializer=self.pb.ca.IstioCertificateResponse.SerializeToString,
                    )})])
            creds = grpc.ssl_server_credentials([(self._server_key, self._server_chain)])
            host = f"[{self.host}]" if ":" in self.host else self.host
            bound = 0
            deadline = time.monotonic() + 5
            while True:
                try:
                    bound = server.add_secure_port(f"{host}:{self._port}", creds)
                except RuntimeError:
                    bound = 0
                if bound or self._port == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)  # the old listener may linger for a moment after stop()
            if not bound:
                self._executor.shutdown(wait=False)
                raise OSError(f"fake istiod: cannot listen on {host}:{self._port}")
            self._port = bound
            server.start()
            self._server = server
            log.info("fake istiod listening on %s (root %s)", self.address, self.root_cert_path)
            return self

    def stop(self, grace: float | None = 0) -> None:
        """Stop serving; active streams are cancelled. Resource state and records are kept."""
        with self._lock:
            server, self._server = self._server, None
            executor, self._executor = self._executor, None
            for st in self.streams:
                if st.active:
                    st._out.put(("abort", grpc.StatusCode.UNAVAILABLE,
                                 "fake istiod: server stopped"))
        if server is not None:
            server.stop(grace).wait(5)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        if down_for:
            time.sleep(down_for)
        self.start()

    def close(self) -> None:
        """Stop, and delete the state dir if this object created it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> "FakeIstiod":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- authentication -------------------------------------------------------------------------

    @property
    def token(self) -> str | None:
        return self._token

    def set_token(self, token: str | None) -> None:
        """Change the expected token. Checked when a call/stream starts, not on open streams."""
        with self._lock:
            self._token = token

    def write_token_file(self, path: str | os.PathLike) -> Path:
        """Write the expected token to `path` (no trailing newline: ztunnel sends it verbatim)."""
        p = Path(path)
        p.write_text(self._token or "")
        return p

    def _authenticate(self, context, method: str) -> dict[str, str]:
        md = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        err = ""
        with self._lock:
            expected = self._token
        auth = md.get("authorization")
        if expected is not None:
            if auth is None:
                err = "missing authorization header"
            elif auth != f"Bearer {expected}":
                err = "bad bearer token"
        if not err and self.cluster_id is not None and md.get("clusterid") != self.cluster_id:
            err = f"clusterid {md.get('clusterid')!r} != {self.cluster_id!r}"
        with self._cond:
            self.calls.append(CallRecord(method=method, metadata=md, peer=context.peer(),
                                         ok=not err, error=err))
            self._cond.notify_all()
        if err:
            log.info("%s from %s rejected: %s", method, context.peer(), err)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, f"fake istiod: {err}")
        return md

    # -- resources ------------------------------------------------------------------------------

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def _put(self, entry_args: dict, only_if_changed: bool = False) -> list[str]:
        with self._lock:
            tu, name = entry_args["type_url"], entry_args["name"]
            old = self._entries[tu].get(name)
            if (only_if_changed and old is not None and old.value == entry_args["value"]
                    and old.any_type_url == entry_args["any_type_url"]):
                return []
            self._entries[tu][name] = _Entry(version=self._next_version(), **entry_args)
            return self._changed([(tu, name)])

    def put_workload(self, workload: dict | Any, *, only_if_changed: bool = False) -> list[str]:
        """Add or replace a Workload (dict in the proto's shape, or a message).

        Resource name = ``uid`` (default ``<cluster_id>//Pod/<namespace>/<name>``).
        Returns the nonces of the responses pushed to connected streams.
        """
        w = convert.fill(self.pb.workload.Workload(), workload, "workload")
        if not w.uid:
            if not w.name:
                raise convert.ConfigError("workload: needs a uid (or a name to derive one)")
            w.uid = f"{self.cluster_id or 'Kubernetes'}//Pod/{w.namespace}/{w.name}"
        aliases = [f"{w.network}/{ip}" for ip in map(_ip_str, w.addresses) if ip]
        value = self.pb.workload.Address(workload=w).SerializeToString()
        return self._put(dict(type_url=ADDRESS_TYPE, name=w.uid, value=value,
                              any_type_url=ADDRESS_TYPE, aliases=aliases, kind="workload"),
                         only_if_changed)

    def put_service(self, service: dict | Any, *, only_if_changed: bool = False) -> list[str]:
        """Add or replace a Service. Resource name = ``namespace/hostname``."""
        s = convert.fill(self.pb.workload.Service(), service, "service")
        if not s.hostname:
            raise convert.ConfigError("service: needs a hostname")
        aliases = [f"{a.network}/{ip}" for a in s.addresses if (ip := _ip_str(a.address))]
        value = self.pb.workload.Address(service=s).SerializeToString()
        return self._put(dict(type_url=ADDRESS_TYPE, name=f"{s.namespace}/{s.hostname}",
                              value=value, any_type_url=ADDRESS_TYPE, aliases=aliases,
                              kind="service"), only_if_changed)

    def put_authorization(self, policy: dict | Any, *,
                          only_if_changed: bool = False) -> list[str]:
        """Add or replace an Authorization. Resource name = ``namespace/name``."""
        a = convert.fill(self.pb.authorization.Authorization(), policy, "authorization")
        if not a.name:
            raise convert.ConfigError("authorization: needs a name")
        return self._put(dict(type_url=AUTHORIZATION_TYPE, name=f"{a.namespace}/{a.name}",
                              value=a.SerializeToString(), any_type_url=AUTHORIZATION_TYPE,
                              aliases=[], kind="authorization"), only_if_changed)

    def put_raw(self, type_url: str, name: str, value: bytes, *, aliases: Iterable[str] = (),
                any_type_url: str | None = None) -> list[str]:
        """Store arbitrary bytes as the resource `name` of `type_url` (e.g. for NACK tests).

        `value` is the serialized resource (the Any's value); `any_type_url`
        overrides the type URL inside the Any (default: `type_url`).
        """
        tu = type_url_of(type_url)
        if tu not in self._entries:
            raise ValueError(f"fake istiod serves only {TYPE_URLS}, not {tu}")
        return self._put(dict(type_url=tu, name=name, value=bytes(value),
                              any_type_url=any_type_url or tu, aliases=list(aliases),
                              kind="raw"))

    def remove(self, kind: str, name: str) -> list[str]:
        """Remove a resource ('workload'/'service'/'authorization' or a type URL, and its name).

        Returns the nonces pushed. Removing an unknown name still pushes a removal.
        """
        tu = type_url_of(kind)
        with self._lock:
            self._entries[tu].pop(name, None)
            self._version += 1
            return self._changed([(tu, name)])

    def clear(self) -> list[str]:
        """Remove every resource."""
        with self.batch() as nonces:
            for tu, entries in self._entries.items():
                for name in list(entries):
                    self.remove(tu, name)
        return nonces

    @contextlib.contextmanager
    def batch(self):
        """Group changes: ``with fake.batch() as nonces: ...`` pushes once at exit
        (one response per type per stream); `nonces` is filled then."""
        nonces: list[str] = []
        with self._lock:
            outer = self._batch is not None
            if not outer:
                self._batch = []
            try:
                yield nonces
            finally:
                if not outer:
                    changes, self._batch = self._batch, None
                    nonces.extend(self._changed(changes))

    def names(self, kind: str) -> list[str]:
        """Names of the stored resources of a type ('workload' lists workloads only, etc.)."""
        tu = type_url_of(kind)
        with self._lock:
            return sorted(n for n, e in self._entries[tu].items()
                          if kind not in ("workload", "service") or e.kind == kind)

    def get(self, kind: str, name: str):
        """The stored resource as a message (Address or Authorization), or None."""
        tu = type_url_of(kind)
        with self._lock:
            e = self._entries[tu].get(name)
        if e is None:
            return None
        cls = self.pb.workload.Address if tu == ADDRESS_TYPE else \
            self.pb.authorization.Authorization
        return cls.FromString(e.value)

    def version_of(self, kind: str, name: str) -> str | None:
        with self._lock:
            e = self._entries[type_url_of(kind)].get(name)
            return e.version if e else None

    # -- YAML / dict config ---------------------------------------------------------------------

    def apply_config(self, cfg: dict, *, replace: bool = True) -> list[str]:
        """Load ``{workloads: [...], services: [...], authorizations: [...]}``.

        With `replace`, resources not in `cfg` are removed; unchanged ones are
        not re-sent. All changes go out in one push per type.
        """
        cfg = cfg or {}
        unknown = set(cfg) - {"workloads", "services", "authorizations", "policies"}
        if unknown:
            raise convert.ConfigError(f"unknown top-level keys: {sorted(unknown)}")
        with self.batch() as nonces:
            before = {tu: set(e) for tu, e in self._entries.items()}
            seen: dict[str, set[str]] = {tu: set() for tu in TYPE_URLS}
            for w in cfg.get("workloads") or []:
                self.put_workload(w, only_if_changed=True)
            for s in cfg.get("services") or []:
                self.put_service(s, only_if_changed=True)
            for a in (cfg.get("authorizations") or []) + (cfg.get("policies") or []):
                self.put_authorization(a, only_if_changed=True)
            # names now present that came from cfg: recompute from the parsed objects
            for w in cfg.get("workloads") or []:
                seen[ADDRESS_TYPE].add(self._workload_name(w))
            for s in cfg.get("services") or []:
                sv = convert.fill(self.pb.workload.Service(), s)
                seen[ADDRESS_TYPE].add(f"{sv.namespace}/{sv.hostname}")
            for a in (cfg.get("authorizations") or []) + (cfg.get("policies") or []):
                av = convert.fill(self.pb.authorization.Authorization(), a)
                seen[AUTHORIZATION_TYPE].add(f"{av.namespace}/{av.name}")
            if replace:
                for tu in TYPE_URLS:
                    for name in before[tu] - seen[tu]:
                        self.remove(tu, name)
        return nonces

    def _workload_name(self, w) -> str:
        wm = convert.fill(self.pb.workload.Workload(), w)
        return wm.uid or f"{self.cluster_id or 'Kubernetes'}//Pod/{wm.namespace}/{wm.name}"

    def load_yaml(self, path: str | os.PathLike, *, replace: bool = True) -> list[str]:
        import yaml

        with open(path) as f:
            return self.apply_config(yaml.safe_load(f) or {}, replace=replace)

    # -- pushing --------------------------------------------------------------------------------

    def _resource_pb(self, e: _Entry):
        return self.pb.discovery.Resource(
            name=e.name, version=e.version, aliases=e.aliases,
            resource=any_pb2.Any(type_url=e.any_type_url, value=e.value))

    @staticmethod
    def _wants(sub: _Sub, name: str, aliases: Iterable[str]) -> bool:
        return sub.wildcard or name in sub.names or any(a in sub.names for a in aliases)

    def _changed(self, changes: list[tuple[str, str]]) -> list[str]:
        """Push `changes` (type_url, name) to every active stream. Lock held."""
        if self._batch is not None:
            self._batch.extend(changes)
            return []
        by_type: dict[str, list[str]] = {}
        for tu, name in changes:
            lst = by_type.setdefault(tu, [])
            if name not in lst:
                lst.append(name)
        nonces = []
        for st in self.streams:
            if not st.active:
                continue
            for tu, names in by_type.items():
                sub = st.subscriptions.get(tu)
                if sub is None:
                    continue
                resources, removed = [], []
                for name in names:
                    e = self._entries[tu].get(name)
                    if e is None:
                        if sub.wildcard or name in sub.names or name in st.sent.get(tu, ()):
                            removed.append(name)
                    elif self._wants(sub, name, e.aliases):
                        resources.append(e)
                if resources or removed:
                    nonces.append(self._send(st, tu, resources, removed))
        return nonces

    def _send(self, st: StreamRecord, tu: str, resources: list[_Entry],
              removed: list[str]) -> str:
        """Queue one response on `st`. Lock held."""
        nonce = f"{st.id}-{next(self._nonce_seq)}-{uuid.uuid4().hex[:8]}"
        resp = self.pb.discovery.DeltaDiscoveryResponse(
            type_url=tu, nonce=nonce, system_version_info=str(self._version),
            resources=[self._resource_pb(e) for e in resources],
            removed_resources=removed)
        st.nonces.add(nonce)
        st.sent.setdefault(tu, set()).update(e.name for e in resources)
        self.responses.append(ResponseRecord(
            stream_id=st.id, type_url=tu, nonce=nonce,
            resources=[(e.name, e.version) for e in resources], removed=list(removed)))
        self._cond.notify_all()
        st._out.put(resp)
        log.debug("stream %d: %s nonce=%s +%d -%d", st.id, tu.rsplit(".", 1)[-1], nonce,
                  len(resources), len(removed))
        return nonce

    def disconnect_streams(self, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
                           message: str = "fake istiod: disconnected by test") -> int:
        """End every active ADS stream with `code`; the server keeps running."""
        n = 0
        with self._lock:
            for st in self.streams:
                if st.active:
                    st._out.put(("abort", code, message))
                    n += 1
        return n

    # -- ADS ------------------------------------------------------------------------------------

    def _ads(self, request_iterator, context):
        md = self._authenticate(context, "DeltaAggregatedResources")
        if not self.xds_available:
            context.abort(grpc.StatusCode.UNAVAILABLE, "fake istiod: xDS unavailable (knob)")
        with self._cond:
            st = StreamRecord(next(self._sid), context.peer(), md)
            self.streams.append(st)
            self._cond.notify_all()
        log.info("stream %d opened from %s", st.id, st.peer)
        out = st._out
        context.add_callback(lambda: out.put(None))

        def reader():
            try:
                for req in request_iterator:
                    self._on_request(st, req)
            except Exception as e:  # stream cancelled or broken
                log.debug("stream %d reader ended: %r", st.id, e)
            finally:
                out.put(None)

        threading.Thread(target=reader, name=f"fake-istiod-ads-{st.id}", daemon=True).start()
        try:
            while True:
                try:
                    item = out.get(timeout=0.5)
                except queue.Empty:
                    if not context.is_active():
                        break
                    continue
                if item is None:
                    break
                if isinstance(item, tuple):
                    _, code, msg = item
                    context.abort(code, msg)
                yield item
        finally:
            with self._cond:
                st.active = False
                st.closed_at = time.time()
                self._cond.notify_all()
            log.info("stream %d closed", st.id)

    def _on_request(self, st: StreamRecord, req) -> None:
        with self._cond:
            st.requests.append(req)
            if req.HasField("node") and st.node_id is None:
                st.node_id = req.node.id
                st.node_cluster = req.node.cluster
                st.node_metadata = json_format.MessageToDict(req.node.metadata)
            tu = req.type_url
            if req.response_nonce:
                err = req.error_detail if req.HasField("error_detail") else None
                self.acks.append(AckRecord(
                    stream_id=st.id, node_id=st.node_id or "", type_url=tu,
                    nonce=req.response_nonce, nack=err is not None,
                    error=err.message if err is not None else "",
                    code=err.code if err is not None else 0,
                    known=req.response_nonce in st.nonces))
                if err is not None:
                    log.info("stream %d NACK %s: %s", st.id, req.response_nonce, err.message)
                self._cond.notify_all()
            if tu not in self._entries:
                log.warning("stream %d asked for unserved type %s", st.id, tu)
                return
            sub = st.subscriptions.get(tu)
            first = sub is None
            wildcard_now = False
            explicit: list[str] = []
            if first:
                sub = st.subscriptions[tu] = _Sub()
                st.initial_resource_versions[tu] = dict(req.initial_resource_versions)
                if not req.resource_names_subscribe and not req.resource_names_unsubscribe:
                    sub.wildcard = wildcard_now = True
            for n in req.resource_names_subscribe:
                if n == "*":
                    wildcard_now = wildcard_now or not sub.wildcard
                    sub.wildcard = True
                else:
                    sub.names.add(n)
                    explicit.append(n)
            for n in req.resource_names_unsubscribe:
                if n == "*":
                    sub.wildcard = False
                    wildcard_now = False
                else:
                    sub.names.discard(n)
                    if n in explicit:
                        explicit.remove(n)
            entries = self._entries[tu]
            irv = st.initial_resource_versions[tu] if first else {}
            resources: list[_Entry] = []
            removed: list[str] = []
            if wildcard_now:
                resources = [e for e in entries.values() if irv.get(e.name) != e.version]
                removed = [n for n in irv if n not in entries]
            else:
                by_alias = {a: e for e in entries.values() for a in e.aliases}
                for n in explicit:
                    e = entries.get(n) or by_alias.get(n)
                    if e is None:
                        removed.append(n)
                    elif e not in resources:
                        resources.append(e)
                if first:
                    removed += [n for n in irv if n not in entries and n not in removed]
            if first or resources or removed:
                nonce = self._send(st, tu, resources, removed)
                if first:
                    st.initial_nonces[tu] = nonce

    # -- waiting --------------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
        """Wait until `predicate()` (called with the lock held) is truthy; return its value."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                v = predicate()
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"fake istiod: timed out waiting for {what or predicate}")
                self._cond.wait(min(left, 0.5))

    def wait_ack(self, nonce: str | None = None, *, type_url: str | None = None,
                 stream: StreamRecord | int | None = None, nack: bool | None = None,
                 timeout: float = 10.0) -> AckRecord:
        """Wait for the ACK/NACK of `nonce` (or the first matching the other filters)."""
        sid = stream.id if isinstance(stream, StreamRecord) else stream
        tu = type_url_of(type_url) if type_url else None

        def find():
            for a in self.acks:
                if ((nonce is None or a.nonce == nonce) and (tu is None or a.type_url == tu)
                        and (sid is None or a.stream_id == sid)
                        and (nack is None or a.nack == nack)):
                    return a
            return None

        return self.wait_for(find, timeout, f"ack of nonce {nonce!r}")

    def wait_acks(self, nonces: Iterable[str], timeout: float = 10.0) -> list[AckRecord]:
        deadline = time.monotonic() + timeout
        return [self.wait_ack(n, timeout=max(0.0, deadline - time.monotonic())) for n in nonces]

    def wait_stream(self, *, count: int = 1, active: bool = True,
                    timeout: float = 10.0) -> StreamRecord:
        """Wait until `count` streams (active ones if `active`) were seen; return the last."""
        def find():
            sts = [s for s in self.streams if s.active or not active]
            return sts[count - 1] if len(sts) >= count else None

        return self.wait_for(find, timeout, f"{count} ADS stream(s)")

    def wait_synced(self, stream: StreamRecord | None = None, *,
                    type_urls: Iterable[str] = TYPE_URLS, timeout: float = 10.0) -> StreamRecord:
        """Wait until a stream (the newest active one by default) has ACKed or NACKed the first
        response of each of `type_urls`."""
        tus = [type_url_of(t) for t in type_urls]

        def find():
            cands = [stream] if stream is not None else \
                [s for s in reversed(self.streams) if s.active]
            for s in cands:
                done = {a.nonce for a in self.acks if a.stream_id == s.id}
                if all(t in s.initial_nonces and s.initial_nonces[t] in done for t in tus):
                    return s
            return None

        return self.wait_for(find, timeout, "initial xDS sync")

    def wait_csr(self, count: int = 1, timeout: float = 10.0) -> CsrRecord:
        """Wait until `count` CreateCertificate calls were recorded; return the last."""
        return self.wait_for(
            lambda: self.csr_requests[count - 1] if len(self.csr_requests) >= count else None,
            timeout, f"{count} CSR(s)")

    @property
    def nacks(self) -> list[AckRecord]:
        with self._lock:
            return [a for a in self.acks if a.nack]

    def responses_for(self, name: str) -> list[ResponseRecord]:
        """Responses that carried resource `name` (added/updated or removed)."""
        with self._lock:
            return [r for r in self.responses if name in r.names or name in r.removed]

    # -- CA -------------------------------------------------------------------------------------

    def spiffe_id(self, namespace: str, service_account: str) -> str:
        return f"spiffe://{self.trust_domain}/ns/{namespace}/sa/{service_account}"

    def _create_certificate(self, request, context):
        md = self._authenticate(context, "CreateCertificate")
        meta = json_format.MessageToDict(request.metadata) if request.HasField("metadata") else {}
        imp = meta.get("ImpersonatedIdentity")
        rec = CsrRecord(requested_sans=[], impersonated_identity=imp,
                        validity_duration=request.validity_duration, metadata=meta,
                        call_metadata=md, csr_pem=request.csr)
        with self._cond:
            self.csr_requests.append(rec)
            self._cond.notify_all()

        def fail(code: grpc.StatusCode, msg: str):
            rec.error = code.name
            log.info("CreateCertificate failed: %s %s", code.name, msg)
            context.abort(code, f"fake istiod: {msg}")

        try:
            csr = x509.load_pem_x509_csr(request.csr.encode())
        except (ValueError, TypeError) as e:
            fail(grpc.StatusCode.INVALID_ARGUMENT, f"cannot parse CSR: {e}")
        rec.requested_sans = pki.csr_uri_sans(csr)
        if not self.ca_available:
            fail(grpc.StatusCode.UNAVAILABLE, "CA unavailable (knob)")
        if not csr.is_signature_valid:
            fail(grpc.StatusCode.INVALID_ARGUMENT, "CSR signature invalid")
        if imp is not None and not self.ca_allow_impersonation:
            fail(grpc.StatusCode.UNAUTHENTICATED, "impersonation not allowed (knob)")
        san = imp if imp is not None else (rec.requested_sans[0] if rec.requested_sans else None)
        if not san:
            fail(grpc.StatusCode.INVALID_ARGUMENT, "CSR has no URI SAN")
        if self.ca_wrong_san:
            san = self.ca_wrong_san if isinstance(self.ca_wrong_san, str) else \
                self.spiffe_id("fake-istiod-wrong", "wrong-sa")
        validity = self.ca_validity_override or request.validity_duration or DEFAULT_VALIDITY_S
        issued = self.ca.sign_csr(csr, san, int(validity), backdate_s=self.ca_backdate_s)
        rec.issued_san, rec.validity_issued, rec.cert_chain = san, int(validity), issued.chain
        log.info("issued %s for %ds", san, validity)
        return self.pb.ca.IstioCertificateResponse(cert_chain=issued.chain)
