"""``streamcdp worker --processes 2`` through the real broker: the supervisor's two children join one
consumer group and split the four partitions, both consume a seeded workload; a child killed with SIGKILL
is started again (same port and data dir) and takes its share back; SIGTERM to the supervisor stops both
children, which leave cleanly, and the supervisor exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, Pipeline, WorkerProcess, metric_sum, produce_raw_lines, read_metrics, wait_until_drained
from test_scale_out import make_workload, wait_for_assignment
from trigger_files import NO_TRIGGERS

from streams import kafka_local

pytestmark = pytest.mark.integration

PROCESSES = 2
ASSIGNMENT_TIMEOUT_S = 90.0
DRAIN_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0


def free_port_run(count: int) -> int:
    """A port p such that p .. p + count - 1 are all free now (the supervisor gives child i port p + i)."""
    for _ in range(100):
        first = kafka_local.free_port()
        if first + count - 1 <= 65535 and all(kafka_local.port_is_free(first + i) for i in range(1, count)):
            return first
    message = f"no run of {count} free ports found"
    raise RuntimeError(message)


def children_of(pid: int) -> set[int]:
    """Live pids whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            except (OSError, ValueError):
                continue
            if int(parent) == pid and state != "Z":  # a zombie has exited; its parent has not reaped it yet
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for_children(
    supervisor: subprocess.Popen, count: int, timeout_s: float, log_path: Path, gone: int | None = None
) -> set[int]:
    """The supervisor's ``count`` live children, once it has them and ``gone`` (a child just killed) is not
    among them: SIGKILL is delivered asynchronously, so right after ``os.kill`` the victim may still be listed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert supervisor.poll() is None, f"supervisor exited {supervisor.returncode}\n{log_path.read_text()[-3000:]}"
        pids = children_of(supervisor.pid)
        if len(pids) == count and gone not in pids:
            return pids
        time.sleep(0.2)
    message = f"supervisor has {children_of(supervisor.pid)} children, not {count}\n{log_path.read_text()[-3000:]}"
    raise AssertionError(message)


def test_processes_2_split_the_partitions_restart_a_dead_child_and_stop_on_sigterm(make_pipeline):
    pipeline: Pipeline = make_pipeline(start=False, topic_partitions=4, triggers_file=NO_TRIGGERS)
    base_port = free_port_run(PROCESSES)
    env = dict(pipeline.worker.env, STREAMCDP_WEB_PORT=str(base_port))
    log_path = pipeline.worker.log_path.with_name("supervisor.log")
    # One handle per child, only to read its HTTP endpoints (its log is the supervisor's).
    children = [
        WorkerProcess(env, log_path, base_port + index, pipeline.settings.api_token) for index in range(PROCESSES)
    ]
    with log_path.open("ab") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--processes", str(PROCESSES)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    seen: set[int] = set()  # every child pid, to kill by pid if the test fails half-way
    try:
        pids = wait_for_children(supervisor, PROCESSES, 30.0, log_path)
        seen |= pids
        held = wait_for_assignment(children, timeout_s=ASSIGNMENT_TIMEOUT_S)
        assert all(held), f"a child holds no partition: {held}"

        workload = make_workload()
        produce_raw_lines(pipeline, workload.lines)
        wait_until_drained(pipeline, timeout_s=DRAIN_TIMEOUT_S)
        consumed = [metric_sum(read_metrics(child), "streamcdp_profile_commands_total") for child in children]
        assert all(count > 0 for count in consumed), f"profile commands per child: {consumed}"
        for index in range(PROCESSES):
            assert (pipeline.settings.data_dir / f"process-{index}" / "state").is_dir()

        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        restarted = wait_for_children(supervisor, PROCESSES, 30.0, log_path, gone=victim)
        seen |= restarted
        assert victim not in restarted and len(restarted - pids) == 1, f"before {pids}, after {restarted}"
        held = wait_for_assignment(children, timeout_s=ASSIGNMENT_TIMEOUT_S)
        assert all(held), f"after the restart a child holds no partition: {held}"

        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=STOP_TIMEOUT_S + 10) == 0, log_path.read_text()[-3000:]
        assert not [pid for pid in restarted if alive(pid)], f"children left running: {restarted}"
        text = log_path.read_text()
        assert text.count("worker stopped") >= PROCESSES, text[-3000:]
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
            supervisor.wait(timeout=10)
        for pid in seen:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
