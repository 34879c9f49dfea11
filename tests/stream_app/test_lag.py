"""Consumer lag (stream_app/lag.py) against the embedded broker, and the worker's wait for Kafka."""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stream_app.broker import EmbeddedBroker, ensure_topics, free_port
from stream_app.lag import ConsumerLag
from stream_app.settings import load_settings

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def produce_one_by_one(settings, topic, keys_partitions):
    """One record per batch (flush after each): Tansu's end offsets are right then."""
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap, linger_ms=0, enable_idempotence=False)
    try:
        for partition, n in keys_partitions.items():
            for i in range(n):
                p.send(topic, value=b"x", partition=partition).get(timeout=10)
                p.flush()
    finally:
        p.close()


def test_lag_per_partition_committed_vs_end(broker):
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    tag = uuid.uuid4().hex[:8]
    settings = load_settings(bootstrap=broker.bootstrap, partitions=2,
                             topics={"chunks": f"lag-{tag}", "highlights": f"lag-hl-{tag}",
                                     "dead_letter": f"lag-dlq-{tag}"})
    ensure_topics(broker.bootstrap, settings.topic_partitions())
    produce_one_by_one(settings, settings.topics.chunks, {0: 5, 1: 3})
    group = f"lag-group-{tag}"
    lag = ConsumerLag(settings, group)
    registry = CollectorRegistry()
    registry.register(lag)
    try:
        assert lag.poll_once() == {0: 5, 1: 3}  # nothing committed: all of it
        c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False)
        c.commit({TopicPartition(settings.topics.chunks, 0): OffsetAndMetadata(4, "", -1)})
        c.close(autocommit=False)
        assert lag.poll_once() == {0: 1, 1: 3}
        families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
        samples = {(s.name, s.labels.get("partition")): s.value
                   for f in families.values() for s in f.samples}
        assert samples[("hookstream_consumer_lag_messages", "0")] == 1
        assert samples[("hookstream_consumer_committed_offset", "0")] == 4
        assert samples[("hookstream_consumer_committed_offset", "1")] == -1
        assert samples[("hookstream_topic_end_offset", "1")] == 3
        assert samples[("hookstream_consumer_lag_last_success_timestamp_seconds", None)] > time.time() - 60
    finally:
        lag.stop()


@pytest.mark.timeout(180)
def test_worker_waits_for_kafka_then_starts(tmp_path):
    """No broker at start: the worker logs its attempts and starts once the broker is up."""
    from models import checkpoint, nets
    from stream_app.demo import stop_worker, wait_metrics

    ckpt = checkpoint.save(checkpoint.untrained(nets.tiny(), tuple("abcde"), seed=0), tmp_path / "t.safetensors")
    kafka_port, metrics_port = free_port(), free_port()
    log = tmp_path / "worker.log"
    proc = subprocess.Popen([sys.executable, "-m", "stream_app", "worker", "-b", f"127.0.0.1:{kafka_port}",
                             "--metrics-port", str(metrics_port), "--checkpoint", str(ckpt),
                             "--app-id", f"wait-{uuid.uuid4().hex[:6]}"],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=tmp_path,
                            start_new_session=True, env={**os.environ, "HOOKSTREAM_METRICS_HOST": "0.0.0.0"})
    try:
        deadline = time.monotonic() + 90
        while log.read_text().count("unreachable (attempt") < 2:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        with EmbeddedBroker(kafka_port):
            wait_metrics(metrics_port, proc, log, timeout_s=90)
            text = log.read_text()
            assert "reachable after" in text
            assert f"metrics http://0.0.0.0:{metrics_port}/metrics" in text  # the real bind address
    finally:
        stop_worker(proc)


def test_worker_broker_wait_gives_up_with_exit_3(tmp_path):
    r = subprocess.run([sys.executable, "-m", "stream_app", "worker", "-b", f"127.0.0.1:{free_port()}",
                        "--broker-wait", "8", "--metrics-port", "0"],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 3, r.stderr
    assert "unreachable (attempt 1" in r.stderr and "error: cannot reach" in r.stderr.splitlines()[-1]
