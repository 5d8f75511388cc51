"""The Quix Streams side of ``bench/quix_side_by_side.py``: the project's own per-customer profile logic,
unchanged, run by a Quix Streams application. Started by that bench in its own environment (Quix Streams
3.28.1 cannot share the project's venv: it needs pydantic-settings < 2.16, the project pins 2.16.3), with
the project's source snapshot on ``PYTHONPATH``.

Per record of the inbound topics (keyed by userId, else anonymousId, as streamcdp's ingest keys them):
``schemas.validation.decode_event`` (the contract check streamcdp's ingest runs), then
``core.profile.apply.apply_event`` on the key's profile kept in Quix's RocksDB state (the msgpack bytes
streamcdp stores, ``schemas.codecs``, passed through Quix's state serializer as they are), with a
changelog topic (Quix's default). What it does not do, and streamcdp does: identity resolution and
merges, segments, scores, triggers, output topics, dead letters.

Configuration from the environment (the bench sets it): ``QUIX_BOOTSTRAP``, ``QUIX_TOPICS`` (comma
separated), ``QUIX_GROUP``, ``QUIX_STATE_DIR``, ``QUIX_EXPECTED`` (stop after that many records),
``QUIX_PROGRESS`` (a file: one ``<unix time> <records>`` line every 0.5 s), ``QUIX_GUARANTEE``
(``at-least-once`` / ``exactly-once``), ``QUIX_PII_HASH_KEY``, ``QUIX_COMMIT_INTERVAL_S``.
"""

from __future__ import annotations

import os
import time

from quixstreams import Application
from quixstreams.state.rocksdb import RocksDBOptions

from agents.tables import decode_profile
from core.profile.apply import apply_event
from core.profile.policy import ProfilePolicy
from schemas.codecs import encode_msgpack
from schemas.errors import InvalidEvent
from schemas.validation import decode_event

PROFILE = b"profile"  # the state key; bytes, so the pass-through dumps below applies to values only


def same_bytes(value: bytes) -> bytes:
    """Quix's state (de)serializer: the value already is bytes (the msgpack profile), store it as it is."""
    return value


def main() -> None:
    env = os.environ
    expected = int(env["QUIX_EXPECTED"])
    policy = ProfilePolicy(pii_hash_key=env["QUIX_PII_HASH_KEY"])
    app = Application(
        broker_address=env["QUIX_BOOTSTRAP"],
        consumer_group=env["QUIX_GROUP"],
        auto_offset_reset="earliest",
        state_dir=env["QUIX_STATE_DIR"],
        processing_guarantee=env["QUIX_GUARANTEE"],
        commit_interval=float(env["QUIX_COMMIT_INTERVAL_S"]),
        auto_create_topics=True,
        rocksdb_options=RocksDBOptions(dumps=same_bytes, loads=same_bytes),
    )
    progress = open(env["QUIX_PROGRESS"], "a", buffering=1)  # noqa: SIM115 (open for the app's lifetime)
    counts = {"records": 0, "rejected": 0, "last_report": 0.0}

    def update_profile(value: bytes, state) -> None:  # state: Quix's State
        counts["records"] += 1
        try:
            event = decode_event(value, now=time.time())
        except InvalidEvent:
            counts["rejected"] += 1
        else:
            raw = state.get(PROFILE)
            before = decode_profile(raw) if raw is not None else None
            state.set(PROFILE, encode_msgpack(apply_event(before, event, now=event.timestamp, policy=policy)))
        now = time.time()
        if now - counts["last_report"] >= 0.5 or counts["records"] >= expected:
            counts["last_report"] = now
            progress.write(f"{now:.3f} {counts['records']} {counts['rejected']}\n")
            if counts["records"] >= expected:
                app.stop()

    for name in env["QUIX_TOPICS"].split(","):
        topic = app.topic(name, value_deserializer="bytes", key_deserializer="bytes")
        app.dataframe(topic).update(update_profile, stateful=True)
    app.run()
    progress.write(f"{time.time():.3f} {counts['records']} {counts['rejected']} done\n")
    progress.close()


if __name__ == "__main__":
    main()
