"""The supervisor of ``streamcdp worker --processes N``: what each child gets, when a dead child is
restarted, and that stopping reaches every child by pid. Children here are tiny Python processes."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from streams.settings import Settings
from streams.supervisor import ChildPlan, RestartPolicy, Supervisor, SupervisorError, plan_children


def settings(**values: object) -> Settings:
    return Settings(data_dir=Path("/srv/streamcdp"), web_port=7000, **values)


def test_each_child_gets_its_own_data_dir_and_port():
    plans = plan_children(settings(), 3)
    assert [(p.index, p.data_dir, p.web_port, p.advertised_url) for p in plans] == [
        (0, Path("/srv/streamcdp/process-0"), 7000, ""),
        (1, Path("/srv/streamcdp/process-1"), 7001, ""),
        (2, Path("/srv/streamcdp/process-2"), 7002, ""),
    ]


def test_an_advertised_url_is_shifted_by_the_child_index():
    plans = plan_children(settings(advertised_url="http://worker-0.cdp:6066/"), 2)
    assert [p.advertised_url for p in plans] == ["http://worker-0.cdp:6066", "http://worker-0.cdp:6067"]


@pytest.mark.parametrize(
    ("values", "processes"),
    [({"advertised_url": "http://worker-0.cdp"}, 2), ({}, 0), ({"web_port": 65535}, 2)],
)
def test_plans_that_cannot_work_are_refused(values, processes):
    with pytest.raises(SupervisorError):
        plan_children(Settings(**values), processes)


def test_child_environment_overrides_the_inherited_settings():
    plan = ChildPlan(index=1, data_dir=Path("/d/process-1"), web_port=7001, advertised_url="")
    env = plan.environment({"STREAMCDP_DATA_DIR": "/d", "STREAMCDP_WEB_PORT": "7000", "STREAMCDP_ADVERTISED_URL": "x"})
    assert env == {"STREAMCDP_DATA_DIR": "/d/process-1", "STREAMCDP_WEB_PORT": "7001"}


@pytest.mark.parametrize(
    ("restarts", "now", "delay"),
    [
        ([], 100.0, 1.0),  # first crash: 1 s
        ([99.0], 100.0, 2.0),
        ([97.0, 98.0, 99.0], 100.0, 8.0),
        ([10.0, 20.0, 30.0, 40.0], 50.0, 16.0),
        ([10.0, 20.0, 30.0, 40.0, 45.0], 50.0, None),  # five restarts within the window: give up
        ([10.0, 20.0, 30.0, 40.0, 45.0], 400.0, 1.0),  # all older than the window: start over
        ([390.0, 391.0, 392.0, 393.0], 400.0, 16.0),
    ],
)
def test_restart_backoff_doubles_and_is_bounded(restarts, now, delay):
    assert RestartPolicy(max_restarts=5, restart_window_s=300.0).next_delay(restarts, now) == delay


def test_restart_delay_is_capped():
    policy = RestartPolicy(first_delay_s=1.0, max_delay_s=30.0, max_restarts=100)
    assert policy.next_delay([1.0] * 10, now=2.0) == 30.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def plans(tmp_path: Path, count: int) -> list[ChildPlan]:
    return [ChildPlan(i, tmp_path / f"process-{i}", 7000 + i, "") for i in range(count)]


def test_a_dead_child_is_restarted_after_its_backoff_and_given_up_after_too_many(tmp_path):
    clock = FakeClock()
    policy = RestartPolicy(first_delay_s=1.0, max_restarts=2, restart_window_s=300.0)
    supervisor = Supervisor(
        plans(tmp_path, 1),
        policy=policy,
        stop_timeout_s=5.0,
        command=[sys.executable, "-c", "import sys; sys.exit(3)"],
        clock=clock,
    )
    child = supervisor.children[0]
    supervisor._start(child)
    first_pid = child.proc.pid
    child.proc.wait(timeout=10)
    assert supervisor.check_children()  # dead: scheduled, not restarted yet
    assert child.proc.pid == first_pid and child.restart_at == 1001.0
    clock.now = 1001.0
    assert supervisor.check_children()
    assert child.proc.pid != first_pid and child.restarts == [1001.0]
    child.proc.wait(timeout=10)
    clock.now = 1002.0
    assert supervisor.check_children() and child.restart_at == 1004.0  # second restart: 2 s
    clock.now = 1004.0
    assert supervisor.check_children()
    child.proc.wait(timeout=10)
    assert not supervisor.check_children()  # two restarts within the window: give up
    assert (tmp_path / "process-0").is_dir()


def wait_for_file(path: Path, timeout_s: float = 20.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    return ""


def test_stopping_signals_every_child_by_pid_and_waits_for_it(tmp_path):
    # Each child writes its pid and the settings it got, then waits for a signal.
    script = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        "open(os.environ['STREAMCDP_DATA_DIR'] + '/seen', 'w').write(os.environ['STREAMCDP_WEB_PORT'])\n"
        "time.sleep(60)\n"
    )
    supervisor = Supervisor(
        plans(tmp_path, 2), policy=RestartPolicy(), stop_timeout_s=10.0, command=[sys.executable, "-c", script]
    )
    for child in supervisor.children:
        supervisor._start(child)
    pids = supervisor.pids()
    assert len(pids) == 2
    for child in supervisor.children:
        assert wait_for_file(child.plan.data_dir / "seen") == str(child.plan.web_port)
    supervisor.stop_children(signal.SIGTERM)
    assert [child.proc.returncode for child in supervisor.children] == [0, 0]
    assert supervisor.pids() == []


def test_a_child_that_ignores_sigterm_is_killed_after_the_timeout(tmp_path):
    script = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n"
    supervisor = Supervisor(
        plans(tmp_path, 1), policy=RestartPolicy(), stop_timeout_s=0.5, command=[sys.executable, "-c", script]
    )
    child = supervisor.children[0]
    supervisor._start(child)
    time.sleep(1.0)  # let it install the handler
    supervisor.stop_children(signal.SIGTERM)
    assert child.proc.returncode == -signal.SIGKILL
