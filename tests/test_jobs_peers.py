"""Leaving a run over several processes early: process 0 (host of the coordination service)
leaves only after the others have left or were lost, so none is aborted while it finishes."""
from __future__ import annotations

import os
import threading
import time

import pytest

from jaxprotect.jobs import peers
from jaxprotect.jobs.distributed import ProcessInfo
from jaxprotect.jobs.peers import Departure, departure_path, heartbeat_path
from jaxprotect.jobs.status import StatusLog


class _Exited(Exception):
    pass


@pytest.fixture
def exits(monkeypatch):
    """Record exit_now's calls (with when) instead of ending the test process."""
    calls = []

    def fake_exit(status):
        calls.append((status, time.monotonic()))
        raise _Exited

    monkeypatch.setattr(peers, "exit_now", fake_exit)
    return calls


def _three_processes(out, run=1):
    """Run ``run`` of a job over 3 processes: 1 stopped (final status), 2 still beating."""
    StatusLog(out, run, 1).finish("interrupted")
    StatusLog(out, run, 2)
    heartbeat_path(out, run, 2).touch()
    return Departure(out, run, ProcessInfo(0, 3), stale_s=5.0, timeout_s=10.0)


def test_others_gone_needs_every_marker_or_a_lost_process(tmp_path):
    out = tmp_path / "job"
    departure = _three_processes(out)
    assert not departure.others_gone()  # 1 has not left, 2 is at work
    departure_path(out, 1, 1).touch()
    assert not departure.others_gone()  # 2 is still at work
    old = time.time() - 60
    os.utime(heartbeat_path(out, 1, 2), (old, old))
    assert departure.others_gone()  # 2 went quiet without a final status: lost


def test_process_0_leaves_after_the_others(tmp_path, exits):
    out = tmp_path / "job"
    departure = _three_processes(out)
    StatusLog(out, 1, 2).finish("complete")
    departure_path(out, 1, 2).touch()
    start = time.monotonic()
    threading.Timer(0.6, lambda: departure_path(out, 1, 1).touch()).start()
    with pytest.raises(_Exited):
        departure.leave(143)
    [(status, when)] = exits
    assert status == 143 and when - start >= 0.6


def test_process_0_leaves_after_its_timeout_when_a_process_never_leaves(tmp_path, exits):
    out = tmp_path / "job"
    departure = Departure(out, 1, ProcessInfo(0, 2), stale_s=5.0, timeout_s=0.5)
    StatusLog(out, 1, 1).finish("failed")  # final status, but it never writes its marker
    start = time.monotonic()
    with pytest.raises(_Exited):
        departure.leave(1)
    assert 0.5 <= exits[0][1] - start < 5


def test_other_processes_mark_their_departure_and_leave_at_once(tmp_path, exits):
    out = tmp_path / "job"
    StatusLog(out, 1, 0)  # process 0 still at work: a peer does not wait for it
    with pytest.raises(_Exited):
        Departure(out, 1, ProcessInfo(1, 2), stale_s=5.0).leave(143)
    assert exits[0][0] == 143 and departure_path(out, 1, 1).exists()
