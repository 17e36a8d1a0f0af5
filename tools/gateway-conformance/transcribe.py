#!/usr/bin/env python3
"""Transcribe the Gateway API conformance suite's route tests into ambit's case table.

Reads kubernetes-sigs/gateway-api at a pinned commit (a git checkout or bare mirror, read with
`git show`, so nothing is checked out) and writes `testdata/gateway-api/conformance.yaml`: for
every HTTPRoute, GRPCRoute and mesh test, its manifests (the route YAML under test) and the
requests it makes with the results it expects, as data. The Go sources are read, never copied.

    git clone --bare https://github.com/kubernetes-sigs/gateway-api .tools/gateway-api
    python3 tools/gateway-conformance/transcribe.py [--repo PATH] [--out PATH]
    python3 tools/gateway-conformance/transcribe.py --check   # exit 1 if the file is stale
    python3 tools/gateway-conformance/transcribe.py --table   # the README's conformance table

The Go test bodies are parsed with a small reader for the subset they use (composite
literals, `:=` bindings, `for range` loops, calls); what it cannot turn into data is kept with
an `untranscribed` reason, so no test is dropped silently. `--table` also reads
`testdata/gateway-api/applicability.yaml` (which tests do not apply to a waypoint, and which
do not pass yet) and prints one Markdown row per test.

To move to a newer suite: change TAG and COMMIT, re-run, and fix what the route tests report.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TAG = "v1.6.1"
COMMIT = "8bb74df00e56ec8f944d48c25e6c1c9c2f6848e3"
UPSTREAM = "https://github.com/kubernetes-sigs/gateway-api"
ROOT = Path(__file__).resolve().parents[2]
# A checkout (or bare clone) of the suite: $GATEWAY_API_REPO, else .tools/gateway-api in this
# repository (`git clone --bare https://github.com/kubernetes-sigs/gateway-api .tools/gateway-api`).
DEFAULT_MIRROR = Path(os.environ.get("GATEWAY_API_REPO") or ROOT / ".tools/gateway-api")
OUT = ROOT / "testdata/gateway-api/conformance.yaml"
APPLICABILITY = ROOT / "testdata/gateway-api/applicability.yaml"
README_BEGIN = "<!-- conformance-table:begin (tools/gateway-conformance/transcribe.py --table) -->"
README_END = "<!-- conformance-table:end -->"

# Packages whose exported constants the tests use (namespaces, backend and app names, features).
CONSTANT_DIRS = [
    "conformance/utils/suite",
    "conformance/utils/echo",
    "conformance/utils/http",
    "conformance/utils/roundtripper",
    "pkg/features",
]

# gRPC status names → the HTTP status a waypoint answers with for them (gRPC's HTTP mapping).
GRPC_TO_HTTP = {"OK": 200, "Unimplemented": 404, "Unavailable": 503, "Internal": 500, "NotFound": 404}


# --- git --------------------------------------------------------------------------------------


class Repo:
    def __init__(self, path: Path) -> None:
        self.path = path

    def show(self, rel: str) -> str:
        out = subprocess.run(
            ["git", "-C", str(self.path), "show", f"{COMMIT}:{rel}"],
            check=True, capture_output=True, text=True,
        )
        return out.stdout

    def ls(self, prefix: str) -> list[str]:
        out = subprocess.run(
            ["git", "-C", str(self.path), "ls-tree", "-r", "--name-only", COMMIT, prefix],
            check=True, capture_output=True, text=True,
        )
        return out.stdout.split()


# --- a reader for the Go the tests are written in ----------------------------------------------

TOKEN = re.compile(
    r"""(?P<ws>\s+)|(?P<comment>//[^\n]*|/\*.*?\*/)|(?P<raw>`[^`]*`)|(?P<str>"(?:\\.|[^"\\])*")"""
    r"""|(?P<num>\d+(?:\.\d+)?)|(?P<ident>[A-Za-z_][A-Za-z_0-9]*)|(?P<op>:=|\.\.\.|&&|\|\||==|!=|<=|>=|[-+*/%&|!<>=(){}\[\],.;:])""",
    re.S,
)


@dataclass
class Tok:
    kind: str
    text: str


