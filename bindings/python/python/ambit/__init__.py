"""ambit: an embeddable service-mesh data plane, wire-compatible with Istio's ambient mode.

Identity (SPIFFE ids, a built-in CA), Istio authorization decisions (L4 and the waypoint's L7),
JWT RequestAuthentication, Gateway API HTTPRoute decisions, HBONE tunnels as ordinary sockets
(dialing and listening), and node proxies and waypoints you can start from a test.
"""

from __future__ import annotations

from ambit._native import (
    AmbitError,
    Authenticators,
    AuthnResult,
    CertificateAuthority,
    ConfigError,
    Credentials,
    Decision,
    IdentityError,
    L7Decision,
    L7Policies,
    NodeProxy,
    Policy,
    RequestAuth,
    Retry,
    RouteResult,
    Router,
    SpiffeId,
    TlsError,
    TunnelError,
    Waypoint,
    __version__,
)
from ambit import hbone
from ambit.hbone import AsyncHboneServer, HboneListener

__all__ = [
    "AsyncHboneServer",
    "AmbitError",
    "Authenticators",
    "AuthnResult",
    "CertificateAuthority",
    "ConfigError",
    "Credentials",
    "Decision",
    "HboneListener",
    "IdentityError",
    "L7Decision",
    "L7Policies",
    "NodeProxy",
    "Policy",
    "RequestAuth",
    "Retry",
    "RouteResult",
    "Router",
    "SpiffeId",
    "TlsError",
    "TunnelError",
    "Waypoint",
    "__version__",
    "hbone",
]
