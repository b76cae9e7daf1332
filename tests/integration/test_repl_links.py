"""Replication links through wanem (user-space WAN emulator): RTT, partition
and heal, as seen by two repl_node processes (tests/unit/repl_node.c).

Topology: a dials b through wanem link "a-b", b dials a through "b-a"; both
links add 50 ms each way, so each side's heartbeat round trip is ~100 ms.
The nodes heartbeat every 200 ms; health rules are in replicator.h
(DOWN after 3 failed ticks, HEALTHY again after 3 OK heartbeats in a row).

Needs MERIDIAN_BUILD_DIR with repl_node and wanem built. Every wait is
bounded.
"""
import json
import os
import queue
import subprocess
import threading
import time

import pytest

from conftest import free_port
from wanem import Wanem, build_dir

HB_MS = 200


class Node:
    """One repl_node; keeps the latest status line. A thread reads its
    stdout all the time: a node prints every 50 ms, and a pipe left unread
    while a test sleeps fills up and blocks the node's event loop (its
    heartbeats then time out)."""

    def __init__(self, site_id, name, port, peer, log, hb_timeout_ms=HB_MS):
        binary = os.path.join(build_dir(), "tests", "unit", "repl_node")
        if not os.access(binary, os.X_OK):
            pytest.skip("repl_node not built in %s" % build_dir())
        pid, pname, paddr = peer
        self.proc = subprocess.Popen(
            [binary, "--id", str(site_id), "--name", name, "--listen", "127.0.0.1:%d" % port,
             "--secret", "links-test-secret", "--peer", "%d,%s,%s" % (pid, pname, paddr),
             "--hb-ms", str(HB_MS), "--hb-timeout-ms", str(hb_timeout_ms), "--print-ms", "50", "--backoff-max-ms", "400",
             "--high-water", str(100 * site_id)],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
        self.lines = queue.Queue()
        self.status = None
        threading.Thread(target=self._read, daemon=True).start()
        first = self._line(5.0)
        assert first and json.loads(first)["event"] == "listen"

    def _read(self):
        for line in self.proc.stdout:  # ends when the node exits
            self.lines.put(line.decode())

    def _line(self, timeout):
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def peer(self):
        """The latest status of the single peer (drains pending lines)."""
        line = self._line(1.0)
        while line is not None:
            self.status = json.loads(line)
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                line = None
        return self.status["peers"][0]

    def wait(self, pred, timeout):
        """Polls until pred(peer) is true; returns (seconds taken, peer) or fails."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            p = self.peer()
            if pred(p):
                return time.monotonic() - start, p
        pytest.fail("timed out after %.1fs; last peer status: %s" % (timeout, self.peer()))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(params=[HB_MS])
def link(tmp_path, request):
    log = open(tmp_path / "nodes.log", "ab")
    pa, pb = free_port(), free_port()
    with Wanem(log=str(tmp_path / "wanem.log")) as w:
        ha, hpa = w.add_link("a-b", target=("127.0.0.1", pb), delay=50)
        hb, hpb = w.add_link("b-a", target=("127.0.0.1", pa), delay=50)
        a = Node(1, "a", pa, (2, "b", "%s:%d" % (ha, hpa)), log, request.param)
        b = Node(2, "b", pb, (1, "a", "%s:%d" % (hb, hpb)), log, request.param)
        try:
            yield w, a, b
        finally:
            a.stop()
            b.stop()
            log.close()


def test_rtt_through_50ms_delay_is_about_100ms(link):
    w, a, b = link
    a.wait(lambda p: p["state"] == "healthy", 5)
    b.wait(lambda p: p["state"] == "healthy", 5)
    # let the EWMA settle over ~10 heartbeats
    time.sleep(10 * HB_MS / 1000)
    pa, pb = a.peer(), b.peer()
    print("a->b rtt_ms=%.2f baseline=%.2f; b->a rtt_ms=%.2f baseline=%.2f"
          % (pa["rtt_ms"], pa["rtt_baseline_ms"], pb["rtt_ms"], pb["rtt_baseline_ms"]))
    for p in (pa, pb):
        assert 95 <= p["rtt_ms"] <= 130, p
        assert 95 <= p["rtt_baseline_ms"] <= 130, p
        assert p["state"] == "healthy"
    assert pa["high_water_lsn"] == 200 and pb["high_water_lsn"] == 100


@pytest.mark.parametrize("link", [1000], indirect=True)
def test_rtt_jump_degrades(link):
    """With a 1 s heartbeat timeout, 300 ms round trips still answer, but
    the EWMA passes 2x the 100 ms baseline: degraded, not down."""
    w, a, b = link
    a.wait(lambda p: p["state"] == "healthy", 5)
    w.set("a-b", delay=150)  # 300 ms RTT > 2 x 100 ms baseline
    took, p = a.wait(lambda p: p["state"] == "degraded", 5)
    print("degraded after %.2fs, rtt_ms=%.1f baseline=%.1f" % (took, p["rtt_ms"],
                                                                 p["rtt_baseline_ms"]))
    assert p["rtt_ms"] > 2 * p["rtt_baseline_ms"]
    assert p["consecutive_failures"] == 0


def test_partition_down_then_heal_healthy(link):
    w, a, b = link
    a.wait(lambda p: p["state"] == "healthy", 5)
    b.wait(lambda p: p["state"] == "healthy", 5)
    w.partition("a-b")
    w.partition("b-a")
    t0 = time.monotonic()
    took, p = a.wait(lambda p: p["state"] == "down", 5)
    b.wait(lambda p: p["state"] == "down", 5)
    print("down after %.2fs (3 failed ticks of %d ms)" % (took, HB_MS))
    # three failed ticks: at least 2 intervals, at most ~3 intervals + timeout slack
    assert took >= 2 * HB_MS / 1000 - 0.05
    assert took <= 4 * HB_MS / 1000 + 0.3
    assert p["consecutive_failures"] >= 3
    time.sleep(1.0)
    assert a.peer()["state"] == "down"  # stays down while partitioned

    w.heal("a-b")
    w.heal("b-a")
    took, p = a.wait(lambda p: p["state"] == "healthy", 10)
    b.wait(lambda p: p["state"] == "healthy", 10)
    print("healthy %.2fs after heal" % took)
    assert p["consecutive_successes"] >= 3
    assert time.monotonic() - t0 < 15