def tokens(src: str) -> list[Tok]:
    out: list[Tok] = []
    pos = 0
    while pos < len(src):
        m = TOKEN.match(src, pos)
        if m is None:
            raise ValueError(f"cannot read Go at {src[pos:pos + 40]!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind in ("ws", "comment"):
            continue
        out.append(Tok(kind, m.group()))
    return out


def go_string(t: Tok) -> str:
    if t.kind == "raw":
        return t.text[1:-1]
    return bytes(t.text[1:-1], "utf-8").decode("unicode_escape")


@dataclass
class Ref:
    """An identifier that was not resolved to a value (a variable, a package-qualified name)."""

    name: str


@dataclass
class Call:
    func: str
    args: list[Any]


@dataclass
class Lit:
    """A composite literal: its type name and fields (keyed) or elements (positional)."""

    type: str
    fields: dict[str, Any] = field(default_factory=dict)
    items: list[Any] = field(default_factory=list)


class Parser:
    """Expressions over a token list; `env` resolves identifiers (locals, then constants)."""

    def __init__(self, toks: list[Tok], env: dict[str, Any]) -> None:
        self.t = toks
        self.i = 0
        self.env = env

    def peek(self, k: int = 0) -> Tok | None:
        j = self.i + k
        return self.t[j] if j < len(self.t) else None

    def take(self, text: str | None = None) -> Tok:
        tok = self.t[self.i]
        if text is not None and tok.text != text:
            raise ValueError(f"expected {text!r}, got {tok.text!r}")
        self.i += 1
        return tok

    def at(self, text: str) -> bool:
        p = self.peek()
        return p is not None and p.text == text

    def type_name(self) -> str:
        """A type: `pkg.Name`, `[]T`, `map[K]V`, `*T`, generic `T[int32]`."""
        parts = []
        while True:
            p = self.peek()
            if p is None:
                break
            if p.text == "[":
                self.take("[")
                if not self.at("]"):
                    parts.append("[" + self.type_name() + "]")
                    self.take("]")
                else:
                    self.take("]")
                    parts.append("[]")
                continue
            if p.text == "*":
                self.take()
                parts.append("*")
                continue
            if p.text == "map":
                self.take()
                self.take("[")
                k = self.type_name()
                self.take("]")
                parts.append(f"map[{k}]")
                continue
            if p.text == "struct" and self.peek(1) is not None and self.peek(1).text == "{":  # type: ignore[union-attr]
                self.take()
                depth = 0
                while True:
                    t = self.take()
                    depth += {"{": 1, "}": -1}.get(t.text, 0)
                    if depth == 0:
                        break
                parts.append("struct")
                break
            if p.kind == "ident":
                name = self.take().text
                while self.at(".") and self.peek(1) is not None and self.peek(1).kind == "ident":  # type: ignore[union-attr]
                    self.take(".")
                    name += "." + self.take().text
                parts.append(name)
            break
        return "".join(parts)

    def literal_body(self, type_: str) -> Lit:
        self.take("{")
        lit = Lit(type_)
        while not self.at("}"):
            if self.at("{"):
                lit.items.append(self.literal_body(""))
            else:
                key_start = self.i
                p, q = self.peek(), self.peek(1)
                if p is not None and p.kind == "ident" and q is not None and q.text == ":":
                    self.i += 2
                    lit.fields[p.text] = self.element()
                else:
                    self.i = key_start
                    v = self.element()
                    if self.at(":"):
                        self.take(":")
                        key = v if isinstance(v, (str, int)) else repr(v)
                        lit.fields[key] = self.element()  # type: ignore[index]
                    else:
                        lit.items.append(v)
            if self.at(","):
                self.take(",")
        self.take("}")
        return lit

    def element(self) -> Any:
        if self.at("{"):
            return self.literal_body("")
        return self.expr()

    def expr(self) -> Any:
        left = self.unary()
        while self.at("+"):
            self.take("+")
            right = self.unary()
            left = left + right if isinstance(left, str) and isinstance(right, str) else Ref(f"{left}+{right}")
        return left

    def unary(self) -> Any:
        p = self.peek()
        if p is None:
            raise ValueError("unexpected end")
        if p.text == "&":
            self.take()
            return self.unary()
        if p.text == "-" and self.peek(1) is not None and self.peek(1).kind == "num":  # type: ignore[union-attr]
            self.take()
            return -self.number(self.take())
        if p.kind in ("str", "raw"):
            self.take()
            return go_string(p)
        if p.kind == "num":
            return self.number(self.take())
        if p.text in ("[", "map", "*"):
            t = self.type_name()
            if self.at("{"):
                return self.literal_body(t)
            raise ValueError(f"type {t} without a literal")
        if p.text == "(":
            self.take("(")
            v = self.expr()
            self.take(")")
            return v
        if p.text == "func":
            return self.func_literal()
        if p.kind == "ident":
            return self.operand()
        raise ValueError(f"unexpected {p.text!r}")

    def number(self, t: Tok) -> int | float:
        return float(t.text) if "." in t.text else int(t.text)

    def func_literal(self) -> Ref:
        self.take("func")
        depth = 0
        while True:
            t = self.take()
            if t.text == "{":
                depth += 1
            elif t.text == "}":
                depth -= 1
                if depth == 0:
                    return Ref("func")

    def operand(self) -> Any:
        start = self.i
        name = self.take().text
        while self.at(".") and self.peek(1) is not None and self.peek(1).kind == "ident":  # type: ignore[union-attr]
            self.take(".")
            name += "." + self.take().text
        if name in ("true", "false"):
            return name == "true"
        if name == "nil":
            return None
        # A generic instantiation `ptr.To[int32](50)`.
        if (
            self.at("[") and self.peek(1) is not None and self.peek(1).kind == "ident"  # type: ignore[union-attr]
            and self.peek(2) is not None and self.peek(2).text == "]"  # type: ignore[union-attr]
            and self.peek(3) is not None and self.peek(3).text == "("  # type: ignore[union-attr]
        ):
            self.i += 3
        if self.at("{") and (name[:1].isupper() or "." in name or name in self.env.get("__types__", ())):
            return self.literal_body(name)
        if self.at("("):
            self.take("(")
            args = []
            while not self.at(")"):
                args.append(self.expr())
                if self.at(","):
                    self.take(",")
                if self.at("..."):
                    self.take("...")
            self.take(")")
            return self.call(name, args)
        if self.at("["):
            self.take("[")
            idx = self.expr()
            self.take("]")
            base = self.env.get(name)
            if isinstance(base, Lit) and isinstance(idx, int) and idx < len(base.items):
                return base.items[idx]
            if isinstance(base, Lit):
                return Ref(f"elem:{name}")
            return Ref(f"{name}[{idx}]")
        del start
        return self.resolve(name)

    def call(self, name: str, args: list[Any]) -> Any:
        last = name.rsplit(".", 1)[-1]
        if name == "append" and args:
            out = Lit(args[0].type if isinstance(args[0], Lit) else "")
            for n, a in enumerate(args):
                # `append(xs, ...)` onto a `make(...)` (or an unread binding): start empty.
                if isinstance(a, Call) and a.func == "make" or (n == 0 and isinstance(a, Ref)):
                    continue
                if isinstance(a, Lit) and (a.type.startswith("[]") or (not a.type and not a.fields)):
                    out.items += a.items
                elif isinstance(a, Lit):
                    out.items.append(a)
                elif a is not None:
                    out.items.append(a)
            return out
        # Conversions and pointer helpers that only wrap a value.
        if last in ("string", "int", "int32", "int64", "float64", "To", "Ptr", "PathMatchTypePtr", "new") and len(args) == 1:
            return args[0]
        if last in ("ObjectName", "SectionName", "Namespace", "Kind", "Group", "PortNumber", "HTTPMethod", "Hostname") and len(args) == 1:
            return args[0]
        return Call(name, args)

    def resolve(self, name: str) -> Any:
        if name in self.env:
            return self.env[name]
        last = name.rsplit(".", 1)[-1]
        if "." in name and last in self.env.get("__consts__", {}):
            return self.env["__consts__"][last]
        return Ref(name)


def constants(repo: Repo) -> dict[str, Any]:
    """Exported string and integer constants (and `var` strings) of the helper packages, by
    bare name; feature names resolve to their string value."""
    out: dict[str, Any] = {}
    decl = re.compile(r"^\s*([A-Z][A-Za-z0-9_]*)\s*(?:[A-Za-z_.]+\s*)?=\s*(\"(?:\\.|[^\"\\])*\"|\d+)\s*$", re.M)
    for d in CONSTANT_DIRS:
        for path in repo.ls(d):
            if not path.endswith(".go") or path.endswith("_test.go"):
                continue
            for m in decl.finditer(repo.show(path)):
                v = m.group(2)
                out.setdefault(m.group(1), v[1:-1] if v.startswith('"') else int(v))
    return out


# --- a test's Go ----------------------------------------------------------------------------


def find_tests(src: str) -> list[tuple[str, int, int]]:
    """(variable, start, end) token spans of each `var X = <pkg>.ConformanceTest{...}`."""
    toks = tokens(src)
    spans = []
    for i, t in enumerate(toks):
        if t.text == "ConformanceTest" and i >= 4 and toks[i - 1].text == "." and toks[i + 1].text == "{" and toks[i - 3].text == "=":
            spans.append((toks[i - 4].text, i + 1))
    return [(name, start, 0) for name, start in spans]


def block(toks: list[Tok], start: int) -> int:
    """The index just past the `{...}` block opening at `start`."""
    depth = 0
    for j in range(start, len(toks)):
        if toks[j].text == "{":
            depth += 1
        elif toks[j].text == "}":
            depth -= 1
            if depth == 0:
                return j + 1
    raise ValueError("unbalanced braces")


@dataclass
class Body:
    """What a Test func's statements bind and call, read in order."""

    env: dict[str, Any]
    # (func, args, enclosing loop slices, the bindings in force at the call)
    calls: list[tuple[str, list[Any], list[str], dict[str, Any]]] = field(default_factory=list)
    loops: list[tuple[str, str]] = field(default_factory=list)  # (loop variable, ranged slice)
    conditions: list[str] = field(default_factory=list)


def read_body(toks: list[Tok], consts: dict[str, Any], outer: Body | None = None) -> Body:
    """Walks the statements of a func body: `a := expr` / `a = expr` / `var (...)` bindings
    are evaluated; calls are recorded with the `range` loops they are in. A loop over a list
    of strings is unrolled: its body is read once per element (into `outer`'s calls)."""
    if outer is None:
        local_types = {toks[k + 1].text for k in range(len(toks) - 2) if toks[k].text == "type" and toks[k + 2].text == "struct"}
        env: dict[str, Any] = {"__consts__": consts, "__types__": local_types}
        body = Body(env)
    else:
        env = outer.env
        body = outer
    i = 0
    loop_stack: list[tuple[str, int]] = []  # (slice, end index)

    def parse_at(j: int) -> tuple[Any, int]:
        p = Parser(toks, env)
        p.i = j
        v = p.expr()
        return v, p.i

    while i < len(toks):
        while loop_stack and i >= loop_stack[-1][1]:
            loop_stack.pop()
        t = toks[i]
        # for i := range xs {   /   for _, tc := range xs {
        if t.text == "for":
            j = i + 1
            names = []
            while toks[j].text not in ("{",) and toks[j].text != "range":
                if toks[j].kind == "ident":
                    names.append(toks[j].text)
                j += 1
            if toks[j].text == "range":
                slice_name = toks[j + 1].text
                k = j + 2
                while toks[k].text == ".":
                    slice_name += "." + toks[k + 1].text
                    k += 2
                if toks[k].text == "{":
                    end = block(toks, k)
                    ranged = env.get(slice_name)
                    values = [n for n in names if n != "_"]
                    if (
                        isinstance(ranged, Lit) and ranged.items and len(names) == 2 and values
                        and all(isinstance(x, str) for x in ranged.items)
                    ):
                        saved = dict(env)
                        for idx, item in enumerate(ranged.items):
                            env[names[0]] = idx
                            env[names[1]] = item
                            read_body(toks[k + 1:end - 1], consts, body)
                        env.clear()
                        env.update(saved)
                        i = end
                        continue
                    loop_stack.append((slice_name, end))
                    for n in names:
                        if n != "_":
                            env[n] = Ref(f"elem:{slice_name}")
                            body.loops.append((n, slice_name))
                    i = k + 1
                    continue
            i += 1
            continue
        if t.kind == "ident" and i + 1 < len(toks) and toks[i + 1].text in (":=", "="):
            name = t.text
            try:
                v, end = parse_at(i + 2)
                env[name] = v
                if isinstance(v, Call):
                    body.calls.append((v.func, v.args, [s for s, _ in loop_stack], dict(env)))
                i = end if not any(tok.text == "func" for tok in toks[i:end]) else i + 2
                continue
            except (ValueError, IndexError):
                i += 2
                continue
        # `a, b := expr`: bind the first name.
        if t.kind == "ident" and i + 3 < len(toks) and toks[i + 1].text == "," and toks[i + 3].text == ":=":
            try:
                v, end = parse_at(i + 4)
                env[t.text] = v
                i = end
                continue
            except (ValueError, IndexError):
                i += 4
                continue
        if t.kind == "ident" and i + 1 < len(toks) and toks[i + 1].text in ("(", "."):
            try:
                v, end = parse_at(i)
            except (ValueError, IndexError):
                i += 1
                continue
            if isinstance(v, Call):
                body.calls.append((v.func, v.args, [s for s, _ in loop_stack], dict(env)))
            # A call taking a closure (`t.Run(name, func(t) {...})`): read on inside it.
            if any(tok.text == "func" for tok in toks[i:end]):
                i += 1
                continue
            i = max(end, i + 1)
            continue
        i += 1
    return body


def conditions_in(toks: list[Tok], consts: dict[str, Any]) -> list[str]:
    """Every `metav1.Condition{...}` literal as `Type=Status Reason`."""
    out = []
    for i, t in enumerate(toks):
        if t.text == "Condition" and i >= 2 and toks[i - 1].text == "." and i + 1 < len(toks) and toks[i + 1].text == "{":
            p = Parser(toks, {"__consts__": consts})
            p.i = i + 1
            try:
                lit = p.literal_body("Condition")
            except (ValueError, IndexError):
                continue
            def name(v: Any) -> str:
                if isinstance(v, Ref):
                    return v.name.rsplit(".", 1)[-1].removeprefix("Route").removeprefix("Condition").removeprefix("Reason")
                return str(v)
            parts = [f"{name(lit.fields.get('Type'))}={name(lit.fields.get('Status'))}"]
            if "Reason" in lit.fields:
                parts.append(name(lit.fields["Reason"]))
            out.append(" ".join(parts))
    return sorted(set(out))


# --- turning literals into cases ------------------------------------------------------------


def plain(v: Any) -> Any:
    """A literal as plain data (dicts, lists, scalars); unresolved names stay `Ref`s."""
    if isinstance(v, Lit):
        if v.fields:
            return {k: plain(x) for k, x in v.fields.items()}
        return [plain(x) for x in v.items]
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


def unresolved(v: Any) -> list[str]:
    if isinstance(v, Ref):
        return [v.name]
    if isinstance(v, Call):
        return [v.func + "(...)"]
    if isinstance(v, dict):
        return [n for x in v.values() for n in unresolved(x)]
    if isinstance(v, list):
        return [n for x in v for n in unresolved(x)]
    return []


def http_case(lit: Lit, index: int, grpc_svc: str = "") -> dict[str, Any]:
    f = plain(lit)
    req = f.get("Request") or {}
    out: dict[str, Any] = {}
    out["name"] = f.get("TestCaseName") or f"{index} request to '{req.get('Host', '')}{req.get('Path', '')}'" + (" with headers" if req.get("Headers") else "")
    r: dict[str, Any] = {}
    for go, ours in [("Host", "host"), ("Method", "method"), ("Path", "path"), ("Headers", "headers"), ("Protocol", "protocol"), ("UnfollowRedirect", "unfollow_redirect"), ("Body", "body"), ("SNI", "sni")]:
        if req.get(go) not in (None, "", {}):
            r[ours] = req[go]
    out["request"] = r
    # The mesh echo client calls the Echo method when told to speak gRPC.
    if str(req.get("Protocol", "")).lower() == "grpc" and grpc_svc:
        out["grpc"] = {"service": grpc_svc, "method": "Echo"}
    if f.get("ExpectedRequest") is not None:
        e = f["ExpectedRequest"]
        inner = e.get("Request") or {}
        er: dict[str, Any] = {}
        for go, ours in [("Host", "host"), ("Method", "method"), ("Path", "path"), ("Headers", "headers")]:
            if inner.get(go) not in (None, ""):
                er[ours] = inner[go]
        if e.get("AbsentHeaders"):
            er["absent_headers"] = e["AbsentHeaders"]
        out["expected_request"] = er
    if f.get("RedirectRequest") is not None:
        rr = f["RedirectRequest"]
        out["redirect"] = {k.lower(): rr[k] for k in ("Scheme", "Host", "Port", "Path") if rr.get(k) not in (None, "")}
    resp = f.get("Response") or {}
    ro: dict[str, Any] = {}
    for go, ours in [("StatusCode", "status"), ("StatusCodes", "statuses"), ("Headers", "headers"), ("AbsentHeaders", "absent_headers"), ("ValidHeaderValues", "valid_header_values")]:
        if resp.get(go) not in (None, 0, [], {}):
            ro[ours] = resp[go]
    if ro:
        out["response"] = ro
    for go, ours in [("Backend", "backend"), ("Namespace", "namespace"), ("BackendSetResponseHeaders", "backend_set_response_headers")]:
        if f.get(go) not in (None, "", {}):
            out[ours] = f[go]
    if f.get("MirroredTo"):
        out["mirrored_to"] = [
            {k: v for k, v in [("name", (m.get("BackendRef") or {}).get("Name")), ("namespace", (m.get("BackendRef") or {}).get("Namespace")), ("percent", m.get("Percent"))] if v not in (None, "")}
            for m in f["MirroredTo"]
        ]
    return out


def grpc_case(lit: Lit, index: int, service: str) -> dict[str, Any]:
    f = plain(lit)
    method = next((m for go, m in [("EchoRequest", "Echo"), ("EchoTwoRequest", "EchoTwo"), ("EchoThreeRequest", "EchoThree")] if go in f), "Echo")
    out: dict[str, Any] = {"name": f.get("TestCaseName") or f"{index} {method}"}
    out["grpc"] = {"service": service, "method": method}
    md = f.get("RequestMetadata") or {}
    r: dict[str, Any] = {}
    if md.get("Authority"):
        r["host"] = md["Authority"]
    if md.get("Metadata"):
        r["headers"] = md["Metadata"]
    out["request"] = r
    resp = f.get("Response") or {}
    code = resp.get("Code")
    if code is not None:
        name = code.name.rsplit(".", 1)[-1] if isinstance(code, Ref) else str(code)
        out["response"] = {"status": GRPC_TO_HTTP.get(name, 500), "grpc_code": name}
    headers = resp.get("Headers")
    if isinstance(headers, dict):
        out.setdefault("response", {})["headers"] = {k: ",".join(v) if isinstance(v, list) else v for k, v in headers.items()}
    for go, ours in [("Backend", "backend"), ("Namespace", "namespace")]:
        if f.get(go) not in (None, ""):
            out[ours] = f[go]
    return out


def expected_literals(v: Any, kind: str) -> list[Lit]:
    """The ExpectedResponse literals in a bound value: one literal, or a slice of them."""
    if isinstance(v, Lit):
        if v.type.endswith("ExpectedResponse") and not v.type.startswith("[]"):
            return [v]
        if v.type.endswith("ExpectedResponse") or (v.type == "" and v.items and all(isinstance(x, Lit) for x in v.items)):
            return [x for x in v.items if isinstance(x, Lit)]
    return []


def grpc_service(repo: Repo) -> str:
    proto = repo.show("conformance/echo-basic/grpcecho.proto")
    pkg = re.search(r"^package\s+([\w.]+);", proto, re.M)
    svc = re.search(r"^service\s+(\w+)", proto, re.M)
    if not pkg or not svc:
        raise ValueError("grpcecho.proto: no package or service")
    return f"{pkg.group(1)}.{svc.group(1)}"


def namespaced(v: Any) -> str | None:
    f = plain(v) if isinstance(v, Lit) else v
    if isinstance(f, dict) and isinstance(f.get("Name"), str):
        return f"{f.get('Namespace', '')}/{f['Name']}"
    return None


@dataclass
class Transcribed:
    cases: list[dict[str, Any]]
    distributions: list[dict[str, Any]]
    gaps: list[str]


def bound_targets(env: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """The Gateway each gwAddr-like variable was accepted for, and the namespace each mesh
    client variable runs in, as bound in `env`."""
    gateways: dict[str, str] = {}
    clients: dict[str, str] = {}
    mesh_ns = str(env["__consts__"].get("MeshNamespace", ""))
    for name, v in env.items():
        if not isinstance(v, Call):
            continue
        last = v.func.rsplit(".", 1)[-1]
        if last.startswith("Gateway") and last.endswith("MustBeAccepted"):
            for a in v.args:
                if isinstance(a, Call) and a.func.endswith("NewGatewayRef") and a.args:
                    gw = namespaced(a.args[0])
                    if gw:
                        gateways[name] = gw
        if last == "ConnectToApp":
            clients[name] = mesh_ns
        if last == "ConnectToAppInNamespace" and len(v.args) >= 4:
            clients[name] = v.args[3] if isinstance(v.args[3], str) else ""
    return gateways, clients


def deleted_object(args: list[Any]) -> str | None:
    """`Client.Delete(ctx, &obj)`: the object as `Kind namespace/name`."""
    for a in args:
        if isinstance(a, Lit) and a.type:
            meta = plain(a.fields.get("ObjectMeta")) or {}
            if isinstance(meta, dict) and meta.get("Name"):
                return f"{a.type.rsplit('.', 1)[-1]} {meta.get('Namespace', '')}/{meta['Name']}"
    return None


def retry_case(item: Any, place: dict[str, Any], cases: list[dict[str, Any]], gaps: list[str], helper: dict[str, str]) -> None:
    """One row of HTTPRoute retry's table: the echo backend answers `responseCode` for the
    first `succeedAfter` attempts, then 200; `want` is what the client must get."""
    f = plain(item)
    args = f.get("args") or {}
    values = args.get("retrySimulationConfig") or {}
    try:
        code = int(values["responseCode"][0])
        fails = int(values["succeedAfter"][0])
        status = int((f.get("want") or {})["StatusCode"])
        path = str(args["path"])
    except (KeyError, IndexError, TypeError, ValueError):
        gaps.append("a retry case the reader does not understand was left out")
        return
    case: dict[str, Any] = {"name": f.get("name", ""), **place}
    case["request"] = {"path": f"{path}?responseCode={code}&succeedAfter={fails}"}
    case["retry_backend"] = {"status": code, "fails": fails}
    case["response"] = {"status": status}
    case.update(helper)
    cases.append(case)


def helper_expectations(src: str, consts: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Backend and Namespace a file's retry helper expects (`Backend: confsuite.X`)."""
    m = re.search(r"func assertConsistentRetryBehaviour\(.*?\n}\n", src, re.S)
    if not m:
        return {}
    b = re.search(r"Backend:\s+\w+\.(\w+)", m.group())
    return {"assertConsistentRetryBehaviour": {"backend": str(consts.get(b.group(1), "")) if b else ""}}


def transcribe_body(body: Body, role: str, grpc_svc: str, helpers: dict[str, dict[str, str]]) -> Transcribed:
    env = body.env
    mesh_ns = str(env["__consts__"].get("MeshNamespace", ""))
    cases: list[dict[str, Any]] = []
    dists: list[dict[str, Any]] = []
    gaps: list[str] = []
    seen: set[int] = set()
    deleted: list[str] = []

    def where(snapshot: dict[str, Any], receiver: str, args: list[Any]) -> dict[str, Any]:
        gateways, clients = bound_targets(snapshot)
        if role == "gateway":
            var = next(
                (n for a in args for n in gateways if snapshot.get(n) is a or (isinstance(a, Ref) and a.name == n)),
                None,
            )
            gw = gateways.get(var or "") or next(iter(gateways.values()), None)
            return {"gateway": gw}
        return {"client_namespace": clients.get(receiver) or next(iter(clients.values()), mesh_ns)}

    def add(lits: list[Lit], place: dict[str, Any]) -> None:
        for idx, lit in enumerate(lits):
            if id(lit) in seen:
                continue
            seen.add(id(lit))
            is_grpc = lit.type.startswith("grpc.") or any(k in lit.fields for k in ("EchoRequest", "EchoTwoRequest", "EchoThreeRequest"))
            case = grpc_case(lit, idx, grpc_svc) if is_grpc else http_case(lit, idx, grpc_svc)
            missing = unresolved(case)
            if missing:
                gaps.append(f"a case with unresolved values ({', '.join(sorted(set(missing)))}) was left out")
                continue
            placed = {"name": case.pop("name"), **place}
            if deleted:
                placed["after_deleting"] = list(deleted)
            placed.update(case)
            cases.append(placed)

    def nested(func: str, args: list[Any]) -> list[tuple[str, list[Any]]]:
        out = [(func, args)]
        for a in args:
            if isinstance(a, Call):
                out += nested(a.func, a.args)
        return out

    for outer, outer_args, _loops, snapshot in body.calls:
        for func, args in nested(outer, outer_args):
            last = func.rsplit(".", 1)[-1]
            if last == "Delete" and "Client" in func:
                obj = deleted_object(args)
                if obj:
                    deleted.append(obj)
        func, args = outer, outer_args
        last = func.rsplit(".", 1)[-1]
        if "TLSRequest" in last:
            gaps.append("the cases sent over TLS to an HTTPS listener are left out")
            continue
        if last == "assertConsistentRetryBehaviour" and _loops:
            table = snapshot.get(_loops[-1])
            for item in table.items if isinstance(table, Lit) else []:
                ns = {"namespace": args[3]} if len(args) > 3 and isinstance(args[3], str) else {}
                retry_case(item, where(snapshot, "", args), cases, gaps, {**helpers.get(last, {}), **ns})
            continue
        if not last.startswith("MakeRequestAndExpect"):
            continue
        receiver = func.rsplit(".", 1)[0] if "." in func else ""
        place = where(snapshot, receiver, args)
        for a in args:
            lits: list[Lit] = []
            if isinstance(a, Lit):
                lits = expected_literals(a, "")
            elif isinstance(a, Ref) and a.name.startswith("elem:"):
                lits = expected_literals(snapshot.get(a.name[5:]), "")
            elif isinstance(a, Ref) and a.name in snapshot:
                lits = expected_literals(snapshot[a.name], "")
            if lits:
                add(lits, place)
    # Weighted distributions: an `expected` literal with an `expectedWeights` map.
    weights = next((v for v in env.values() if isinstance(v, Lit) and v.type.startswith("map[string]float64")), None)
    if weights is not None:
        lit = next((v for v in env.values() if isinstance(v, Lit) and v.type.endswith("ExpectedResponse")), None)
        if lit is not None:
            c = http_case(lit, 0, grpc_svc)
            d: dict[str, Any] = where(env, next(iter(bound_targets(env)[1]), ""), [])
            d["request"] = c.get("request", {})
            if c.get("grpc"):
                d["grpc"] = c["grpc"]
            if c.get("namespace"):
                d["namespace"] = c["namespace"]
            w = plain(weights)
            d["weights"] = {str(k): v for k, v in w.items()} if isinstance(w, dict) else {}
            if unresolved(d):
                gaps.append("the weighted distribution has unresolved values")
            else:
                dists.append(d)
    return Transcribed(cases, dists, gaps)


# --- the base manifests -----------------------------------------------------------------------

def selected(deployments: list[dict[str, Any]], namespace: str | None, selector: dict[str, str]) -> list[str]:
    """The base Deployments in `namespace` whose pods a Service `selector` selects."""
    def labels(dep: dict[str, Any]) -> dict[str, str]:
        return ((dep.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels", {})
    return sorted(
        dep["metadata"]["name"] for dep in deployments
        if dep["metadata"].get("namespace") == namespace and selector
        and all(labels(dep).get(k) == v for k, v in selector.items())
    )


def test_services(manifests: str, body: Body, deployments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Services a test's manifests add, with the Deployments behind them: by selector, or
    for Services whose EndpointSlices the test fills itself (`setupEndpointSlices`), the
    Deployment whose pods it lists."""
    filled: dict[str, str] = {}
    for func, args, _loops, snapshot in body.calls:
        if func == "setupEndpointSlices" and len(args) > 2 and isinstance(args[2], Lit):
            source = next(
                (a.fields.get("Name") for _, gargs, _, _ in [c for c in body.calls if c[0].endswith("Client.Get")]
                 for a in gargs if isinstance(a, Lit) and a.type.endswith("ObjectKey")),
                None,
            )
            for name in args[2].items:
                if isinstance(name, str) and isinstance(source, str):
                    filled[name] = source
    out = []
    for d in yaml.safe_load_all(manifests):
        if not isinstance(d, dict) or d.get("kind") != "Service":
            continue
        meta = d.get("metadata") or {}
        backends = selected(deployments, meta.get("namespace"), (d.get("spec") or {}).get("selector") or {})
        if meta.get("name") in filled:
            backends = [filled[meta["name"]]]
        out.append({"namespace": meta.get("namespace"), "name": meta.get("name"), "backends": backends})
    return out


def base(repo: Repo) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The base manifests as the case table records them, and their Deployments."""
    docs = []
    for rel in ("conformance/base/manifests.yaml", "conformance/mesh/manifests.yaml"):
        docs += [d for d in yaml.safe_load_all(repo.show(rel)) if isinstance(d, dict)]
    deployments = [d for d in docs if d.get("kind") == "Deployment"]
    out: dict[str, Any] = {"gateways": [], "services": [], "namespaces": [], "reference_grants": ""}
    grants = []
    for d in docs:
        meta = d.get("metadata") or {}
        kind = d.get("kind")
        if kind == "Namespace":
            out["namespaces"].append({"name": meta.get("name"), "labels": meta.get("labels") or {}})
        elif kind == "Gateway":
            listeners = []
            for l in (d.get("spec") or {}).get("listeners") or []:
                ns = ((l.get("allowedRoutes") or {}).get("namespaces") or {})
                listeners.append({
                    "name": l.get("name"), "port": l.get("port"), "protocol": l.get("protocol"),
                    "hostname": l.get("hostname"), "allowed_namespaces": ns.get("from", "Same"),
                })
            out["gateways"].append({"namespace": meta.get("namespace"), "name": meta.get("name"), "listeners": listeners})
        elif kind == "Service":
            spec = d.get("spec") or {}
            sel = spec.get("selector") or {}
            backends = selected(deployments, meta.get("namespace"), sel)
            out["services"].append({
                "namespace": meta.get("namespace"), "name": meta.get("name"),
                "ports": [p.get("port") for p in spec.get("ports") or []], "backends": backends,
                "app_protocols": {p["port"]: p["appProtocol"] for p in spec.get("ports") or [] if p.get("appProtocol")},
            })
        elif kind == "ReferenceGrant":
            grants.append(yaml.safe_dump(d, sort_keys=False))
    out["reference_grants"] = "---\n".join(grants)
    return out, deployments


# --- the whole suite ----------------------------------------------------------------------------


def test_files(repo: Repo) -> list[str]:
    files = []
    for path in repo.ls("conformance/tests"):
        name = path.rsplit("/", 1)[-1]
        if not path.endswith(".go") or path.endswith("_test.go"):
            continue
        if re.match(r"(httproute|grpcroute|mesh)-", name):
            files.append(path)
    return sorted(files)


def transcribe(repo: Repo) -> dict[str, Any]:
    consts = constants(repo)
    svc = grpc_service(repo)
    base_manifests, deployments = base(repo)
    tests = []
    for path in test_files(repo):
        src = repo.show(path)
        toks = tokens(src)
        helpers = helper_expectations(src, consts)
        role = "mesh" if "/mesh/" in path else "gateway"
        bodies: dict[str, list[Tok]] = {}
        found = []
        for var, start, _ in find_tests(src):
            end = block(toks, start)
            p = Parser(toks[start - 1:end], {"__consts__": consts})
            p.i = 1
            found.append((var, start, end, p.literal_body("ConformanceTest")))
            bodies[var] = test_body(toks[start:end])
        for var, start, end, lit in found:
            t: dict[str, Any] = {"name": lit.fields.get("ShortName", var), "file": path, "role": role}
            feats = lit.fields.get("Features")
            t["features"] = [f if isinstance(f, str) else f.name.rsplit(".", 1)[-1].removeprefix("Support") for f in (feats.items if isinstance(feats, Lit) else [])]
            t["description"] = lit.fields.get("Description", "")
            manifests = lit.fields.get("Manifests")
            texts = [repo.show(f"conformance/{m}") for m in (manifests.items if isinstance(manifests, Lit) else []) if isinstance(m, str)]
            t["manifests"] = "---\n".join(x if x.endswith("\n") else x + "\n" for x in texts)
            # The Test func's body (or, for `Test: Other.Test`, the other test's).
            test = lit.fields.get("Test")
            reused = test.name.removesuffix(".Test") if isinstance(test, Ref) and test.name.endswith(".Test") else None
            body_toks = bodies.get(reused or var) or []
            conds = conditions_in(body_toks, consts)
            if conds:
                t["conditions"] = conds
            body = read_body(body_toks, consts)
            services = test_services(t["manifests"], body, deployments)
            if services:
                t["services"] = services
            got = transcribe_body(body, role, svc, helpers)
            ws = websocket_case(body_toks, body)
            if ws is not None:
                got.cases.append(ws)
            t["cases"] = got.cases
            if got.distributions:
                t["distributions"] = got.distributions
            reasons = list(dict.fromkeys(got.gaps))
            if not got.cases and not got.distributions:
                reasons.insert(0, untranscribed_reason(body_toks))
            if reasons:
                t["untranscribed"] = "; ".join(reasons)
            tests.append(t)
    return {
        "source": {"repo": UPSTREAM, "tag": TAG, "commit": COMMIT},
        "base": base_manifests,
        "tests": sorted(tests, key=lambda t: (t["role"], t["name"])),
    }


def websocket_case(toks: list[Tok], body: Body) -> dict[str, Any] | None:
    """The WebSocket test: dial `ws://<gateway>/<path>`, send a text and a binary message and
    expect both echoed."""
    text = " ".join(t.text for t in toks)
    if "WebSocketDialer" not in text:
        return None
    path = re.search(r'"ws://%s(/[^"]*)"', text)
    message = re.search(r'textMessage = "([^"]*)"', text)
    binary = re.search(r"binaryMessage = \[ \] byte \{ ([0-9 ,]+) \}", text)
    if not (path and message and binary):
        return None
    gateways, _ = bound_targets(body.env)
    return {
        "name": "websocket connection should reach backend",
        "gateway": next(iter(gateways.values()), None),
        "request": {"path": path.group(1)},
        "websocket": {"text": message.group(1), "binary": [int(b) for b in binary.group(1).replace(" ", "").split(",") if b]},
    }


def test_body(toks: list[Tok]) -> list[Tok]:
    for i, t in enumerate(toks):
        if t.text == "Test" and toks[i + 1].text == ":" and toks[i + 2].text == "func":
            j = i + 3
            while toks[j].text != "{":
                j += 1
            return toks[j + 1:block(toks, j) - 1]
    return []


def untranscribed_reason(toks: list[Tok]) -> str:
    text = " ".join(t.text for t in toks)
    checks = [
        ("tls .", "makes TLS requests to an HTTPS listener"),
        ("ObservedGeneration", "checks the observedGeneration of route status"),
        ("serviceTypes", "builds its requests in a loop over Service types"),
        ("Condition", "checks route or gateway status conditions only"),
    ]
    for needle, reason in checks:
        if needle in text:
            return reason
    return "no request/response table the reader understands"


# --- YAML out ----------------------------------------------------------------------------------


def emit(data: Any, indent: int = 0) -> str:
    """YAML with block literals for multi-line strings and flow style for small leaves."""
    pad = " " * indent
    if isinstance(data, dict):
        if not data:
            return "{}"
        lines = []
        for k, v in data.items():
            if isinstance(v, str) and "\n" in v:
                body = "\n".join((pad + "  " + line) if line else "" for line in v.rstrip("\n").split("\n"))
                lines.append(f"{pad}{key(k)}: |\n{body}")
            elif is_leaf(v):
                lines.append(f"{pad}{key(k)}: {flow(v)}")
            else:
                lines.append(f"{pad}{key(k)}:\n{emit(v, indent + 2)}")
        return "\n".join(lines)
    if isinstance(data, list):
        if not data:
            return pad + "[]"
        lines = []
        for v in data:
            if is_leaf(v):
                lines.append(f"{pad}- {flow(v)}")
            else:
                inner = emit(v, indent + 2)
                lines.append(f"{pad}- {inner.lstrip()}")
        return "\n".join(lines)
    return pad + flow(data)


def key(k: Any) -> str:
    return flow(k) if not (isinstance(k, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", k)) else k


def is_leaf(v: Any) -> bool:
    if isinstance(v, dict):
        return all(not isinstance(x, (dict, list)) or (isinstance(x, list) and all(not isinstance(y, (dict, list)) for y in x)) for x in v.values()) and len(flow(v)) < 90 and not any(isinstance(x, str) and "\n" in x for x in v.values())
    if isinstance(v, list):
        return all(not isinstance(x, (dict, list)) for x in v) and len(flow(v)) < 90
    return not (isinstance(v, str) and "\n" in v)


def flow(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True, width=10_000, sort_keys=False).strip().removesuffix("...").strip()


def render(data: dict[str, Any]) -> str:
    head = (
        f"# Generated by tools/gateway-conformance/transcribe.py from kubernetes-sigs/gateway-api\n"
        f"# {TAG} (commit {COMMIT}). Do not edit; re-run the script. The manifests and\n"
        f"# expectations are facts taken from the Gateway API conformance suite (Apache-2.0, The\n"
        f"# Kubernetes Authors); core/route/tests/route/conformance.rs checks them against ambit-route.\n"
    )
    return head + emit(data) + "\n"


# --- the README table -----------------------------------------------------------------------------


def table(data: dict[str, Any]) -> str:
    apply = yaml.safe_load(APPLICABILITY.read_text())
    na = apply.get("not_applicable") or {}
    not_yet = apply.get("not_yet") or {}
    rows = [
        f"Gateway API {data['source']['tag']} (`{data['source']['commit'][:12]}`), "
        f"{len(data['tests'])} route tests. Cases are requests with the results the suite expects; "
        "\"pass\" means every case passes in `cargo test -p ambit-route` and in the Python "
        "package's tests (mesh cases also through a real waypoint over HBONE).",
        "",
        "| test | role | cases | ambit |",
        "|---|---|---|---|",
    ]
    counts = {"pass": 0, "n/a": 0, "not yet": 0}
    for t in data["tests"]:
        n = len(t.get("cases") or []) + len(t.get("distributions") or [])
        if t["name"] in na:
            verdict, counts["n/a"] = f"not applicable: {na[t['name']]}", counts["n/a"] + 1
        elif t["name"] in not_yet:
            verdict, counts["not yet"] = f"not yet: {not_yet[t['name']]}", counts["not yet"] + 1
        else:
            verdict, counts["pass"] = "pass", counts["pass"] + 1
            if t.get("untranscribed"):
                verdict += f" (left out: {t['untranscribed']})"
        rows.append(f"| {t['name']} | {t['role']} | {n} | {verdict.replace('|', '/')} |")
    rows += ["", f"{counts['pass']} pass, {counts['n/a']} not applicable, {counts['not yet']} not yet."]
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", type=Path, default=DEFAULT_MIRROR)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--check", action="store_true", help="exit 1 if --out is not what the suite gives")
    ap.add_argument("--table", action="store_true", help="print the README conformance table")
    ap.add_argument("--check-readme", type=Path, help="exit 1 if this README's table is stale")
    args = ap.parse_args()
    if args.table or args.check_readme:
        data = yaml.safe_load(args.out.read_text())
        text = table(data)
        if args.check_readme:
            readme = args.check_readme.read_text()
            m = re.search(re.escape(README_BEGIN) + r"\n(.*?)\n" + re.escape(README_END), readme, re.S)
            if m is None or m.group(1).strip() != text.strip():
                print(f"{args.check_readme}: the conformance table is stale; paste --table between the markers", file=sys.stderr)
                return 1
            return 0
        print(text)
        return 0
    if not (args.repo / "HEAD").exists() and not (args.repo / ".git").exists():
        if args.check:
            print(f"{args.repo}: no gateway-api checkout here; --check skipped")
            return 0
        print(f"{args.repo}: not a git checkout of {UPSTREAM}", file=sys.stderr)
        return 2
    text = render(transcribe(Repo(args.repo)))
    if args.check:
        if args.out.read_text() != text:
            print(f"{args.out} differs from what {TAG} gives; re-run the script", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    data = yaml.safe_load(text)
    n = sum(len(t["cases"]) for t in data["tests"])
    gaps = [t for t in data["tests"] if t.get("untranscribed")]
    print(f"{len(data['tests'])} tests, {n} cases, {len(gaps)} with untranscribed parts -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
