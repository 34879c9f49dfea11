"""Everything hookstream changes in Faust's and aiokafka's behaviour, in one place.

Each class here subclasses a Faust class and is plugged in through a
supported setting or factory method; some override private methods. The
versions these were written against are pinned in ``pyproject.toml``, and
``tests/stream_app/test_faust_patches.py`` fails, naming the method, if a
patched method disappears or changes its signature.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
import threading
import time

import faust
import faust.worker
from aiokafka.partitioner import murmur2
from faust import tables
from faust.stores import memory
from faust.tables import Table, recovery
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer
from yarl import URL

from stream_app import dead_members
from stream_app.table_keys import partition_key

log = logging.getLogger(__name__)

# The distributions these patches were written against (pinned in pyproject.toml).
PINNED = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0", "mode-streaming": "0.7.1"}

# Every Faust/aiokafka member the patches override, call or replace, with its parameters
# in those versions ("property" for a property, "attribute" for a class attribute).
PATCHED = {
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._fetch_records":
        "(self, consumer, active_partitions, timeout=None, max_records=None)",
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread.__init__": "(self, consumer, **kwargs)",
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread.seek_to_committed": "(self)",
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._ensure_consumer": "(self)",
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread.on_start": "(self)",
    "aiokafka.client:AIOKafkaClient.coordinator_lookup": "(self, coordinator_type, coordinator_key)",
    "aiokafka.client:AIOKafkaClient.bootstrap": "(self)",
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread.on_thread_stop": "(self)",
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread.on_partitions_assigned":
        "(self, assigned, generation_id=0)",
    "aiokafka.consumer.consumer:AIOKafkaConsumer.seek_to_committed": "(self, *partitions)",
    "aiokafka.consumer.consumer:AIOKafkaConsumer.seek_to_beginning": "(self, *partitions)",
    "faust.transport.drivers.aiokafka:Consumer._new_consumer_thread": "(self)",
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._create_worker_consumer":
        "(self, transport)",
    "faust.transport.drivers.aiokafka:Consumer.resume_partitions": "(self, tps)",
    "faust.transport.drivers.aiokafka:Consumer._wait_next_records": "(self, timeout)",
    "faust.transport.drivers.aiokafka:Consumer._get_active_partitions": "(self)",
    "faust.transport.drivers.aiokafka:Consumer._is_changelog_tp": "(self, tp)",
    "faust.transport.drivers.aiokafka:Transport.Consumer": "attribute",
    "faust:App._new_transport": "(self)",
    "faust.tables.recovery:Recovery.__init__": "(self, app, tables, **kwargs)",
    "faust.tables.recovery:Recovery._resume_streams": "(self, generation_id=0)",
    "faust.tables.recovery:Recovery.on_recovery_completed": "(self, generation_id=0)",
    "faust.tables:TableManager.recovery": "property",
    "faust.tables:TableManager.on_start": "(self)",
    "faust.tables:TableManager._update_channels": "(self)",
    "faust.tables:Table._new_store_by_url": "(self, url)",
    "faust.tables:Table.partition_for_key": "(self, key)",
    "faust.stores.memory:Store.__init__":
        "(self, url, app, table, *, table_name='', key_type=None, value_type=None, "
        "key_serializer=None, value_serializer=None, options=None, **kwargs)",
    "faust.stores.memory:Store.on_recovery_completed": "(self, active_tps, standby_tps)",
    "faust.transport.producer:ProducerBuffer.put": "(self, fut)",
    "faust.transport.producer:ProducerBuffer.flush": "(self)",
    "faust.transport.producer:Producer.__init__": "(self, transport, loop=None, **kwargs)",
    "faust.transport.drivers.aiokafka:Transport.Producer": "attribute",
    "faust.worker:Worker._on_sigterm": "(self)",
    "faust.worker:Worker._on_sigint": "(self)",
}
# Private attributes the patches read: (module:class, attribute, where it is set).
PRIVATE_ATTRIBUTES = [
    ("faust.stores.memory:Store", "_key_partition", "__post_init__"),
    ("faust.tables:TableManager", "_recovery", "__init__"),
    ("aiokafka.consumer.consumer:AIOKafkaConsumer", "_fetch_max_wait_ms", "__init__"),
    ("aiokafka.consumer.consumer:AIOKafkaConsumer", "_client", "__init__"),
    ("aiokafka.consumer.consumer:AIOKafkaConsumer", "_coordinator", "start"),
    ("aiokafka.consumer.group_coordinator:GroupCoordinator", "member_id", "__init__"),
]
# Faust methods that must keep calling a method the patches override: (module:class, caller,
# callee).
CALLERS = [
    ("faust.transport.consumer:Consumer", "getmany", "_wait_next_records"),
    ("faust.transport.consumer:Consumer", "perform_seek", "seek_to_committed"),
    ("faust.tables:Table", "on_key_set", "partition_for_key"),
    ("faust.tables:Table", "on_key_del", "partition_for_key"),
]


@functools.lru_cache(maxsize=65536)
def key_partition(key: bytes, partitions: int) -> int:
    """The partition of a table key: its track id's under Kafka's default (murmur2)
    partitioner, as producers use (a segment key goes with its track's head,
    :mod:`stream_app.table_keys`)."""
    return (murmur2(partition_key(key)) & 0x7FFFFFFF) % partitions


# --- Ownership: a worker keeps only tracks of partitions it owns --------------------------------
# Faust's memory store drops, when a rebalance has moved partitions away, only the keys it
# loaded from the changelog; keys this worker wrote itself stayed, and its idle sweep closed
# those tracks a second time (an incomplete final after the real one, issue 9 bug 2).


class OwnedMemoryStore(memory.Store):
    """The memory store, dropping after each recovery every key of a partition not assigned now.

    A key's partition is the one its changelog record went to: recorded for
    keys loaded from the changelog, and the key partitioner's for keys
    written here (the table uses ``use_partitioner=True``).
    """

    async def on_recovery_completed(self, active_tps, standby_tps) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        kept = {tp.partition for tp in active_tps} | {tp.partition for tp in standby_tps}
        n = self.table.partitions or self.app.conf.topic_partitions
        gone = [k for k in self.data
                if self._key_partition.get(k, key_partition(k, n)) not in kept]
        for k in gone:
            self.data.pop(k, None)
            self._key_partition.pop(k, None)
        if gone:
            log.info("table %s: dropped %d key(s) of partitions no longer assigned",
                     self.table.name, len(gone))


class OwnedTable(Table):
    """A table on :class:`OwnedMemoryStore` (for the ``memory://`` store), whose changelog
    partition is the key's track id's (:func:`key_partition`).

    With ``use_partitioner`` Faust leaves the partition to the producer, which
    hashes the whole key: a track's segment keys would scatter over the
    partitions, away from its head. The explicit partition is the producer's
    choice for a head key, and the head's for a segment key.
    """

    def partition_for_key(self, key):
        if not self.use_partitioner:
            return super().partition_for_key(key)
        return key_partition(key, self.partitions or self.app.conf.topic_partitions)

    def _new_store_by_url(self, url):
        if URL(url).scheme != "memory":
            return super()._new_store_by_url(url)
        return OwnedMemoryStore(
            url, self.app, self, table_name=self.name, key_type=self.key_type,
            key_serializer=self.key_serializer, value_serializer=self.value_serializer,
            value_type=self.value_type, loop=self.loop, options=self.options)


# --- Faust 0.15 fixes ------------------------------------------------------------------
# A restarted worker with a backlog lost or reordered chunk events (chunk 16 of a track
# processed before chunks 10-15, so the track was closed as incomplete; a chunk never
# processed at all), about one restart in five on Tansu. Two Faust races, each fixed by
# a small subclass plugged in through a supported setting or factory method. A third let
# a commit go ahead of the table's changelog (DeliveringProducerBuffer).


CHANGELOG_FETCH_WAIT_S = 0.1  # the longest a fetch of changelog partitions only waits for records


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Fetches only the partitions active when the fetch starts.

    Faust hands the consumer thread its live, mutable set of active partitions;
    aiokafka re-reads it while it waits and takes an empty set for "every
    partition". When the set empties during a fetch (the changelog partitions
    are paused at the end of table recovery, the stream partitions still are),
    aiokafka returns the records buffered for the paused stream partitions,
    Faust drops them as inactive, and their position has moved past them.

    A worker leaves the group for this host's killed workers before it joins, and records
    its own member id after each assignment (:mod:`stream_app.dead_members`): a restart
    after a SIGKILL then does not wait for the killed member's session.

    A fetch of changelog partitions only (table recovery's) waits at most
    ``CHANGELOG_FETCH_WAIT_S`` for records, not Faust's 1 s: the one that
    recovery left waiting at its end held the stream partitions, resumed
    meanwhile, back by up to 1 s after a restarted worker was ready. Fetches
    of stream partitions keep Faust's wait (a 0.1 s cap on every fetch raised
    the chunk -> provisional latency p50 by 20-40 ms at 20 tracks).
    """

    _members: dead_members.MemberRecords | None = None

    async def on_start(self) -> None:
        # Faust's on_start, with the dead members' leave between creating the consumer and
        # starting it (its join).
        self._consumer = self._create_consumer(loop=self.thread_loop)
        self.time_started = time.monotonic()
        if not self.app.client_only:
            conf = self.app.conf
            self._members = dead_members.MemberRecords(
                os.path.join(conf.datadir, "members"), group=conf.id,
                bootstrap=[f"{u.host}:{u.port}" for u in conf.broker])
            await dead_members.leave_for_dead(self._consumer._client, self._members)
        await self._consumer.start()

    async def on_thread_stop(self) -> None:
        await super().on_thread_stop()  # stops the consumer, which leaves the group
        if self._members is not None:
            self._members.forget()

    async def on_partitions_assigned(self, assigned, generation_id: int = 0) -> None:
        if self._members is not None and self._consumer is not None:
            self._members.record(self._consumer._coordinator.member_id)
        await super().on_partitions_assigned(assigned, generation_id)

    async def seek_to_committed(self):
        """Seek every assigned partition to its committed offset, and a stream partition
        without one (or at 0) to its beginning.

        aiokafka's ``seek_to_committed`` moves only partitions whose committed
        offset is above 0 and leaves the others where the fetcher is. After a
        rebalance, records of such a partition fetched before Faust paused it
        are dropped, and the partition then resumed after them: a track whose
        first chunks reached a never-committed partition during a rebalance
        lost them (chunk 5 arrived, expected 0; in 2 of 9 runs of
        ``test_two_workers_one_killed_the_survivor_finishes``). The beginning
        is where ``consumer_auto_offset_reset="earliest"`` (the worker's) starts
        such a partition anyway. Changelog partitions are left to table recovery.
        """
        return await self.call_thread(self._seek_to_committed_or_beginning)

    async def _seek_to_committed_or_beginning(self):
        consumer = self._ensure_consumer()
        committed = await consumer.seek_to_committed()
        if self.app.conf.consumer_auto_offset_reset == "earliest":
            never = [tp for tp, offset in committed.items()
                     if not offset and not self.consumer._is_changelog_tp(tp)]
            if never:
                await consumer.seek_to_beginning(*never)
        return committed

    async def _fetch_records(self, consumer, active_partitions, timeout=None, max_records=None):
        if active_partitions is not None:
            active_partitions = frozenset(active_partitions)
            if not active_partitions:
                return {}
        if (timeout is not None and active_partitions
                and all(self.consumer._is_changelog_tp(tp) for tp in active_partitions)):
            timeout = min(timeout, CHANGELOG_FETCH_WAIT_S)
        return await super()._fetch_records(consumer, active_partitions, timeout=timeout,
                                            max_records=max_records)


class LowWaitConsumerThread(ConsumerThread):
    """The worker's consumer with ``fetch_max_wait_ms`` from ``settings.LATENCY``.

    Faust passes ``fetch_max_wait_ms=1500`` to aiokafka with no setting to
    change it; aiokafka keeps the value in ``_fetch_max_wait_ms`` until its
    fetcher is made in ``start()``, so setting it on the new consumer applies.
    """

    def _create_worker_consumer(self, transport):
        from stream_app.settings import LATENCY

        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = int(LATENCY["worker_fetch_max_wait_ms"])
        return consumer


class DeliveringProducerBuffer(ProducerBuffer):
    """The buffer of table changelog records, whose ``flush`` returns once every record put
    so far is delivered (or failed).

    Faust commits a batch's offsets after ``producer.flush()``, which drains this
    buffer, but Faust's ``flush`` gives up after 0.1 s without a record handed to
    the client (the records wait in turn: one in flight per partition here), and
    skips the record being handed over. The offsets then went in ahead of the
    table: after a SIGKILL the next owner found the track's record some chunks
    behind the committed offset and closed the track as incomplete (a gap).
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self.undelivered: set[asyncio.Future] = set()

    def put(self, fut) -> None:
        self.undelivered.add(fut)
        fut.add_done_callback(self.undelivered.discard)
        super().put(fut)

    async def flush(self) -> None:
        await super().flush()
        while self.undelivered and self.state == "running":
            await asyncio.wait(set(self.undelivered), timeout=0.1)


class Producer(faust_aiokafka.Producer):
    """Faust's aiokafka producer with :class:`DeliveringProducerBuffer` (not for
    ``producer_threaded``, whose buffer is the producer thread's queue)."""

    def __init__(self, transport, loop=None, **kwargs) -> None:
        super().__init__(transport, loop=loop, **kwargs)
        if not self.app.conf.producer_threaded:
            self.buffer = DeliveringProducerBuffer(loop=self.loop, beacon=self.beacon)
            self.buffer.app = self.app


NO_PARTITIONS_WAIT_S = 1.0  # Faust's sleep when no partition is active; now cut short by a resume


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with :class:`LowWaitConsumerThread`, whose fetch loop wakes
    as soon as partitions resume.

    While no partition is active (a rebalance, table recovery) Faust's fetch
    loop sleeps 1 s between checks. Table recovery resumes the stream
    partitions at its very end, after flow control, so the loop was always in
    that sleep then: a restarted worker read its first chunk 1.0 s after it was
    ready (issue 9, kill -> next event). The loop now waits on an event that
    :meth:`resume_partitions` sets, with the same 1 s as the longest wait.
    """

    _resumed: asyncio.Event | None = None

    def _new_consumer_thread(self) -> ConsumerThread:
        return LowWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def resume_partitions(self, tps) -> None:
        super().resume_partitions(tps)
        if self._resumed is not None:
            self._resumed.set()

    async def _wait_next_records(self, timeout):
        if not self.flow_active:
            await self.wait(self.can_resume_flow)
        if not self.app.client_only and not self._get_active_partitions():
            if self._resumed is None:
                self._resumed = asyncio.Event()
            self._resumed.clear()
            await self.wait(self._resumed, timeout=NO_PARTITIONS_WAIT_S)
            if not self._get_active_partitions():  # still none: what Faust's loop returns
                self.not_waiting_next_records.set()
                return {}, self._get_active_partitions()
        return await super()._wait_next_records(timeout)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
    Producer = Producer


class App(faust.App):
    """Faust's app with the low-wait transport, and ``on_start_callbacks``: called (no
    arguments) as the app starts, before its consumer and table manager (the worker
    starts loading its model then, to overlap the group join)."""

    on_start_callbacks: tuple = ()  # an app sets its own (a class-level list would be shared)

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)

    async def on_start(self) -> None:
        await super().on_start()
        for callback in self.on_start_callbacks:
            callback()


class Recovery(recovery.Recovery):
    """Faust's table recovery, resuming the stream partitions only once the flow is back.

    At the end of a rebalance Faust resumes fetching the stream partitions,
    then seeks them to the committed offsets, then resumes flow control, which
    clears the stream buffers. Records fetched after the seek and buffered
    before that clear are lost (their read offset has moved on). Deferring the
    resume to the end of the step closes that window; nothing else changes.
    """

    async def _resume_streams(self, generation_id: int = 0) -> None:
        await self._resume_last(super()._resume_streams, generation_id)

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        await self._resume_last(super().on_recovery_completed, generation_id)

    async def _resume_last(self, step, generation_id: int) -> None:
        consumer = self.app.consumer
        deferred: list = []
        consumer.resume_partitions = deferred.append
        try:
            await step(generation_id)
        finally:
            del consumer.resume_partitions  # the class's method again
            for tps in deferred:
                consumer.resume_partitions(tps)


class TableManager(tables.TableManager):
    """Faust's table manager with :class:`Recovery`, without Faust's 1 s pause before the
    tables register (the consumer joins the group only after it).

    While a killed worker's member stayed in the group until its session expired, the
    pause was needed: without it the join met that expiry and took a second round in 3
    of 40 restarts on the embedded broker. The dead member is now removed before the join
    (:mod:`stream_app.dead_members`), and the pause only delayed every restart by 1 s.
    docs/performance.md, "Recovery time".
    """

    async def on_start(self) -> None:
        # Faust's on_start less its ``await self.sleep(1.0)``.
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()

    @property
    def recovery(self) -> recovery.Recovery:
        if self._recovery is None:
            self._recovery = Recovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


# --- Shutdown within a deadline -----------------------------------------------------------
# Faust's shutdown waits on the broker (leave the group, commit, flush the producer); with
# the broker gone it took more than 45 s after SIGTERM. Past the deadline the process exits
# anyway: what was not committed is redelivered and dropped as duplicates by seq.

SHUTDOWN_DEADLINE_S = 8.0  # SIGTERM/SIGINT -> exit, at the latest (Kubernetes grace: 15 s)


class Worker(faust.worker.Worker):
    """Faust's worker, exiting at the latest ``shutdown_deadline_s`` after SIGTERM or SIGINT."""

    shutdown_deadline_s = SHUTDOWN_DEADLINE_S

    def _on_sigterm(self) -> None:
        self._start_deadline("SIGTERM")
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        self._start_deadline("SIGINT")
        super()._on_sigint()

    def _start_deadline(self, name: str) -> None:
        if getattr(self, "_deadline_thread", None) is not None:
            return
        started = time.monotonic()
        log.info("%s: stopping (at most %.0f s)", name, self.shutdown_deadline_s)

        def expire() -> None:
            time.sleep(self.shutdown_deadline_s)
            log.warning("%s: shutdown not finished after %.1f s (broker unreachable?); exiting "
                        "now: uncommitted events will be redelivered and deduplicated",
                        name, time.monotonic() - started)
            for handler in logging.getLogger().handlers:
                try:
                    handler.flush()
                except Exception:
                    pass
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

        self._deadline_thread = threading.Thread(target=expire, name="shutdown-deadline",
                                                 daemon=True)
        self._deadline_thread.start()
