"""Builders of normalised events and a tiny in-memory profile stage for the core unit tests."""

from __future__ import annotations

import dataclasses
import itertools
from collections import deque
from typing import Any

from core.identity import NO_IDENTITY
from core.profile.policy import ProfilePolicy
from core.profile_stage import KeyState, StagePolicy, StepResult, step_key
from core.triggers.definitions import TriggerDefinitions, load_triggers
from core.triggers.engine import TriggerPolicy
from schemas.commands import ApplyEvent, ProfileCommand
from schemas.events import CLICKSTREAM, CUSTOMER, MESSAGING, OTHER, PURCHASE, Event

T0 = 1_700_000_000.0
KEY = b"test-secret-key"
POLICY = ProfilePolicy(pii_hash_key=KEY)
STAGE_POLICY = StagePolicy(profile=POLICY)

SHIPPED_TRIGGERS = load_triggers()


def shipped_triggers(*, only: tuple[str, ...] = (), after: dict[str, float] | None = None, **kw: Any) -> TriggerPolicy:
    """The shipped definitions (``config/triggers.yaml``), perhaps ``only`` some kinds, with ``after`` waits
    (kind → seconds) changed; ``kw`` goes to ``TriggerPolicy`` (e.g. ``consumables``)."""
    definitions = [d for d in SHIPPED_TRIGGERS.definitions if not only or d.name in only]
    for index, definition in enumerate(definitions):
        if after and definition.name in after:
            wait = dataclasses.replace(definition.wait, after=after[definition.name])
            definitions[index] = dataclasses.replace(definition, wait=wait)
    return TriggerPolicy(TriggerDefinitions(tuple(definitions), "test", "v-test"), **kw)


_ids = itertools.count()
_FAMILIES = {
    "Order Completed": PURCHASE,
    "Order Refunded": PURCHASE,
    "Consent Updated": CUSTOMER,
    "Deletion Requested": CUSTOMER,
}


def family_of(name: str) -> str:
    if name in _FAMILIES:
        return _FAMILIES[name]
    if name.startswith("Message") or name == "Unsubscribed":
        return MESSAGING
    if name.startswith(("Product", "Checkout", "Cart")):
        return CLICKSTREAM
    return OTHER


def track(
    name: str,
    at: float = T0,
    *,
    user: str | None = "u1",
    anon: str | None = None,
    message_id: str | None = None,
    context: dict | None = None,
    **properties: Any,
) -> Event:
    return Event(
        type="track",
        event=name,
        message_id=message_id or f"m{next(_ids)}",
        timestamp=at,
        family=family_of(name),
        user_id=user,
        anonymous_id=anon,
        properties=properties,
        context=context or {},
    )


def identify(
    at: float = T0, *, user: str | None = "u1", anon: str | None = None, message_id: str | None = None, **traits: Any
) -> Event:
    return Event(
        type="identify",
        message_id=message_id or f"m{next(_ids)}",
        timestamp=at,
        family=CUSTOMER,
        user_id=user,
        anonymous_id=anon,
        traits=traits,
    )


def alias(previous: str, user: str, at: float = T0) -> Event:
    return Event(
        type="alias", message_id=f"m{next(_ids)}", timestamp=at, family=CUSTOMER, user_id=user, previous_id=previous
    )


def page(at: float = T0, *, user: str | None = "u1", anon: str | None = None, context: dict | None = None) -> Event:
    return Event(
        type="page",
        message_id=f"m{next(_ids)}",
        timestamp=at,
        family=CLICKSTREAM,
        user_id=user,
        anonymous_id=anon,
        context=context or {},
    )


class StageSim:
    """The profile stage with dict tables and a FIFO in place of the profile-commands topic."""

    def __init__(self, policy: StagePolicy = STAGE_POLICY) -> None:
        self.policy = policy
        self.states: dict[str, KeyState] = {}
        self.queue: deque[tuple[str, ProfileCommand]] = deque()
        self.notes: list[str] = []
        self.results: list[StepResult] = []
        self.log: list[tuple[str, ProfileCommand]] = []

    def state(self, key: str) -> KeyState:
        return self.states.get(key) or KeyState(key=key)

    def send(self, key: str, command: ProfileCommand) -> None:
        self.queue.append((key, command))

    def send_event(self, event: Event) -> None:
        self.send(event.routing_id, ApplyEvent(event=event))

    def run(self, limit: int = 10_000) -> None:
        for _ in range(limit):
            if not self.queue:
                return
            key, command = self.queue.popleft()
            self.log.append((key, command))
            result = step_key(self.state(key), command, now=T0, policy=self.policy)
            self.results.append(result)
            self.states[key] = result.state
            self.notes.extend(result.notes)
            self.queue.extend(result.forwards)
        msg = "command queue did not drain"
        raise AssertionError(msg)

    def feed(self, *events: Event) -> StageSim:
        for event in events:
            self.send_event(event)
            self.run()
        return self

    def profile(self, key: str):
        return self.state(key).profile

    def identity(self, key: str):
        return self.state(key).identity

    def is_clean(self, key: str) -> bool:
        state = self.state(key)
        return state.profile is None and state.identity.redirect_to is None and state.identity != NO_IDENTITY
