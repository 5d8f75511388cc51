"""A scripted journey through the profile stage with a perfect clock, for the trigger tests.

``Journey(policy).play(*steps)``: each step is an ``Event`` (applied at its own timestamp, with every
command it causes — links, merges — applied at once) or ``Tick(at)``; before each step the clock wakes
every key whose wake-up time has come, at exactly that time, in time order. ``sent`` lists every
published trigger; ``outcomes`` every ``(kind, outcome)``. ``lag``: how far behind its events the worker
reads them (a backlog, a replay): each step is played ``lag`` seconds after its own time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from core.profile_stage import KeyState, StagePolicy, step_key
from schemas.commands import ApplyEvent, ForgetCustomer, ProfileCommand, WakeUp
from schemas.events import Event
from schemas.profile import Profile
from schemas.triggers import Trigger


@dataclass(frozen=True)
class Tick:
    at: float


@dataclass(frozen=True)
class Forget:
    customer_id: str
    at: float


class Journey:
    def __init__(self, policy: StagePolicy, *profiles: Profile, lag: float = 0.0) -> None:
        self.policy = policy
        self.lag = lag
        self.states: dict[str, KeyState] = {p.customer_id: KeyState(key=p.customer_id, profile=p) for p in profiles}
        self.due: dict[str, float] = {}
        self.sent: list[Trigger] = []
        self.outcomes: list[tuple[str, str]] = []
        self.link_times: dict[str, float] = {}  # alias → when its link was applied

    def state(self, key: str) -> KeyState:
        return self.states.get(key) or KeyState(key=key)

    def _run(self, key: str, command: ProfileCommand, now: float) -> None:
        queue: deque[tuple[str, ProfileCommand]] = deque([(key, command)])
        while queue:
            target, next_command = queue.popleft()
            before = self.state(target).identity.redirect_to
            result = step_key(self.state(target), next_command, now=now, policy=self.policy)
            self.states[target] = result.state
            if result.state.identity.redirect_to is not None and before != result.state.identity.redirect_to:
                self.link_times[target] = now
            if result.due_at is None:
                self.due.pop(target, None)
            else:
                self.due[target] = result.due_at
            self.sent.extend(result.triggers)
            self.outcomes.extend(result.trigger_outcomes)
            queue.extend(result.forwards)

    def advance(self, to: float) -> None:
        """Wake every key due up to ``to``, each at its own due time, earliest first."""
        while True:
            due = sorted((at, key) for key, at in self.due.items() if at <= to)
            if not due:
                return
            at, key = due[0]
            self._run(key, WakeUp(now=at), at)

    def wake(self, key: str, at: float) -> None:
        """A wake-up of ``key`` at ``at``, whatever its due time (a late clock, a restart)."""
        self._run(key, WakeUp(now=at), at)

    def play(self, *steps: Event | Tick | Forget) -> Journey:
        lag = self.lag
        for step in steps:
            if isinstance(step, Tick):
                self.advance(step.at + lag)
            elif isinstance(step, Forget):
                self.advance(step.at + lag)
                forget = ForgetCustomer(customer_id=step.customer_id, at=step.at)
                self._run(step.customer_id, forget, step.at + lag)
            else:
                self.advance(step.timestamp + lag)
                self._run(step.routing_id, ApplyEvent(event=step), step.timestamp + lag)
        return self

    def decisions(self) -> list[tuple[float, str, str, str]]:
        """``(decided_at, kind, customer_id, channel)`` of every trigger sent, in order."""
        return [(t.decided_at, t.kind, t.customer_id, t.channel) for t in self.sent]

    def profile(self, key: str) -> Profile | None:
        return self.state(key).profile
