"""Production settings of the worker: the advertised URL and the topics' durability."""

from __future__ import annotations

import pydantic
import pytest

from streams.settings import Settings
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
