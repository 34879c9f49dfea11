"""The Faust/aiokafka internals that stream_app/faust_patches.py relies on are still there.

After an upgrade of faust-streaming, aiokafka or mode-streaming, these tests name each
overridden or called member whose presence or parameters changed: re-read the patch
next to it (and the Faust change) before moving the pins in pyproject.toml.
"""

import asyncio
import importlib
import inspect
import re
from importlib import metadata
from pathlib import Path

import pytest

from stream_app import faust_patches
from stream_app.faust_patches import CALLERS, PATCHED, PINNED, PRIVATE_ATTRIBUTES

REPO = Path(__file__).resolve().parents[2]


def resolve(path: str):
    module, _, qualname = path.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = inspect.getattr_static(obj, part) if inspect.isclass(obj) else getattr(obj, part)
    return obj


def parameters(obj) -> str:
    sig = inspect.signature(obj)
    return str(sig.replace(parameters=[p.replace(annotation=inspect.Parameter.empty)
                                       for p in sig.parameters.values()],
                           return_annotation=inspect.Signature.empty))


@pytest.mark.parametrize("dist", sorted(PINNED))
def test_installed_versions_are_the_patched_ones(dist):
    assert metadata.version(dist) == PINNED[dist], (
        f"{dist} {metadata.version(dist)} is installed; stream_app/faust_patches.py was written "
        f"against {PINNED[dist]}: run tests/stream_app/test_faust_patches.py and re-check each patch")


def test_pyproject_pins_the_patched_versions():
    text = (REPO / "pyproject.toml").read_text()
    for dist, version in PINNED.items():
        assert re.search(rf'"{re.escape(dist)}=={re.escape(version)}"', text), (
            f"pyproject.toml must pin {dist}=={version} (stream_app/faust_patches.py)")


@pytest.mark.parametrize("path", sorted(PATCHED))
def test_patched_member_is_present_with_the_same_parameters(path):
    want = PATCHED[path]
    try:
        obj = resolve(path)
    except AttributeError as exc:
        pytest.fail(f"{path} is gone ({exc}); stream_app/faust_patches.py overrides or calls it")
    if want == "property":
        assert isinstance(obj, property), f"{path} is no longer a property: {obj!r}"
    elif want == "attribute":
        assert inspect.isclass(obj), f"{path} is no longer a class attribute: {obj!r}"
    else:
        got = parameters(obj)
        assert got == want, (f"{path} changed its parameters: faust_patches.py was written "
                             f"against {want}, the installed version has {got}")


@pytest.mark.parametrize("owner,attribute,where", PRIVATE_ATTRIBUTES)
def test_private_attribute_is_still_set(owner, attribute, where):
    source = inspect.getsource(getattr(resolve(owner), where))
    assert f"self.{attribute}" in source, (
        f"{owner}.{where} no longer sets self.{attribute}; stream_app/faust_patches.py reads it")


@pytest.mark.parametrize("owner,caller,callee", CALLERS)
def test_faust_still_calls_the_overridden_method(owner, caller, callee):
    source = inspect.getsource(getattr(resolve(owner), caller))
    assert f"self.{callee}(" in source, (
        f"{owner}.{caller} no longer calls self.{callee}; stream_app/faust_patches.py overrides it")


def test_patches_subclass_what_they_replace():
    from faust.stores import memory
    from faust.tables import Table, TableManager, recovery
    from faust.transport.drivers import aiokafka as fa
    from faust.transport.producer import ProducerBuffer

    import faust
    import faust.worker

    for ours, theirs in [(faust_patches.ConsumerThread, fa.AIOKafkaConsumerThread),
                         (faust_patches.Consumer, fa.Consumer), (faust_patches.Transport, fa.Transport),
                         (faust_patches.Producer, fa.Producer),
                         (faust_patches.DeliveringProducerBuffer, ProducerBuffer),
                         (faust_patches.App, faust.App), (faust_patches.Recovery, recovery.Recovery),
                         (faust_patches.TableManager, TableManager),
                         (faust_patches.OwnedMemoryStore, memory.Store),
                         (faust_patches.OwnedTable, Table),
                         (faust_patches.Worker, faust.worker.Worker)]:
        assert issubclass(ours, theirs)


