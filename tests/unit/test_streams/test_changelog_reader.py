"""The changelog reader's end offsets: asked again while the broker says the partition is not ready yet (a
topic just created: librdkafka does not retry that request itself), any other error at once.
Reading against the real broker: ``tests/integration/test_restore.py``."""

from __future__ import annotations

import pytest
from aiokafka.structs import TopicPartition
from confluent_kafka import KafkaError, KafkaException

from streams import changelog_reader
from streams.changelog_reader import ChangelogReader

TP = TopicPartition("app.state-changelog", 0)


class WatermarkConsumer:
    """Answers ``get_watermark_offsets`` with ``answers`` in turn: an error code is raised, a pair returned."""

    def __init__(self, answers: list[int | tuple[int, int]]) -> None:
        self.answers = answers
        self.asked = 0

    def get_watermark_offsets(self, partition, timeout: float):
        answer = self.answers[self.asked]
        self.asked += 1
        if isinstance(answer, int):
            raise KafkaException(KafkaError(answer))
        return answer


def reader_over(consumer: WatermarkConsumer) -> ChangelogReader:
    reader = ChangelogReader({})
    reader._consumer = consumer  # type: ignore[assignment]
    return reader


async def test_the_end_offset_is_asked_again_while_the_partition_has_no_leader_yet(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(changelog_reader, "END_OFFSETS_RETRY_S", 0.001)
    not_ready = [KafkaError.LEADER_NOT_AVAILABLE, KafkaError.NOT_LEADER_FOR_PARTITION]
    consumer = WatermarkConsumer([*not_ready, (0, 42)])
    assert await reader_over(consumer).end_offsets([TP]) == {TP: 42}
    assert consumer.asked == 3


async def test_any_other_error_of_the_end_offset_is_raised_at_once():
    consumer = WatermarkConsumer([KafkaError.TOPIC_AUTHORIZATION_FAILED, (0, 42)])
    with pytest.raises(KafkaException) as raised:
        await reader_over(consumer).end_offsets([TP])
    assert raised.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert consumer.asked == 1


async def test_a_partition_that_stays_without_a_leader_fails_after_the_timeout(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(changelog_reader, "END_OFFSETS_TIMEOUT_S", 0.05)
    monkeypatch.setattr(changelog_reader, "END_OFFSETS_RETRY_S", 0.01)
    consumer = WatermarkConsumer([KafkaError.LEADER_NOT_AVAILABLE] * 100)
    with pytest.raises(KafkaException):
        await reader_over(consumer).end_offsets([TP])
    assert 2 <= consumer.asked < 100
