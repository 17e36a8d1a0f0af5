"""The same broken objects as the Rust and C tests (testdata/config-errors/): every loader
Python reaches raises ConfigError with the file, object and field on the fixture's first line
("# where: file | object | field")."""

import pathlib

import pytest

import ambit

CONFIG = """\
workloads:
- {uid: p/wp, name: waypoint, namespace: shop, serviceAccount: waypoint,
   workloadIps: [127.42.9.2], node: none}
"""


def fixture(repo: pathlib.Path, name: str) -> tuple[str, tuple[str, str, str]]:
    text = (repo / "testdata" / "config-errors" / name).read_text()
    first = text.splitlines()[0]
    assert first.startswith("# where: "), f"{name}: first line is not `# where: …`"
    file, obj, field = first.removeprefix("# where: ").split(" | ")
    return text, (file, obj, field)


def place(e: pytest.ExceptionInfo[ambit.ConfigError]) -> tuple[str | None, str | None, str | None]:
    return (e.value.file, e.value.object, e.value.field)


def waypoint_place(text: str) -> tuple[str | None, str | None, str | None]:
    ca = ambit.CertificateAuthority()
    with pytest.raises(ambit.ConfigError) as e:
        ambit.Waypoint(CONFIG, text, ca, "127.42.9.2:0", name="waypoint", namespace="shop")
    return place(e)


def test_a_broken_httproute_is_placed_alike_by_the_router_and_the_waypoint(repo: pathlib.Path) -> None:
    text, want = fixture(repo, "httproute.yaml")
    with pytest.raises(ambit.ConfigError) as e:
        ambit.Router.from_yaml(text)
    assert place(e) == want
    assert waypoint_place(text) == want


def test_a_broken_authorization_policy_is_placed_alike_by_l7_policies_and_the_waypoint(
    repo: pathlib.Path,
) -> None:
    text, want = fixture(repo, "authorizationpolicy.yaml")
    with pytest.raises(ambit.ConfigError) as e:
        ambit.L7Policies.from_yaml(text)
    assert place(e) == want
    assert waypoint_place(text) == want
