"""An adversarial HTTP/3 peer (aioquic, patched where it enforces limits itself) against
ambit-ztunnel's HBONE/HTTP3 server: streams past MAX_STREAMS, slowloris and rapid-reset streams,
oversized, lying and flooded datagrams, bad capsules, stalled flow control, descriptor
exhaustion. A fresh ambit-ztunnel per test; each case returns its observations (cases.py).

    .venv/bin/python -m pytest -q tests/h3_adversarial [-k name]
"""
import asyncio
import sys

import pytest

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import harness as H  # noqa: E402
import cases as C  # noqa: E402

MIB = 1024  # RSS values are KiB


@pytest.fixture(scope="module")
def apps():
    a = H.Apps().start()
    yield a
    a.stop()


@pytest.fixture()
def run(apps):
    srv = H.Server().start()
    try:
        yield lambda case, **kw: asyncio.run(case(srv, apps, **kw))
    finally:
        srv.stop()


def healthy(r):
    assert r["server_alive"] and r["normal_connect_after"], r
    assert not r["suspicious_log_lines"], r["suspicious_log_lines"]


def test_streams_beyond_max_streams_close_with_stream_limit_error(run):
    r = run(C.case_stream_flood)
    assert r["close"]["error_code"].startswith("0x4 "), r
    assert r["app_sockets_all_closed"], r
    healthy(r)
    r2 = run(C.case_stream_far_beyond)
    assert r2["close"]["error_code"].startswith("0x4 "), r2


def test_every_upstream_connection_has_an_access_log_line(run):
    r = run(C.case_stream_flood)
    assert r["access_log_lines_for_them"] >= r["tunnels_opened_before_close"], r


def test_slowloris_streams_are_reset_and_memory_is_bounded(run):
    r = run(C.case_slowloris)
    assert r["all_streams_reset"] and r["reset_codes"] == ["0x10d H3_REQUEST_INCOMPLETE"], r
    assert r["slots_returned_within_quinn_batching"], r
    assert r["rss_kib"]["peak"] - r["rss_kib"]["before"] < 32 * MIB, r
    healthy(r)
    t = run(C.case_slowloris_trickle)
    assert t["all_reset"], t


def test_oversized_and_lying_datagrams(run):
    r = run(C.case_datagram_sizes)
    assert r["lying_length_70000"]["close"]["error_code"].startswith("0x7 "), r
    healthy(r)


def test_datagram_flood_is_dropped_not_buffered(run):
    r = run(C.case_datagram_flood)
    assert r["connection_alive_after"] and r["flow_alive_after"], r
    assert r["rss_kib"]["peak"] - r["rss_kib"]["before"] < 32 * MIB, r
    healthy(r)


def test_datagrams_for_streams_that_are_not_flows_are_dropped(run):
    r = run(C.case_datagram_bad_ids, out_of_range=False)
    # The count less the sentinel: -1 when the app counts the sentinel after the peer saw its
    # echo; a stray datagram makes it positive.
    assert r["stray_datagrams_at_app"] <= 0 and r["tcp_tunnel_ok_after"], r
    healthy(r)


def test_quarter_stream_id_above_2_60_is_a_connection_error(run):
    r = run(C.case_datagram_bad_ids)
    assert r["close"] and r["close"]["error_code"].startswith("0x33 "), r
    healthy(r)


def test_capsules(run):
    r = run(C.case_capsules)
    assert not r["len_2^60_datagram_capsule"]["flow_alive_after"], r
    assert not r["len_65552_full_body"]["flow_alive_after"], r
    assert r["len_65508_full_body(payload 65507)"]["app_got_sizes"] == {65507: 1}, r
    assert r["unknown_capsule_2^60_then_32MiB"]["datagrams_still_flow"], r
    assert r["rss_kib"]["peak"] - r["rss_kib"]["before"] < 32 * MIB, r
    healthy(r)


def test_malformed_capsule_resets_the_stream(run):
    r = run(C.case_capsules)
    assert r["len_2^60_datagram_capsule"]["stream_reset_by_server"], r


def test_stalled_flow_control_is_bounded_and_freed(run):
    r = run(C.case_stalled_flow, hold_alive=5.0)
    assert r["rss_kib"]["stalled"] - r["rss_kib"]["before"] < 16 * MIB, r
    assert r["after_client_vanished"]["app_socket_closed"], r
    healthy(r)


def test_unacknowledged_data_is_bounded_by_the_send_window(run):
    r = run(C.case_unacked_big_window, conns=2, hold=10.0)
    assert r["rss_kib"]["peak"] - r["rss_kib"]["before"] < 2 * 24 * MIB, r
    assert r["after_client_vanished"]["app_sockets_closed"], r
    healthy(r)


def test_descriptor_exhaustion_refuses_with_503_and_recovers(run):
    r = run(C.case_fd_exhaustion)
    assert set(r["statuses"]) <= {"200", "503"} and r["normal_connect_after"], r
    assert r["fds_after"] < 50 and r["server_cpu_share_at_limit"] < 0.2, r


def test_rapid_reset_streams_are_bounded(run):
    r = run(C.case_rapid_reset)
    healthy(r)
    assert r["rss_kib"]["peak"] - r["rss_kib"]["before"] < 32 * MIB, r