def test_owned_store_drops_keys_of_partitions_not_assigned(tmp_path):
    """Keys loaded from the changelog and keys written live both go when their partition does."""
    import faust
    from faust.types import TP

    app = faust.App("patch-test", store="memory://", Table=faust_patches.OwnedTable,
                    datadir=str(tmp_path), web_enabled=False)
    table = app.Table("t", partitions=4, key_type=bytes, value_type=bytes, use_partitioner=True)
    store = table.data
    assert isinstance(store, faust_patches.OwnedMemoryStore)
    keys = {p: next(k for k in (f"k{i}".encode() for i in range(100))
                    if faust_patches.key_partition(k, 4) == p) for p in range(4)}
    store.data.update({k: b"live" for k in keys.values()})  # written by this worker
    store.data.update({k + b"\xff0": b"segment" for k in keys.values()})  # their segments
    store.data[b"loaded"] = b"x"
    store._key_partition[b"loaded"] = 3  # recovered from partition 3 of the changelog
    changelog = table.changelog_topic.get_topic_name()
    asyncio.run(store.on_recovery_completed({TP(changelog, 0)}, {TP(changelog, 1)}))
    assert set(store.data) == {keys[0], keys[1], keys[0] + b"\xff0", keys[1] + b"\xff0"}


def test_segment_keys_go_to_their_tracks_changelog_partition(tmp_path):
    """A head key goes where Kafka's default partitioner puts it; its segments follow it."""
    import faust
    from aiokafka.partitioner import DefaultPartitioner

    from stream_app.table_keys import head_key, segment_key

    app = faust.App("patch-test-2", store="memory://", Table=faust_patches.OwnedTable,
                    datadir=str(tmp_path), web_enabled=False)
    table = app.Table("t", partitions=8, key_type=bytes, value_type=bytes, use_partitioner=True)
    sent = []
    table.send_changelog = lambda partition, key, value, *a, **kw: sent.append((partition, key)) or \
        type("Fut", (), {"message": type("M", (), {"partition": partition})()})()
    parts = set()
    for tid in ("a", "song-17", "Ünïcode ♪", "x" * 256):
        want = DefaultPartitioner()(head_key(tid), list(range(8)), list(range(8)))
        table.on_key_set(head_key(tid), b"head")
        table.on_key_set(segment_key(tid, 3), b"segment")
        table.on_key_del(segment_key(tid, 3))
        assert sent[-3:] == [(want, head_key(tid)), (want, segment_key(tid, 3)),
                             (want, segment_key(tid, 3))], tid
        assert faust_patches.key_partition(segment_key(tid, 12), 8) == want
        parts.add(want)
    assert len(parts) > 1  # (the ids do not all share one partition: the check can fail)


def test_flush_waits_until_every_changelog_record_is_delivered(tmp_path):
    """Faust's buffer flush returns while records still wait (a commit then went in ahead
    of the table's changelog); the patched buffer's returns once each is delivered."""
    import faust
    from faust.transport.producer import ProducerBuffer

    app = faust.App("patch-test-3", datadir=str(tmp_path), web_enabled=False)

    def slow(cls):
        class Slow(cls):  # one record in flight: 0.15 s to hand over, delivered 0.05 s later
            async def _send_pending(self, fut):
                await asyncio.sleep(0.15)
                asyncio.get_running_loop().call_later(0.05, fut.set_result, None)
        return Slow

    async def flush_with(cls) -> list[bool]:
        buffer = slow(cls)()
        buffer.app = app
        await buffer.start()
        futs = [asyncio.get_running_loop().create_future() for _ in range(4)]
        for fut in futs:
            buffer.put(fut)
        await buffer.flush()
        done = [f.done() for f in futs]
        await asyncio.wait(futs)  # (Faust's buffer refuses to stop with records waiting)
        await buffer.stop()
        return done

    assert asyncio.run(flush_with(ProducerBuffer)) == [False] * 4  # the bug: nothing delivered yet
    assert asyncio.run(flush_with(faust_patches.DeliveringProducerBuffer)) == [True] * 4
    producer = faust_patches.Transport("memory://", app).create_producer()
    assert isinstance(producer.buffer, faust_patches.DeliveringProducerBuffer)


def _consumer(cls, tmp_path):
    import faust

    app = faust.App("patch-test-4", datadir=str(tmp_path), web_enabled=False)
    transport = faust_patches.Transport("kafka://localhost:1", app)
    consumer = cls(transport, callback=print, on_partitions_revoked=print,
                   on_partitions_assigned=print, loop=transport.loop)
    consumer._active_partitions = set()  # all paused: a rebalance's table recovery
    fetched = []

    async def getmany(active_partitions, timeout):
        fetched.append(set(active_partitions))
        return {"records": "of the resumed partitions"}

    consumer._getmany = getmany
    return consumer, fetched


