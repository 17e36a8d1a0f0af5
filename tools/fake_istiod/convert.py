"""Plain dicts (from Python tests or YAML) -> protobuf messages.

The dict shape is the proto's own: keys are field names in snake_case or
camelCase (``service_account`` / ``serviceAccount``), enum values are names
(case and underscores ignored: ``HBONE``, ``hbone``, ``WorkloadSelector``)
or numbers, nested messages are nested dicts, repeated fields are lists (a
single value is accepted too). Conveniences on top, so files stay short:

* every ``bytes`` field (they are all IP addresses in these APIs) takes an IP
  string (``"10.0.0.1"``, ``"::1"``); real ``bytes`` are passed through
  unchanged, so invalid lengths can be sent on purpose;
* ``NetworkAddress``: ``"[network/]IP[/length]"``;
* ``NamespacedHostname``: ``"namespace/hostname"``;
* ``GatewayAddress``: ``"network/IP"`` or ``"namespace/hostname"`` (decided by
  whether the part after the last ``/`` is an IP), or a dict; the
  ``hbone_mtls_port`` defaults to 15008 when the key is absent;
* ``PortList`` (values of ``Workload.services``): a dict ``{ports: [...]}``, a
  list of ports, or a mapping ``{service_port: target_port}``;
* ``Port``: a dict, an int (same service and target port) or ``"80:8080"``;
* authorization ``Address``: ``"IP"`` or ``"IP/len"`` (a bare IP is /32 or /128);
* ``StringMatch``: a dict (``{exact: x}``, ``{prefix: x}``, ``{suffix: x}``,
  ``{presence: {}}``) or a string with Istio's wildcard rules (``"*"`` =
  presence, ``"x*"`` = prefix, ``"*x"`` = suffix, otherwise exact);
* ``Rule`` may be a list of clauses, ``Clause`` a list of matches;
* wrapper types (``capacity``) take the bare number; ``Empty`` takes anything.

Unknown keys raise ``ValueError`` naming the path.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
from typing import Any, Callable

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

DEFAULT_HBONE_PORT = 15008


class ConfigError(ValueError):
    pass


def _is_repeated(f: FieldDescriptor) -> bool:
    rep = getattr(f, "is_repeated", None)
    if rep is not None:
        return bool(rep)
    return f.label == FieldDescriptor.LABEL_REPEATED  # older protobuf


def _is_map(f: FieldDescriptor) -> bool:
    return f.message_type is not None and f.message_type.GetOptions().map_entry


def _norm(s: str) -> str:
    return s.replace("_", "").replace("-", "").lower()


def _find_field(desc, key: str, path: str) -> FieldDescriptor:
    for f in desc.fields:
        if key == f.name or key == f.json_name:
            return f
    for f in desc.fields:
        if _norm(f.name) == _norm(key):
            return f
    raise ConfigError(f"{path}: unknown field {key!r} in {desc.full_name} "
                      f"(known: {', '.join(f.name for f in desc.fields)})")


def ip_bytes(value: Any, path: str = "address") -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, list) and all(isinstance(x, int) for x in value):
        return bytes(value)
    try:
        return ipaddress.ip_address(str(value)).packed
    except ValueError as e:
        raise ConfigError(f"{path}: not an IP address: {value!r}") from e


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


def _split_network_address(s: str, path: str) -> dict:
    """"[network/]IP[/length]" -> NetworkAddress dict."""
    parts = s.split("/")
    if _is_ip(parts[-1]):
        return {"network": "/".join(parts[:-1]), "address": ip_bytes(parts[-1], path)}
    if len(parts) >= 2 and parts[-1].isdigit() and _is_ip(parts[-2]):
        return {"network": "/".join(parts[:-2]), "address": ip_bytes(parts[-2], path),
                "length": int(parts[-1])}
    raise ConfigError(f"{path}: expected [network/]IP[/length], got {s!r}")


# -- per-message shortcuts: value -> dict (or None when the hook filled msg itself) ----------

def _h_network_address(v, msg, path):
    if isinstance(v, str):
        return _split_network_address(v, path)
    return v


def _h_namespaced_hostname(v, msg, path):
    if isinstance(v, str):
        ns, sep, host = v.partition("/")
        if not sep:
            raise ConfigError(f"{path}: expected namespace/hostname, got {v!r}")
        return {"namespace": ns, "hostname": host}
    return v


def _h_gateway_address(v, msg, path):
    if isinstance(v, str):
        last = v.rsplit("/", 1)[-1]
        v = {"address": v} if _is_ip(last) or last.isdigit() else {"hostname": v}
    if isinstance(v, dict) and not any(_norm(str(k)) == "hbonemtlsport" for k in v):
        v = {**v, "hbone_mtls_port": DEFAULT_HBONE_PORT}
    return v


def _h_port(v, msg, path):
    if isinstance(v, bool):
        raise ConfigError(f"{path}: not a port: {v!r}")
    if isinstance(v, int):
        return {"service_port": v, "target_port": v}
    if isinstance(v, str):
        a, sep, b = v.partition(":")
        try:
            return {"service_port": int(a), "target_port": int(b if sep else a)}
        except ValueError as e:
            raise ConfigError(f"{path}: expected 'service:target', got {v!r}") from e
    return v


def _h_port_list(v, msg, path):
    if isinstance(v, list):
        return {"ports": v}
    if isinstance(v, dict) and not any(_norm(str(k)) == "ports" for k in v):
        return {"ports": [{"service_port": int(k), "target_port": int(t)} for k, t in v.items()]}
    return v


def _h_authz_address(v, msg, path):
    if isinstance(v, str):
        ip, sep, length = v.partition("/")
        raw = ip_bytes(ip, path)
        return {"address": raw, "length": int(length) if sep else len(raw) * 8}
    return v


def _h_string_match(v, msg, path):
    if isinstance(v, str):
        if v == "*":
            return {"presence": {}}
        if v.startswith("*"):
            return {"suffix": v[1:]}
        if v.endswith("*"):
            return {"prefix": v[:-1]}
        return {"exact": v}
    return v


def _h_rule(v, msg, path):
    return {"clauses": v} if isinstance(v, list) else v


def _h_clause(v, msg, path):
    return {"matches": v} if isinstance(v, list) else v


def _h_empty(v, msg, path):
    msg.SetInParent()
    return None


def _h_wrapper(v, msg, path):
    return v if isinstance(v, dict) else {"value": v}


def _h_json(v, msg, path):
    json_format.ParseDict(v, msg)
    return None


def _h_duration(v, msg, path):
    if isinstance(v, (int, float)):
        msg.FromTimedelta(_dt.timedelta(seconds=v))
    else:
        msg.FromJsonString(str(v))
    return None


_HOOKS: dict[str, Callable] = {
    "istio.workload.NetworkAddress": _h_network_address,
    "istio.workload.NamespacedHostname": _h_namespaced_hostname,
    "istio.workload.GatewayAddress": _h_gateway_address,
    "istio.workload.Port": _h_port,
    "istio.workload.PortList": _h_port_list,
    "istio.security.Address": _h_authz_address,
    "istio.security.StringMatch": _h_string_match,
    "istio.security.Rule": _h_rule,
    "istio.security.Clause": _h_clause,
    "google.protobuf.Empty": _h_empty,
    "google.protobuf.Any": _h_json,
    "google.protobuf.Struct": _h_json,
    "google.protobuf.Duration": _h_duration,
}
for _w in ("UInt32Value", "Int32Value", "UInt64Value", "Int64Value", "BoolValue",
           "StringValue", "BytesValue", "DoubleValue", "FloatValue"):
    _HOOKS[f"google.protobuf.{_w}"] = _h_wrapper


def _scalar(f: FieldDescriptor, v: Any, path: str):
    t = f.type
    if t == FieldDescriptor.TYPE_BYTES:
        return ip_bytes(v, path)
    if t == FieldDescriptor.TYPE_ENUM:
        if isinstance(v, bool):
            raise ConfigError(f"{path}: expected {f.enum_type.full_name} name, got {v!r}")
        if isinstance(v, int):
            return v
        want = _norm(str(v))
        for ev in f.enum_type.values:
            if _norm(ev.name) == want:
                return ev.number
        raise ConfigError(f"{path}: {v!r} is not one of "
                          f"{', '.join(e.name for e in f.enum_type.values)}")
    if t == FieldDescriptor.TYPE_BOOL:
        if isinstance(v, str):
            if v.lower() in ("true", "yes", "1"):
                return True
            if v.lower() in ("false", "no", "0"):
                return False
            raise ConfigError(f"{path}: not a boolean: {v!r}")
        return bool(v)
    if t == FieldDescriptor.TYPE_STRING:
        if isinstance(v, (dict, list)):
            raise ConfigError(f"{path}: expected a string, got {v!r}")
        return str(v)
    if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return float(v)
    try:
        return int(v)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{path}: expected an integer, got {v!r}") from e


def fill(msg: Message, value: Any, path: str = "") -> Message:
    """Fill `msg` from `value` (dict or shortcut); returns `msg`."""
    path = path or msg.DESCRIPTOR.name
    if isinstance(value, Message):
        msg.CopyFrom(value)
        return msg
    hook = _HOOKS.get(msg.DESCRIPTOR.full_name)
    if hook is not None:
        value = hook(value, msg, path)
        if value is None:
            return msg
    if value is None:
        msg.SetInParent()
        return msg
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a mapping for {msg.DESCRIPTOR.full_name}, "
                          f"got {value!r}")
    msg.SetInParent()
    for key, v in value.items():
        f = _find_field(msg.DESCRIPTOR, str(key), path)
        _set(msg, f, v, f"{path}.{key}")
    return msg


def _set(msg: Message, f: FieldDescriptor, v: Any, path: str) -> None:
    if _is_map(f):
        if not isinstance(v, dict):
            raise ConfigError(f"{path}: expected a mapping")
        target = getattr(msg, f.name)
        kf = f.message_type.fields_by_name["key"]
        vf = f.message_type.fields_by_name["value"]
        for k, item in v.items():
            key = _scalar(kf, k, f"{path}[{k}]")
            if vf.message_type is not None:
                fill(target[key], item, f"{path}[{k}]")
            else:
                target[key] = _scalar(vf, item, f"{path}[{k}]")
        return
    if _is_repeated(f):
        items = v if isinstance(v, list) else [v]
        target = getattr(msg, f.name)
        for i, item in enumerate(items):
            if f.message_type is not None:
                fill(target.add(), item, f"{path}[{i}]")
            else:
                target.append(_scalar(f, item, f"{path}[{i}]"))
        return
    if f.message_type is not None:
        fill(getattr(msg, f.name), v, path)
        return
    setattr(msg, f.name, _scalar(f, v, path))
