"""The embedded Tansu broker: lifecycle, topic creation, client settings it needs."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

from models.errors import ConfigError
from stream_app.broker import BrokerError, EmbeddedBroker, ensure_topics

pytestmark = pytest.mark.integration


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not a leftover broker, but stop() reaps, so it should not exist either
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1][0] != "Z"


def test_start_stop_leaves_no_process():
    broker = EmbeddedBroker()
    broker.start()
    pid, log = broker.pid, broker.log_file
    assert broker.running and alive(pid) and log.exists()
    assert broker.bootstrap == f"127.0.0.1:{broker.port}" and broker.port > 0
    assert 0 < broker.startup_s < 10
    assert "tansu broker" in broker.log_tail()
    broker.stop()
    assert not broker.running and not alive(pid) and not log.exists()
    broker.stop()  # idempotent
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", broker.port), timeout=0.5)


def test_context_manager_and_restart_on_fixed_port():
    with EmbeddedBroker() as b:
        port, pid = b.port, b.pid
    assert not alive(pid)
    with EmbeddedBroker(port) as b:
        assert b.port == port
        assert ensure_topics(b.bootstrap, {"t": 1}) == {"t": 1}  # memory storage: a fresh broker


def test_port_in_use_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(BrokerError, match="already in use"):
            EmbeddedBroker(s.getsockname()[1]).start()


def test_ensure_topics_creates_partitions_and_is_idempotent(broker):
    from kafka import KafkaConsumer

    a, b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    assert ensure_topics(broker.bootstrap, {a: 2, b: 5}) == {a: 2, b: 5}
    assert ensure_topics(broker.bootstrap, {a: 2, b: 3}) == {a: 2, b: 5}  # more is fine
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    try:
        assert consumer.partitions_for_topic(a) == {0, 1}
        assert consumer.partitions_for_topic(b) == {0, 1, 2, 3, 4}
    finally:
        consumer.close()
    with pytest.raises(ConfigError, match=f"{a}.*2 partitions but 4"):
        ensure_topics(broker.bootstrap, {a: 4})
    with pytest.raises(ConfigError):
        ensure_topics(broker.bootstrap, {a: 0})


def test_group_join_with_recommended_settings_is_fast(broker):
    """About 3 s (sometimes 6 s: two join rounds); with kafka-python's default 45 s session timeout, about 23 s."""
    from kafka import KafkaConsumer, KafkaProducer

    from stream_app.settings import KAFKA_PYTHON_GROUP_KW

    topic = f"g-{uuid.uuid4().hex[:8]}"
    ensure_topics(broker.bootstrap, {topic: 2})
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    producer.send(topic, b"x").get(timeout=10)
    producer.close()
    t0 = time.monotonic()
    consumer = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=topic,
                             auto_offset_reset="earliest", **KAFKA_PYTHON_GROUP_KW)
    try:
        got = []
        while not got and time.monotonic() - t0 < 20:
            got = [r for rs in consumer.poll(200).values() for r in rs]
        elapsed = time.monotonic() - t0
    finally:
        consumer.close()
    assert got and elapsed < 12, elapsed


def test_broker_command_stops_on_sigterm():
    code = (
        "import argparse, sys\n"
        "from stream_app.commands import broker\n"
        "p = argparse.ArgumentParser(); sub = p.add_subparsers()\n"
        "broker.register(sub)\n"
        "a = p.parse_args(['broker', '--port', '0'])\n"
        "sys.exit(a.func(a))\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("bootstrap: 127.0.0.1:"), (line, proc.stderr.read() if proc.poll() else "")
        port = int(line.rsplit(":", 1)[1])
        ensure_topics(f"127.0.0.1:{port}", {"audio-chunks": 4, "highlights": 4})  # created by the command
        children = _children(proc.pid)
        assert len(children) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert not any(alive(c) for c in children)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _children(pid: int) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process(pid).children(recursive=True)]
