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

from models.errors import InputError
from stream_app.events import decode_highlight
from stream_app.settings import LATENCY, Settings, kafka_python_security_kwargs

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

    Never creates a topic: while the highlights topic does not exist (no worker
    has started yet) it waits for it, within ``timeout_s``.

    Events that do not parse are logged and skipped. On Tansu, "latest" can
    point inside the last record batch (ListOffsets bug, see ENVIRONMENT.md);
    without ``from_beginning`` records timestamped before the call are skipped,
    which assumes the producer's clock is not behind this one.
    """
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    from stream_app.broker import check_tls, wait_reachable
    from stream_app.errors import BrokerUnreachableError

    topic = settings.topics.highlights
    wanted = set(track_ids) if track_ids is not None else None
    security = kafka_python_security_kwargs(settings)
    wait_reachable(settings.kafka.bootstrap)
    check_tls(settings.kafka.bootstrap, security)  # a refused certificate: a clear error at once
    started_ms = int(time.time() * 1000)
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
            client_id="hookstream-subscribe",
            fetch_max_wait_ms=int(LATENCY["subscriber_fetch_max_wait_ms"]),
            allow_auto_create_topics=False,  # the workers create the topics, with their partitions
            **security,
        )
    except KafkaError as exc:
        raise BrokerUnreachableError(
            f"cannot reach the Kafka broker at {settings.kafka.bootstrap} ({exc}); is it running?"
        ) from None
    try:
        partitions = _wait_for_topic(consumer, topic, timeout_s)
        if not partitions:
            return
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


def _wait_for_topic(consumer, topic: str, timeout_s: float | None) -> set[int]:
    """The topic's partitions once it exists; empty if ``timeout_s`` passes first."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    warned = False
    while True:
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return set(partitions)
        if deadline is not None and time.monotonic() >= deadline:
            log.warning("topic %r does not exist on %s; no highlight events", topic,
                        ",".join(consumer.config["bootstrap_servers"]))
            return set()
        if not warned:
            log.info("waiting for topic %r: the workers create it when they start", topic)
            warned = True
        time.sleep(0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic())))
