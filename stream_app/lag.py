"""Consumer lag of the worker group on the chunk topic, as Prometheus gauges.

A thread reads, every ``interval_s``, the group's committed offset and the end
offset of each partition of the chunk topic with a kafka-python consumer that
never joins the group (``committed()`` and ``end_offsets()`` only), and a
collector serves the last reading:

- ``hookstream_consumer_lag_messages{topic, partition}``: end offset minus the
  committed offset (minus the beginning offset where the group has committed
  nothing yet: Faust starts there), never below 0;
- ``hookstream_consumer_committed_offset{topic, partition}`` and
  ``hookstream_topic_end_offset{topic, partition}``: the two readings;
- ``hookstream_consumer_lag_last_success_timestamp_seconds``: when they were read.

Every worker reports the whole group's lag (the same numbers): aggregate with
``max by (topic, partition)``, never ``sum``.

On the embedded broker (Tansu) the end offset is wrong: ListOffsets "latest"
returns the base offset of the last record batch plus one, not the log end
(/work/shared/ENVIRONMENT.md). A producer that batches (``hookstream ingest``
lingers 5 ms) thus makes the end offset, and the lag, read low by up to the
last batch's size less one; a real Kafka reports the log end.
"""

from __future__ import annotations

import logging
import threading
import time

from prometheus_client.core import GaugeMetricFamily

from stream_app.settings import Settings, kafka_python_security_kwargs

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 15.0  # the scrape interval of deploy/prometheus/prometheus.yml


class ConsumerLag:
    """Polls the lag of consumer group ``group`` on ``settings.topics.chunks``; a Prometheus collector."""

    def __init__(self, settings: Settings, group: str, *, interval_s: float = DEFAULT_INTERVAL_S):
        self.settings, self.group, self.interval_s = settings, group, interval_s
        self.topic = settings.topics.chunks
        self.readings: dict[int, tuple[int | None, int, int]] = {}  # partition: (committed, beginning, end)
        self.last_success = 0.0
        self._consumer = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- reading ---------------------------------------------------------------------------
    def poll_once(self) -> dict[int, int]:
        """Read the offsets now; returns ``{partition: lag}``."""
        from kafka import KafkaConsumer, TopicPartition

        if self._consumer is None:
            self._consumer = KafkaConsumer(
                bootstrap_servers=self.settings.kafka.bootstrap_servers, group_id=self.group,
                enable_auto_commit=False, client_id="hookstream-lag", allow_auto_create_topics=False,
                **kafka_python_security_kwargs(self.settings))
        c = self._consumer
        tps = [TopicPartition(self.topic, p) for p in sorted(c.partitions_for_topic(self.topic) or ())]
        end = c.end_offsets(tps)
        begin = c.beginning_offsets(tps)
        readings = {tp.partition: (c.committed(tp), begin[tp], end[tp]) for tp in tps}
        self.readings, self.last_success = readings, time.time()
        return self.lag()

    def lag(self) -> dict[int, int]:
        return {p: max(0, end - (begin if committed is None else committed))
                for p, (committed, begin, end) in self.readings.items()}

    # --- thread ----------------------------------------------------------------------------
    def start(self) -> "ConsumerLag":
        self._thread = threading.Thread(target=self._run, name="hookstream-lag", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._consumer is not None:
            self._consumer.close(autocommit=False)

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                self.poll_once()
                if failing:
                    log.info("consumer lag: reading offsets works again")
                failing = False
            except Exception as exc:  # never let the lag reader take the worker down
                if not failing:
                    log.warning("consumer lag: cannot read offsets of group %r on %s (%s); retrying every %g s",
                                self.group, self.topic, exc, self.interval_s)
                failing = True
            self._stop.wait(self.interval_s)

    # --- collector -------------------------------------------------------------------------
    def describe(self):
        return []  # collected lazily: the partitions are known only after the first reading

    def collect(self):
        labels = ["topic", "partition"]
        lag = GaugeMetricFamily("hookstream_consumer_lag_messages",
                                "Chunk events not yet committed by the worker group, per partition "
                                "(end offset - committed offset; the whole group's, from every worker)",
                                labels=labels)
        committed = GaugeMetricFamily("hookstream_consumer_committed_offset",
                                      "The worker group's committed offset per partition (-1: none yet)",
                                      labels=labels)
        end = GaugeMetricFamily("hookstream_topic_end_offset",
                                "End offset of each chunk-topic partition (low on Tansu, see stream_app/lag.py)",
                                labels=labels)
        lags = self.lag()
        for p, (c, _b, e) in sorted(self.readings.items()):
            key = [self.topic, str(p)]
            lag.add_metric(key, lags[p])
            committed.add_metric(key, -1 if c is None else c)
            end.add_metric(key, e)
        ok = GaugeMetricFamily("hookstream_consumer_lag_last_success_timestamp_seconds",
                               "Unix time of the last successful lag reading (0: none yet)")
        ok.add_metric([], self.last_success)
        return [lag, committed, end, ok]
