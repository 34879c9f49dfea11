"""Read highlight events from ``highlights`` (kafka-python, no consumer group).

The consumer is assigned every partition of the topic by hand: no group join
(which takes seconds on Tansu), no committed offsets, any number of
subscribers side by side. Events are deduplicated by ``event_id`` (the worker
delivers at least once).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator

from models.errors import HookstreamError, InputError
from stream_app.events import decode_highlight
from stream_app.settings import Settings, kafka_python_security_kwargs

log = logging.getLogger(__name__)

DEDUPE_WINDOW = 100_000  # event ids remembered


def iter_highlights(
    settings: Settings,
    *,
    from_beginning: bool = False,
    final_only: bool = False,
    timeout_s: float | None = None,
    track_ids: Iterable[str] | None = None,
    poll_ms: int = 200,
) -> Iterator[dict]:
    """Yield highlight events as they arrive, each ``event_id`` once.

    Parameters
    ----------
    from_beginning : start at the earliest retained event; else only events
        published after the call
    final_only : skip ``provisional`` events
    timeout_s : stop when this many seconds pass without yielding an event
        (skipped, filtered or duplicate records do not count); None waits forever
    track_ids : only these tracks

    Events that do not parse are logged and skipped. On Tansu, "latest" can
    point inside the last record batch (ListOffsets bug, see ENVIRONMENT.md);
    without ``from_beginning`` records timestamped before the call are skipped,
    which assumes the producer's clock is not behind this one.
    """
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    from stream_app.broker import ensure_topics

    topic = settings.topics.highlights
    wanted = set(track_ids) if track_ids is not None else None
    security = kafka_python_security_kwargs(settings)
    # The topic may not exist yet (subscriber started before the worker).
    ensure_topics(settings.kafka.bootstrap, {topic: settings.partitions}, security=security)
    started_ms = int(time.time() * 1000)
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
            client_id="hookstream-subscribe",
            **security,
        )
    except KafkaError as exc:
        raise HookstreamError(
            f"cannot reach the Kafka broker at {settings.kafka.bootstrap} ({exc}); is it running?"
        ) from None
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if from_beginning:
            consumer.seek_to_beginning(*tps)
        else:
            consumer.seek_to_end(*tps)
        for tp in tps:
            consumer.position(tp)  # resolve now, so that "latest" means "when called"
        seen: OrderedDict[str, None] = OrderedDict()
        last_yield = time.monotonic()
        while True:
            wait_ms = poll_ms
            if timeout_s is not None:
                left = timeout_s - (time.monotonic() - last_yield)
                if left <= 0:
                    return
                wait_ms = max(1, min(poll_ms, int(left * 1000)))
            batches = consumer.poll(timeout_ms=wait_ms)
            for records in batches.values():
                for record in records:
                    if not from_beginning and record.timestamp is not None and 0 <= record.timestamp < started_ms:
                        continue  # replayed tail of the last batch (Tansu "latest" bug)
                    try:
                        event = decode_highlight(record.value)
                    except InputError as exc:
                        log.warning("skipping %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
                        continue
                    if final_only and event["kind"] != "final":
                        continue
                    if wanted is not None and event["track_id"] not in wanted:
                        continue
                    eid = event["event_id"]
                    if eid in seen:
                        continue
                    seen[eid] = None
                    if len(seen) > DEDUPE_WINDOW:
                        seen.popitem(last=False)
                    yield event
                    last_yield = time.monotonic()
    finally:
        consumer.close()
