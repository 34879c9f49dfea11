"""Leaving the group for killed workers' members (stream_app.dead_members)."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid

import pytest

from stream_app import dead_members
from stream_app.dead_members import MemberRecords, leave_for_dead


def records(tmp_path, group="g", bootstrap=("127.0.0.1:9092",)):
    return MemberRecords(tmp_path / "members", group=group, bootstrap=list(bootstrap))


def write(tmp_path, pid, member_id, **over):
    r = records(tmp_path)
    value = dict(host=r.host, pid=pid, start_time=dead_members._start_time(pid), group="g",
                 bootstrap=["127.0.0.1:9092"], member_id=member_id) | over
    (tmp_path / "members").mkdir(exist_ok=True)
    (tmp_path / "members" / f"{pid}-{member_id}.json").write_text(json.dumps(value))


def finished_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_record_writes_this_process_member_and_forget_deletes_it(tmp_path):
    r = records(tmp_path)
    r.record("m-1")
    value = json.loads(r.path.read_text())
    assert value["pid"] == os.getpid() and value["member_id"] == "m-1"
    assert value["group"] == "g" and value["bootstrap"] == ["127.0.0.1:9092"]
    assert value["start_time"] == dead_members._start_time(os.getpid())
    r.record("m-2")  # a new id after a rejoin replaces the old one
    assert json.loads(r.path.read_text())["member_id"] == "m-2"
    r.forget()
    assert not r.path.exists()


def test_a_finished_process_member_is_dead_a_running_one_is_not(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write(tmp_path, live.pid, "live")
        write(tmp_path, finished_pid(), "gone")
        assert [m for _, m in records(tmp_path).dead()] == ["gone"]
    finally:
        live.kill()
        live.wait()


def test_a_reused_pid_counts_as_dead(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # a running process with the recorded pid but another start time: the recorded one is gone
        write(tmp_path, live.pid, "reused", start_time="1")
        # this process's own pid (a container restart's pid 1): the recorded one is gone
        write(tmp_path, os.getpid(), "mine")
        assert sorted(m for _, m in records(tmp_path).dead()) == ["mine", "reused"]
    finally:
        live.kill()
        live.wait()


def test_records_of_another_host_group_or_broker_and_unreadable_ones_are_left(tmp_path, caplog):
    pid = finished_pid()
    write(tmp_path, pid, "other-host", host="elsewhere")
    write(tmp_path, pid, "other-group", group="h")
    write(tmp_path, pid, "other-broker", bootstrap=["10.0.0.1:9092"])
    (tmp_path / "members" / "broken.json").write_text("{not json")
    assert records(tmp_path).dead() == []
    assert "broken.json" in caplog.text


def test_nothing_recorded_sends_nothing(tmp_path):
    class NoClient:
        def __getattr__(self, name):
            raise AssertionError("no request expected")

    assert asyncio.run(leave_for_dead(NoClient(), records(tmp_path))) == []


def test_an_unreachable_broker_gives_up_within_the_timeout(tmp_path, monkeypatch, caplog):
    from aiokafka.client import AIOKafkaClient

    monkeypatch.setattr(dead_members, "LEAVE_TIMEOUT_S", 0.5)
    write(tmp_path, finished_pid(), "m")

    async def run():
        client = AIOKafkaClient(bootstrap_servers="127.0.0.1:9", request_timeout_ms=30000)
        try:
            return await leave_for_dead(client, records(tmp_path))
        finally:
            await client.close()

    assert asyncio.run(run()) == []
    assert "could not remove dead members" in caplog.text


CHILD = r"""
import asyncio, sys
from aiokafka import AIOKafkaConsumer
from stream_app.dead_members import MemberRecords

async def main():
    bootstrap, topic, group, directory = sys.argv[1:5]
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                         session_timeout_ms=30000, heartbeat_interval_ms=1000)
    await c.start()
    while not c.assignment():
        await asyncio.sleep(0.05)
    MemberRecords(directory, group=group, bootstrap=[bootstrap]).record(c._coordinator.member_id)
    print(c._coordinator.member_id, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


@pytest.mark.integration
def test_a_killed_member_is_removed_from_the_group_on_the_real_broker(broker, tmp_path):
    """A consumer records its member and is SIGKILLed: its 30 s session would keep it in
    the group, and hold a new member's join until it expires. After ``leave_for_dead``
    a new consumer owns every partition well before that (it joins alone)."""
    from aiokafka import AIOKafkaConsumer
    from kafka.admin import KafkaAdminClient, NewTopic

    topic, group = f"dm-{uuid.uuid4().hex[:8]}", f"dm-group-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(topic, 2, 1)])
    admin.close()
    directory = tmp_path / "members"
    child = subprocess.Popen([sys.executable, "-c", CHILD, broker.bootstrap, topic, group,
                              str(directory)], stdout=subprocess.PIPE, text=True)
    try:
        member = child.stdout.readline().strip()
        assert member, "the consumer did not join"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    r = MemberRecords(directory, group=group, bootstrap=[broker.bootstrap])
    assert [m for _, m in r.dead()] == [member]

    async def run():
        c = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group,
                             session_timeout_ms=6000, heartbeat_interval_ms=1000)
        left = await leave_for_dead(c._client, r)
        await c.start()
        try:
            started = asyncio.get_running_loop().time()
            while len(c.assignment()) < 2:  # the dead member's session: 30 s
                assert asyncio.get_running_loop().time() - started < 20, c.assignment()
                await asyncio.sleep(0.05)
            return left
        finally:
            await c.stop()

    assert asyncio.run(run()) == [member]
    assert not list(directory.glob("*.json"))  # the record is deleted
