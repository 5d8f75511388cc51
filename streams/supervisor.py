"""``streamcdp worker --processes N``: run N worker processes of one deployment on one machine.

The worker is one Python process and so one core; a machine with more cores runs more of them. They are
ordinary workers of the same app id: they join one consumer group and the co-partitioning assignor
splits the partitions between them, exactly as separately started workers do. The supervisor only
starts them, forwards SIGTERM / SIGINT, restarts one that dies (with a bounded backoff) and stops every
child by its pid when it exits.

What each child gets (child ``i`` of ``N``, ``i`` counted from 0; everything else is the environment):

- ``STREAMCDP_DATA_DIR``: ``<data_dir>/process-<i>`` — its own RocksDB stores; the same directory after
  a restart, so a restarted child reads only the changelog's tail for partitions it held before.
- ``STREAMCDP_WEB_PORT``: ``<web_port> + i`` — profile API, ``/readyz`` and ``/metrics`` (the metrics
  are served on the web port, so this is the metrics port too: scrape ``web_port .. web_port + N - 1``).
- ``STREAMCDP_ADVERTISED_URL``: when set, its port plus ``i`` (the URL must carry an explicit port);
  when empty, each child advertises its own ``http://WEB_HOST:WEB_PORT`` as a single worker does.

Restarts: a child that exits while no stop was requested is started again after 1, 2, 4 … s (at most
30 s); more than ``max_restarts`` restarts of one child within ``restart_window_s`` mean it cannot run
(a bad setting, a broker that is gone for good): the supervisor then stops the others and exits 1, so
the orchestrator above it sees the failure instead of a loop.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from schemas.errors import StreamcdpError
from streams.settings import Settings

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.2
PR_SET_PDEATHSIG = 1  # prctl option: the signal a child gets when its parent dies (Linux)


class SupervisorError(StreamcdpError):
    """The supervisor cannot derive its children's settings (e.g. an advertised URL without a port)."""