def test_fetch_loop_wakes_when_partitions_resume(tmp_path):
    """Faust's loop, finding no active partition, sleeps 1 s and fetches nothing even when the
    stream partitions resume meanwhile (table recovery resumes them last): a restarted worker's
    first chunk came 1 s after it was ready. The patched loop fetches them at once."""
    from faust.transport.drivers import aiokafka as fa
    from faust.types import TP

    tp = TP("audio-chunks", 0)

    async def wait_while_resuming(cls):
        consumer, fetched = _consumer(cls, tmp_path)
        asyncio.get_running_loop().call_later(0.01, consumer.resume_partitions, {tp})
        return await consumer._wait_next_records(1.0), fetched

    assert asyncio.run(wait_while_resuming(fa.Consumer)) == (({}, {tp}), [])  # slept, fetched nothing
    assert asyncio.run(wait_while_resuming(faust_patches.Consumer)) == (
        ({"records": "of the resumed partitions"}, {tp}), [{tp}])


def test_fetch_loop_without_partitions_returns_nothing_after_its_wait(tmp_path, monkeypatch):
    monkeypatch.setattr(faust_patches, "NO_PARTITIONS_WAIT_S", 0.01)

    async def wait():
        consumer, fetched = _consumer(faust_patches.Consumer, tmp_path)
        return await consumer._wait_next_records(1.0), fetched

    assert asyncio.run(wait()) == (({}, set()), [])


def test_a_changelog_fetch_waits_at_most_changelog_fetch_wait_s(monkeypatch):
    """The fetch table recovery left waiting on the changelog partitions held the resumed
    stream partitions back by Faust's 1 s; a fetch of changelog partitions only now asks for
    at most 0.1 s, one with a stream partition keeps Faust's timeout."""
    from faust.transport.drivers import aiokafka as fa
    from faust.types import TP

    asked = []

    async def fetch(self, consumer, active_partitions, timeout=None, max_records=None):
        asked.append(timeout)
        return {}

    monkeypatch.setattr(fa.AIOKafkaConsumerThread, "_fetch_records", fetch)
    thread = object.__new__(faust_patches.ConsumerThread)
    thread.consumer = type("C", (), {"_is_changelog_tp": lambda self, tp: tp.topic == "changelog"})()
    for tps, timeout in [({TP("changelog", 0)}, 1.0), ({TP("changelog", 0)}, 0.05),
                         ({TP("changelog", 0)}, None), ({TP("changelog", 0), TP("chunks", 0)}, 1.0)]:
        asyncio.run(thread._fetch_records(None, tps, timeout=timeout))
    assert asked == [faust_patches.CHANGELOG_FETCH_WAIT_S, 0.05, None, 1.0]


def test_seek_to_committed_rewinds_a_never_committed_stream_partition(broker):
    """aiokafka's seek_to_committed leaves a partition without a committed offset where the
    fetcher is: records fetched (and dropped by Faust during a rebalance) stay skipped. The
    patched seek puts such a stream partition back at its beginning, and leaves a committed
    partition at its offset and a changelog partition alone."""
    import uuid

    from aiokafka import AIOKafkaConsumer, TopicPartition
    from kafka import KafkaProducer

    from stream_app.broker import ensure_topics

    tag = uuid.uuid4().hex[:8]
    chunks, changelog = f"seek-chunks-{tag}", f"seek-changelog-{tag}"
    ensure_topics(broker.bootstrap, {chunks: 2, changelog: 1})
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for topic, partition in [(chunks, 0), (chunks, 1), (changelog, 0)]:
        for i in range(5):
            producer.send(topic, value=b"x%d" % i, partition=partition)
    producer.flush()
    producer.close()
    never, committed, log = TopicPartition(chunks, 0), TopicPartition(chunks, 1), TopicPartition(changelog, 0)

    async def positions(seek) -> dict:
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=f"g-{tag}-{seek}",
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        try:
            consumer.assign([never, committed, log])
            await consumer.commit({committed: 2})
            got, deadline = 0, asyncio.get_running_loop().time() + 30
            while got < 13:  # every record fetched (the committed one from 2): each position at 5
                assert asyncio.get_running_loop().time() < deadline, got
                got += sum(len(v) for v in (await consumer.getmany(timeout_ms=1000)).values())
            if seek == "patched":
                thread = object.__new__(faust_patches.ConsumerThread)
                thread._ensure_consumer = lambda: consumer
                thread.app = type("A", (), {"conf": type("Conf", (), {
                    "consumer_auto_offset_reset": "earliest"})()})()
                thread.consumer = type("C", (), {
                    "_is_changelog_tp": lambda self, tp: tp.topic == changelog})()
                await thread._seek_to_committed_or_beginning()
            else:
                await consumer.seek_to_committed()
            return {tp.topic.split("-")[1] + str(tp.partition): await consumer.position(tp)
                    for tp in (never, committed, log)}
        finally:
            await consumer.stop()

    # What the patch is for (if aiokafka starts rewinding such a partition, revisit it).
    assert asyncio.run(positions("aiokafka")) == {"chunks0": 5, "chunks1": 2, "changelog0": 5}
    assert asyncio.run(positions("patched")) == {"chunks0": 0, "chunks1": 2, "changelog0": 5}
