"""The Faust application: topics, the track-state table, the scoring agent, the idle timer.

Data path: ``audio-chunks`` (keyed by track id) -> agent ``score`` (batches of
events, one scorer call per batch, in a worker thread) -> ``highlights`` and
``audio-chunks.dlq``. Each track's record lives in the table ``track-state``
(memory store, changelog topic on the broker), so a restarted worker recovers
every open track and continues where it stopped; chunks redelivered after a
crash are recognised by their sequence numbers and dropped.

A worker acts only on tracks of partitions it owns now: after each rebalance
the table drops every key of a partition no longer assigned, the ones this
worker wrote itself included (``faust_patches.OwnedMemoryStore``), and the
idle sweep skips keys of partitions it does not own.

The table partitions its changelog by track id with Kafka's default
partitioner (not by the current event's partition, because one batch holds
events of many partitions; ``faust_patches.OwnedTable.partition_for_key``);
producers must therefore key chunk events by track id with Kafka's default
partitioner, as ``hookstream ingest`` and every standard client do. A track's
record is a head plus append-only segments (:mod:`stream_app.tracks`), all
in its track id's partition.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable

import faust

from stream_app import events
from stream_app.faust_patches import App, OwnedTable, TableManager, key_partition
from stream_app.health import Health
from stream_app.metrics import Metrics
from stream_app.processor import Incoming, Outcome, Processor
from stream_app.settings import FAUST_BROKER_KW, Settings, faust_broker_kwargs, faust_group_kwargs
from stream_app.tracks import RecordTable, TrackRecord

if TYPE_CHECKING:  # this module loads without torch: the model loads while the worker joins
    from models.detect import Detector

log = logging.getLogger(__name__)

APP_ID = "hookstream"
TABLE = "track-state"
SWEEP_INTERVAL_S = 1.0
HEARTBEAT_INTERVAL_S = 1.0  # the event loop's heartbeat for /healthz
GAUGE_INTERVAL_S = 1.0  # how often the open/ended table gauges are recounted


def create_app(settings: Settings, detector: "Detector | Callable[[], Detector]", metrics: Metrics, *,
               context_chunks: int | None = None, app_id: str = APP_ID,
               health: Health | None = None, on_loaded: Callable[["Detector"], None] | None = None,
               ) -> faust.App:
    """The worker's Faust app.

    ``detector`` may be a callable that builds it (imports torch, reads the
    checkpoint): it then runs on the scorer thread at once, while Faust starts
    and joins the consumer group, and the first batch waits for it. This
    halves a restarted worker's time to its first scored chunk (the group join
    and the model load overlap). ``context_chunks`` (the scorer's provisional
    context, which the table's record layout needs) is then required;
    ``on_loaded`` is called on the scorer thread with the built detector.
    """
    if context_chunks is None:
        if callable(detector):
            raise TypeError("create_app: pass context_chunks with a detector loader")
        context_chunks = detector.scorer.cfg.context_chunks
    app = App(
        app_id,
        **faust_broker_kwargs(settings),
        **FAUST_BROKER_KW,
        **faust_group_kwargs(settings),
        store="memory://",
        # The memory store keeps nothing on disk, but Faust still makes "<app id>-data/v1/tables"
        # under its data directory (the current folder by default): a temporary folder instead.
        datadir=os.path.join(tempfile.gettempdir(), f"{app_id}-data"),
        topic_partitions=settings.partitions,
        topic_allow_declare=True,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        broker_commit_every=50,
        broker_commit_interval=1.0,
        # Chunk events are ~176 KB: Faust's default buffer of 4,096 events per
        # partition could hold ~700 MB during a backlog.
        stream_buffer_maxsize=256,
        TableManager=TableManager,
        Table=OwnedTable,
    )
    t = settings.topics
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    chunks = app.topic(t.chunks, partitions=settings.partitions, **raw)
    highlights = app.topic(t.highlights, partitions=settings.partitions, **raw)
    dead_letters = app.topic(t.dead_letter, partitions=settings.partitions, **raw)
    # key_type/value_type bytes make the table's serializers "raw"; a schema alone
    # leaves them "json", and changelog recovery then fails on every record.
    table = app.Table(TABLE, default=None, partitions=settings.partitions,
                      key_type=bytes, value_type=bytes, use_partitioner=True)
    records_table = RecordTable(table, context_chunks=context_chunks,
                                segment_chunks=settings.stream.state_segment_chunks)
    health = health or Health(stall_after_s=settings.worker.stall_after_s)
    health.readiness = lambda: (_readiness(app, owned_partitions) if loading.done()
                                else (False, "loading the model"))
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer")

    def build() -> None:
        try:
            det = detector() if callable(detector) else detector
            if on_loaded is not None:
                on_loaded(det)
            loading.set_result(Processor(det, settings.stream, metrics))
        except BaseException as exc:  # noqa: BLE001 (the agent re-raises it)
            loading.set_exception(exc)

    # The model loads on the scorer thread from the moment the app starts: after Faust's
    # setup (which then does not compete with torch's import for the interpreter lock),
    # overlapping the table manager's pause and the group join, both waits.
    loading: Future = Future()
    app.on_start_callbacks = [lambda: executor.submit(build)]  # first in the scorer thread's queue
    lock = asyncio.Lock()  # the agent and the idle timer both write the table

    def owned_partitions() -> set[int]:
        return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == t.chunks}

    def load(track_id: str) -> TrackRecord | None:
        try:
            return records_table.load(track_id)
        except Exception:
            log.exception("unreadable record for track %r; starting it afresh", track_id)
            return None

    async def publish(outcome: Outcome) -> None:
        for tid, record in outcome.records.items():
            if record is None:
                records_table.delete(tid)
            else:
                records_table.save(record)
        for e in outcome.highlights:
            await highlights.send(key=e["track_id"].encode(), value=events.encode_highlight(e))
            metrics.highlights.labels(e["kind"]).inc()
        for latency in outcome.latencies:
            metrics.provisional_latency.observe(latency)
        for d in outcome.dead_letters:
            await dead_letters.send(key=events.dead_letter_key(d), value=events.encode_dead_letter(d))

    def count_records() -> None:
        """The open/ended gauges: one pass over the table's heads (a JSON header each), so it
        runs on a timer, not after every batch (with 200 open tracks a pass took 4.3 ms, about
        20 times a second at 100 chunks/s)."""
        mine = owned_partitions()
        ended = open_ = 0
        for k, v in records_table.heads():
            if v and key_partition(k, settings.partitions) in mine:
                if _ended(v):
                    ended += 1
                else:
                    open_ += 1
        metrics.active_tracks.set(open_)
        metrics.table_records.labels("open").set(open_)
        metrics.table_records.labels("ended").set(ended)

    @app.agent(chunks, concurrency=1)
    async def score(stream):
        loop = asyncio.get_running_loop()
        processor = await asyncio.wrap_future(loading)
        async for batch in stream.take_events(settings.worker.batch_max_tracks,
                                              within=settings.worker.batch_wait_s):
            msgs = [Incoming(e.message.key, e.message.value, e.message.topic,
                             e.message.partition, e.message.offset,
                             getattr(e.message, "time_in", None) or time.monotonic())
                    for e in batch]
            health.batch_started()
            try:
                async with lock:
                    records = {}
                    for m in msgs:
                        tid = _track_key(m.key)
                        if tid is not None and tid not in records:
                            records[tid] = load(tid)
                    outcome = await loop.run_in_executor(executor, processor.process, msgs, records)
                    await publish(outcome)
            finally:
                health.batch_done()

    # Idle time counts from the end of the last rebalance at the earliest: a track's
    # chunks may wait in the topic while no worker owns its partition (a restart), and
    # its recovered record must not be closed before the agent has read them.
    owned = {"rebalance": -1, "since": 0.0}

    @app.timer(interval=HEARTBEAT_INTERVAL_S)
    async def heartbeat():
        health.beat()

    @app.timer(interval=GAUGE_INTERVAL_S)
    async def gauges():
        if not app.rebalancing:
            count_records()

    @app.timer(interval=SWEEP_INTERVAL_S)
    async def sweep():
        if lock.locked() or app.rebalancing or not loading.done():  # busy, records moving,
            return  # or the model still loading
        processor = loading.result()
        if owned["rebalance"] != app.rebalancing_count:
            owned.update(rebalance=app.rebalancing_count, since=time.time())
        since = owned["since"]
        loop = asyncio.get_running_loop()
        async with lock:
            records = {}
            now = time.time()
            mine = owned_partitions()
            for key in records_table.orphans():
                if key_partition(key, settings.partitions) in mine:
                    table.pop(key, None)
            for key, value in records_table.heads():
                if key_partition(key, settings.partitions) not in mine:
                    continue  # another worker's track (a standby copy, or not dropped yet)
                try:
                    head = TrackRecord.peek(value)
                    if head["ended"]:
                        due = now - head["last_seen"] >= settings.stream.finished_retention_s
                    else:
                        due = now - max(head["last_seen"], since) >= settings.stream.idle_timeout_s
                    if due:
                        records[key.decode()] = records_table.load(key.decode())
                except Exception:
                    log.exception("dropping unreadable record %r", key)
                    table.pop(key, None)  # its segments are orphans now: the next sweep drops them
            if records:
                outcome = await loop.run_in_executor(
                    executor, functools.partial(processor.sweep, records, active_since=since))
                await publish(outcome)

    app.hookstream = {"table": table, "processor": loading, "score": score, "sweep": sweep,
                      "health": health}
    return app


def _readiness(app: faust.App, owned_partitions) -> tuple[bool, str]:
    """Ready once the group was joined and table recovery finished (read from any thread)."""
    if app.rebalancing_count == 0:
        return False, "not yet in the consumer group"
    if app.rebalancing or not app.tables.recovery.completed.is_set():
        return False, "rebalancing: table recovery not finished"
    try:
        n = len(owned_partitions())
    except RuntimeError:  # the assignment changed under this thread: a rebalance began
        return False, "rebalancing"
    return True, f"ok: {n} partition(s) assigned, table recovered"


def _track_key(key: bytes | None) -> str | None:
    if key is None:
        return None
    try:
        return bytes(key).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _ended(value: bytes) -> bool:
    return TrackRecord.peek(value)["ended"]