@dataclass(frozen=True)
class ChildPlan:
    """What child ``index`` of the supervisor runs with: its own directory, port and advertised URL."""

    index: int
    data_dir: Path
    web_port: int
    advertised_url: str

    def environment(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` (the supervisor's environment) with this child's own settings."""
        env = dict(base)
        env["STREAMCDP_DATA_DIR"] = str(self.data_dir)
        env["STREAMCDP_WEB_PORT"] = str(self.web_port)
        if self.advertised_url:
            env["STREAMCDP_ADVERTISED_URL"] = self.advertised_url
        else:
            env.pop("STREAMCDP_ADVERTISED_URL", None)
        return env


def _shifted_url(url: str, offset: int) -> str:
    """``url`` with its port plus ``offset``."""
    parts = urlsplit(url.rstrip("/"))
    if parts.port is None:
        message = (
            f"STREAMCDP_ADVERTISED_URL {url!r} has no explicit port: with --processes each child advertises "
            "that port plus its index, so the port must be written out"
        )
        raise SupervisorError(message)
    netloc = f"{parts.hostname}:{parts.port + offset}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def plan_children(settings: Settings, processes: int) -> list[ChildPlan]:
    """The settings of each of ``processes`` children (see the module docstring for the rule)."""
    if processes < 1:
        message = f"--processes must be at least 1, not {processes}"
        raise SupervisorError(message)
    if settings.web_port + processes - 1 > 65535:
        message = f"web ports {settings.web_port}..{settings.web_port + processes - 1} do not fit below 65536"
        raise SupervisorError(message)
    return [
        ChildPlan(
            index=index,
            data_dir=settings.data_dir / f"process-{index}",
            web_port=settings.web_port + index,
            advertised_url=_shifted_url(settings.advertised_url, index) if settings.advertised_url else "",
        )
        for index in range(processes)
    ]


@dataclass(frozen=True)
class RestartPolicy:
    """When a child that died is started again: exponential backoff, bounded; ``None`` means give up."""

    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    max_restarts: int = 5
    restart_window_s: float = 300.0

    def next_delay(self, restarts: Sequence[float], now: float) -> float | None:
        """Seconds to wait before restarting a child that has been restarted at the (monotonic) moments
        ``restarts``; ``None`` when it was already restarted ``max_restarts`` times within the window."""
        recent = [moment for moment in restarts if now - moment < self.restart_window_s]
        if len(recent) >= self.max_restarts:
            return None
        return min(self.max_delay_s, self.first_delay_s * 2 ** len(recent))


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it if the supervisor dies (even by SIGKILL), so no worker is
    left holding partitions behind a supervisor that is gone."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def worker_command() -> list[str]:
    """How a child is started: this interpreter running the plain ``streamcdp worker``."""
    return [sys.executable, "-m", "streams.cli", "worker"]


@dataclass
class Child:
    """One child process and its restart history."""

    plan: ChildPlan
    proc: subprocess.Popen | None = None
    restarts: list[float] = field(default_factory=list)
    restart_at: float | None = None  # when a dead child is due to start again


class Supervisor:
    """Starts the children, restarts dead ones, and stops them all by pid on SIGTERM / SIGINT."""

    def __init__(
        self,
        plans: Sequence[ChildPlan],
        *,
        policy: RestartPolicy,
        stop_timeout_s: float,
        command: Sequence[str] | None = None,
        environment: dict[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children = [Child(plan) for plan in plans]
        self.policy = policy
        self.stop_timeout_s = stop_timeout_s
        self.command = list(command or worker_command())
        self.environment = dict(os.environ if environment is None else environment)
        self.clock = clock
        self.stop_signal: int | None = None

    def request_stop(self, signum: int, _frame: object = None) -> None:
        self.stop_signal = signum

    def _start(self, child: Child) -> None:
        child.plan.data_dir.mkdir(parents=True, exist_ok=True)
        child.proc = subprocess.Popen(
            self.command,
            env=child.plan.environment(self.environment),
            stdin=subprocess.DEVNULL,
            # Its own process group: a Ctrl-C at the terminal reaches the supervisor only, which forwards it
            # once; the child never sees the signal twice.
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 (only prctl; no locks taken before exec)
        )
        child.restart_at = None
        log.info(
            "child %d started: pid %d, web port %d, data dir %s",
            child.plan.index,
            child.proc.pid,
            child.plan.web_port,
            child.plan.data_dir,
        )

    def pids(self) -> list[int]:
        """Pids of the children that are running now."""
        return [child.proc.pid for child in self.children if child.proc is not None and child.proc.poll() is None]

    def check_children(self) -> bool:
        """Restart dead children that are due; False when one died too often (the supervisor must give up)."""
        now = self.clock()
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None and child.restart_at is None:
                delay = self.policy.next_delay(child.restarts, now)
                code = child.proc.returncode
                if delay is None:
                    log.error(
                        "child %d exited with %s after %d restarts within %.0f s: giving up",
                        child.plan.index,
                        code,
                        len(child.restarts),
                        self.policy.restart_window_s,
                    )
                    return False
                log.warning("child %d exited with %s; restarting in %.1f s", child.plan.index, code, delay)
                child.restart_at = now + delay
            if child.restart_at is not None and now >= child.restart_at:
                child.restarts.append(now)
                self._start(child)
        return True

    def stop_children(self, signum: int = signal.SIGTERM) -> None:
        """Send ``signum`` to each running child by pid; SIGKILL those still running after the timeout."""
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signum)
        deadline = self.clock() + self.stop_timeout_s
        for child in self.children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(0.0, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                log.warning("child %d (pid %d) still running: SIGKILL", child.plan.index, child.proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
                child.proc.wait()
            log.info("child %d (pid %d) exited with %s", child.plan.index, child.proc.pid, child.proc.returncode)

    def run(self) -> int:
        """Run until SIGTERM / SIGINT (exit 0 once every child stopped) or a child that keeps dying (exit 1)."""
        previous = {signum: signal.signal(signum, self.request_stop) for signum in (signal.SIGTERM, signal.SIGINT)}
        healthy = True
        try:
            for child in self.children:
                self._start(child)
            while self.stop_signal is None:
                healthy = self.check_children()
                if not healthy:
                    break
                time.sleep(POLL_INTERVAL_S)
            if self.stop_signal is not None:
                log.info("signal %d: stopping %d children", self.stop_signal, len(self.pids()))
        finally:
            # Forward the signal that was received (a worker treats SIGTERM and SIGINT alike), SIGTERM otherwise.
            self.stop_children(self.stop_signal or signal.SIGTERM)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return 0 if healthy else 1


def run_supervisor(
    processes: int, *, max_restarts: int, restart_window_s: float, stop_timeout_s: float, settings: Settings
) -> int:
    """``streamcdp worker --processes N``: plan the children from ``settings`` and supervise them."""
    plans = plan_children(settings, processes)
    policy = RestartPolicy(max_restarts=max_restarts, restart_window_s=restart_window_s)
    log.info(
        "supervising %d workers of %s: web ports %d-%d, data dirs %s/process-*",
        processes,
        settings.app_id,
        plans[0].web_port,
        plans[-1].web_port,
        settings.data_dir,
    )
    return Supervisor(plans, policy=policy, stop_timeout_s=stop_timeout_s).run()
