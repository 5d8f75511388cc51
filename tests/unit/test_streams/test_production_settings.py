"""Production settings of the worker: the advertised URL, the topics' durability, deterministic defaults."""

from __future__ import annotations

import orjson
import pydantic
import pytest

from core.profile_stage import KeyState, step_key
from schemas.commands import ApplyEvent
from schemas.validation import decode_event
from streams.settings import Settings
from streams.stage_config import stage_policy
from streams.worker import web_url


def test_advertised_url_is_what_peers_get_when_set() -> None:
    bound_everywhere = Settings(web_host="0.0.0.0", web_port=6066)
    assert web_url(bound_everywhere) == "http://0.0.0.0:6066"  # unusable by a peer: hence the setting
    advertised = Settings(web_host="0.0.0.0", advertised_url="http://worker-0.streamcdp-worker.ns.svc:6066/")
    assert web_url(advertised) == "http://worker-0.streamcdp-worker.ns.svc:6066"


def test_min_insync_replicas_cannot_exceed_the_replication_factor() -> None:
    assert Settings(topic_replication_factor=3, topic_min_insync_replicas=2).topic_min_insync_replicas == 2
    with pytest.raises(pydantic.ValidationError, match="exceeds"):
        Settings(topic_replication_factor=1, topic_min_insync_replicas=2)


def test_log_format_is_text_or_json() -> None:
    assert Settings(log_format="json").log_format == "json"
    with pytest.raises(pydantic.ValidationError):
        Settings(log_format="xml")


def test_by_default_how_far_behind_the_worker_is_moves_no_segment_change():
    """A restarted or replaying worker is behind its input; by default (``STREAMCDP_AUDIENCE_BACKLOG_FRACTION``
    0) that does not stretch the segment refresh, so a burst is decided at the same event times as live."""
    stage = stage_policy(Settings())
    at = 1_790_000_000.0

    def burst(backlog_s: float) -> list:
        state, outcomes = KeyState(key="c1"), []
        for n in range(6):  # an order every 2 s: each one after the 1 s refresh interval
            payload = {
                "type": "track",
                "event": "Order Completed",
                "messageId": f"m{n}",
                "userId": "c1",
                "timestamp": at + 2 * n,
                "properties": {"order_id": f"o{n}", "revenue": 20.0 + n},
            }
            command = ApplyEvent(event=decode_event(orjson.dumps(payload), now=at + 2 * n))
            result = step_key(state, command, now=at + 2 * n, policy=stage, backlog_s=backlog_s)
            state = result.state
            outcomes.append((result.audience_changes, result.due_at, state.profile.audience_refreshed_at))
        return outcomes

    live = burst(0.0)
    assert any(changes for changes, _, _ in live)  # the burst moves segments: the comparison means something
    assert burst(3600.0) == live
