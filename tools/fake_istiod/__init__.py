"""A fake istiod for tests: delta xDS (Workload API + Authorization) and the Istio CA, over TLS.

    from tools.fake_istiod import FakeIstiod

    with FakeIstiod(trust_domain="cluster.local", token="t0k3n", cluster_id="Kubernetes") as fake:
        fake.put_workload({...})
        ...

See README.md in this directory.
"""

from .convert import ConfigError
from .server import (
    ADDRESS_TYPE,
    AUTHORIZATION_TYPE,
    TYPE_URLS,
    AckRecord,
    CallRecord,
    CsrRecord,
    FakeIstiod,
    ResponseRecord,
    StreamRecord,
    type_url_of,
)

__all__ = [
    "ADDRESS_TYPE",
    "AUTHORIZATION_TYPE",
    "TYPE_URLS",
    "AckRecord",
    "CallRecord",
    "ConfigError",
    "CsrRecord",
    "FakeIstiod",
    "ResponseRecord",
    "StreamRecord",
    "type_url_of",
]
