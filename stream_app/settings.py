"""Settings of the streaming side, loaded from ``configs/stream.yaml``.

Frozen dataclasses, validated in one place (:func:`load_settings`); every
rejection is a :class:`~models.errors.ConfigError` naming the key. Environment
variables are read only when the caller passes ``environ`` (the command line
does; library code and tests do not), so the core never depends on the
process environment.

Precedence, lowest first: built-in defaults (equal to ``configs/stream.yaml``),
the YAML file, environment (``HOOKSTREAM_BOOTSTRAP``, ``HOOKSTREAM_KAFKA_<KEY>``
for the other ``kafka`` keys, ``HOOKSTREAM_SASL_PASSWORD`` or
``HOOKSTREAM_SASL_PASSWORD_FILE``), explicit overrides (command-line flags).
A deployment thus ships ``configs/*.yaml`` unchanged and sets only its
cluster's connection in the environment (deploy/k8s/worker-deployment.yaml).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.config import read_yaml
from models.errors import ConfigError

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "stream.yaml"

ENV_BOOTSTRAP = "HOOKSTREAM_BOOTSTRAP"
ENV_SASL_PASSWORD = "HOOKSTREAM_SASL_PASSWORD"
ENV_SASL_PASSWORD_FILE = "HOOKSTREAM_SASL_PASSWORD_FILE"  # a mounted Secret: the file's text
ENV_KAFKA_PREFIX = "HOOKSTREAM_KAFKA_"  # + SECURITY_PROTOCOL, SASL_MECHANISM, SASL_USERNAME, SSL_*
ENV_KAFKA_KEYS = ("security_protocol", "sasl_mechanism", "sasl_username",
                  "ssl_cafile", "ssl_certfile", "ssl_keyfile")

# Client settings for the embedded Tansu broker (see /work/shared/ENVIRONMENT.md).
# A group join waits half the session timeout there: with kafka-python's
# default (45 s) the first message of a fresh group arrives after about 23 s,
# with these settings after about 3 s, now and then 6 s (two join rounds)
# (measured; tests/stream_app/test_broker.py::test_group_join_with_recommended_settings_is_fast).
KAFKA_PYTHON_GROUP_KW: dict[str, int] = dict(session_timeout_ms=6000, heartbeat_interval_ms=1000)
AIOKAFKA_GROUP_KW: dict[str, int] = dict(session_timeout_ms=6000, heartbeat_interval_ms=1000)
# --- Latency: every client setting that can hold a chunk or a highlight back -----------
# One place; measured with ``hookstream bench --phases latency --concurrency 20``
# (docs/performance.md, "Latency settings"). Path of a chunk: ingest producer ->
# broker -> worker consumer fetch -> agent batch -> scorer -> worker producer ->
# broker -> subscriber fetch.
#
# worker_fetch_max_wait_ms: how long the broker may hold the worker's fetch when
#   it has less than fetch_min_bytes (1) to return. Faust hardcodes 1500 ms.
#   Tansu (the embedded broker) answers a fetch with nothing new only when the
#   wait runs out, and records produced meanwhile wait for the next fetch, so
#   this wait is added to a chunk's latency (up to its full value). Real Kafka
#   answers a parked fetch as soon as a record arrives, so there the value
#   only bounds the latency of an idle partition's first record; lower values
#   mean more (empty) fetch requests per second from every consumer: 1 / wait
#   per broker connection, cheap at 50 ms (20 requests/s per worker).
# subscriber_fetch_max_wait_ms: the same for kafka-python consumers of the
#   highlights (hookstream subscribe, the bench); kafka-python's default is 500.
# ingest_linger_ms: how long the kafka-python chunk producer waits to fill a
#   batch. A chunk event is ~176 KB, over the 16 KB default batch size, so
#   every chunk is a batch of its own anyway: 0 costs nothing and saves the wait.
#   On real Kafka, linger trades latency for fewer produce requests with small
#   records; it does not matter for records this large.
# worker_producer_linger_s: Faust's producer (highlights, changelog); Faust's
#   default is 0 already: set here so it stays so. producer_max_batch_size=1
#   (above) also keeps each record a batch of its own.
# worker.batch_wait_s (configs/stream.yaml, 0.01 s): the agent's take_events
#   window: a batch is scored when it has batch_max_tracks events or this much
#   time passed since its first. It adds up to its value to a chunk's latency;
#   under load, events that arrive while a batch is scored make the next batch
#   larger anyway, so a short window costs little throughput (0.05 -> 0.01:
#   own-event p50 0.180/0.189 -> 0.094/0.087 s, docs/performance.md).
LATENCY: dict[str, float] = dict(
    worker_fetch_max_wait_ms=50,
    subscriber_fetch_max_wait_ms=50,
    ingest_linger_ms=0,
    worker_producer_linger_s=0.0,
)

# producer_max_batch_size=1 makes every record its own batch, which sidesteps
# Tansu's ListOffsets("latest") bug (base offset of the last batch + 1, not the
# log end) that otherwise makes Faust table recovery miss the changelog tail.
FAUST_BROKER_KW: dict[str, Any] = dict(
    producer_max_batch_size=1,
    producer_linger=LATENCY["worker_producer_linger_s"],
)



def faust_group_kwargs(settings: "Settings") -> dict[str, float]:
    """The worker's consumer-group timing: ``worker.session_timeout_s``, heartbeat a third of it
    (at most 1 s).

    A restarted worker's group join takes about half the session timeout on the
    embedded broker (Tansu), so this bounds its recovery time; on Kafka the
    session timeout is how long a killed worker's partitions wait before they
    are reassigned, and the broker refuses values under its
    ``group.min.session.timeout.ms`` (6 s by default).
    """
    session = settings.worker.session_timeout_s
    return dict(broker_session_timeout=session, broker_heartbeat_interval=min(1.0, session / 3))


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class TopicSettings:
    chunks: str = "audio-chunks"
    highlights: str = "highlights"
    dead_letter: str = "audio-chunks.dlq"


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @property
    def bootstrap_servers(self) -> list[str]:
        """``bootstrap`` split into its ``host:port`` entries."""
        return [s.strip() for s in self.bootstrap.split(",") if s.strip()]


@dataclass(frozen=True)
class StreamSettings:
    provisional_min_interval_s: float = 2.0
    idle_timeout_s: float = 60.0
    min_sample_rate: int = 8000  # chunk events at rates outside [min, max] Hz are dead letters
    max_sample_rate: int = 192000
    max_channels: int = 8
    top_k: int = 3  # highlights listed in a final event (non-overlapping, best first)
    finished_retention_s: float = 3600.0  # end-of-track markers are kept this long (late chunks)
    state_segment_chunks: int = 10  # new chunks a track's table head holds before a segment (tracks.py)


@dataclass(frozen=True)
class WorkerSettings:
    metrics_port: int = 9108
    batch_max_tracks: int = 64
    batch_wait_s: float = 0.01
    stall_after_s: float = 60.0  # one agent batch longer than this turns /healthz red
    session_timeout_s: float = 6.0  # consumer group session (Kafka's smallest by default: 6 s)


@dataclass(frozen=True)
class Settings:
    topics: TopicSettings = TopicSettings()
    partitions: int = 4
    kafka: KafkaSettings = KafkaSettings()
    stream: StreamSettings = StreamSettings()
    worker: WorkerSettings = WorkerSettings()

    def topic_partitions(self) -> dict[str, int]:
        """``{topic name: partitions}`` for every topic the app uses (for ``ensure_topics``)."""
        t = self.topics
        return {t.chunks: self.partitions, t.highlights: self.partitions, t.dead_letter: self.partitions}


_SECTIONS: dict[str, type] = {
    "topics": TopicSettings,
    "kafka": KafkaSettings,
    "stream": StreamSettings,
    "worker": WorkerSettings,
}


def load_settings(
    path: str | os.PathLike | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Load and validate the settings.

    Parameters
    ----------
    path : YAML file; None reads ``configs/stream.yaml`` (built-in defaults if
        it is absent, e.g. in an installed wheel). An explicit path must exist.
    environ : environment to read ``HOOKSTREAM_BOOTSTRAP``,
        ``HOOKSTREAM_KAFKA_<KEY>`` and ``HOOKSTREAM_SASL_PASSWORD[_FILE]``
        from (empty values are ignored); None (the default) reads nothing.
        Pass ``os.environ`` only at the edge (command line, app start).
    **overrides : applied last, None values ignored. A section name takes a
        dict merged into that section (``topics={"highlights": "hl-test"}``);
        ``partitions=8``; ``bootstrap="host:port"`` is short for
        ``kafka={"bootstrap": ...}``.

    Raises
    ------
    ConfigError naming the key (``kafka.security_protocol``) and the problem.
    """
    raw = _read_yaml(path)
    env = environ or {}
    if env.get(ENV_BOOTSTRAP):
        raw.setdefault("kafka", {})["bootstrap"] = env[ENV_BOOTSTRAP]
    for key in ENV_KAFKA_KEYS:
        if env.get(ENV_KAFKA_PREFIX + key.upper()):
            raw.setdefault("kafka", {})[key] = env[ENV_KAFKA_PREFIX + key.upper()]
    if env.get(ENV_SASL_PASSWORD_FILE):
        raw.setdefault("kafka", {})["sasl_password"] = _read_secret(env[ENV_SASL_PASSWORD_FILE])
    if env.get(ENV_SASL_PASSWORD):
        raw.setdefault("kafka", {})["sasl_password"] = env[ENV_SASL_PASSWORD]
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "bootstrap":
            raw.setdefault("kafka", {})["bootstrap"] = value
        elif key in _SECTIONS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"override {key}: expected a mapping, got {value!r}")
            section = raw.setdefault(key, {})
            if not isinstance(section, dict):
                raise ConfigError(f"{key}: expected a mapping, got {section!r}")
            section.update({k: v for k, v in value.items() if v is not None})
        elif key == "partitions":
            raw["partitions"] = value
        else:
            raise ConfigError(f"unknown settings override {key!r}")
    return _build(raw, source=str(path or DEFAULT_CONFIG))


def _read_secret(path: str) -> str:
    """The text of a mounted secret file, without its trailing newline."""
    try:
        return Path(path).read_text().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{ENV_SASL_PASSWORD_FILE}={path}: cannot read it ({exc.strerror})") from None


def _read_yaml(path: str | os.PathLike | None) -> dict:
    if path is None:
        if not DEFAULT_CONFIG.exists():
            return {}
        path = DEFAULT_CONFIG
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    import yaml

    try:
        data = read_yaml(path)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}


def _build(raw: dict, *, source: str) -> Settings:
    known = set(_SECTIONS) | {"partitions"}
    for key in raw:
        if key not in known:
            raise ConfigError(f"{source}: unknown key {key!r} (known: {', '.join(sorted(known))})")
    sections = {}
    for name, cls in _SECTIONS.items():
        values = raw.get(name) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{name}: expected a mapping, got {values!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in names:
                raise ConfigError(f"{name}.{key}: unknown key (known: {', '.join(sorted(names))})")
        sections[name] = values
    settings = Settings(
        topics=_topics(sections["topics"]),
        partitions=_int("partitions", raw.get("partitions", Settings.partitions), lo=1),
        kafka=_kafka(sections["kafka"]),
        stream=_stream(sections["stream"]),
        worker=_worker(sections["worker"]),
    )
    return settings


def _topics(v: dict) -> TopicSettings:
    d = TopicSettings()
    out = {}
    for name in ("chunks", "highlights", "dead_letter"):
        value = v.get(name, getattr(d, name))
        out[name] = _topic_name(f"topics.{name}", value)
    if len(set(out.values())) != len(out):
        raise ConfigError(f"topics: names must be distinct, got {out}")
    return TopicSettings(**out)


def _kafka(v: dict) -> KafkaSettings:
    d = KafkaSettings()
    bootstrap = _str("kafka.bootstrap", v.get("bootstrap", d.bootstrap))
    for entry in bootstrap.split(","):
        host, sep, port = entry.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"kafka.bootstrap: expected host:port[,host:port...], got {bootstrap!r}")
    protocol = _str("kafka.security_protocol", v.get("security_protocol", d.security_protocol)).upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise ConfigError(
            f"kafka.security_protocol: {protocol!r} is not one of {', '.join(SECURITY_PROTOCOLS)}"
        )
    opt = {k: _opt_str(f"kafka.{k}", v.get(k)) for k in (
        "sasl_mechanism", "sasl_username", "sasl_password", "ssl_cafile", "ssl_certfile", "ssl_keyfile"
    )}
    if protocol.startswith("SASL_"):
        mech = (opt["sasl_mechanism"] or "").upper()
        if mech not in SASL_MECHANISMS:
            raise ConfigError(
                f"kafka.sasl_mechanism: {opt['sasl_mechanism']!r} is not one of "
                f"{', '.join(SASL_MECHANISMS)} (required with security_protocol {protocol})"
            )
        opt["sasl_mechanism"] = mech
        for key in ("sasl_username", "sasl_password"):
            if not opt[key]:
                raise ConfigError(f"kafka.{key}: required with security_protocol {protocol}")
    elif opt["sasl_mechanism"]:
        raise ConfigError(
            f"kafka.sasl_mechanism: set to {opt['sasl_mechanism']!r} but security_protocol is "
            f"{protocol}; use SASL_PLAINTEXT or SASL_SSL"
        )
    if bool(opt["ssl_certfile"]) != bool(opt["ssl_keyfile"]):
        raise ConfigError("kafka.ssl_certfile and kafka.ssl_keyfile: give both or neither")
    return KafkaSettings(bootstrap=bootstrap, security_protocol=protocol, **opt)


def _stream(v: dict) -> StreamSettings:
    d = StreamSettings()
    if "allowed_sample_rates" in v:
        raise ConfigError("stream.allowed_sample_rates: replaced by stream.min_sample_rate and "
                          "stream.max_sample_rate (the worker resamples any rate between them)")
    lo = _int("stream.min_sample_rate", v.get("min_sample_rate", d.min_sample_rate), lo=1)
    hi = _int("stream.max_sample_rate", v.get("max_sample_rate", d.max_sample_rate), lo=1)
    if hi < lo:
        raise ConfigError(f"stream.max_sample_rate: {hi} is below stream.min_sample_rate {lo}")
    return StreamSettings(
        provisional_min_interval_s=_float(
            "stream.provisional_min_interval_s", v.get("provisional_min_interval_s", d.provisional_min_interval_s), lo=0.0
        ),
        idle_timeout_s=_float("stream.idle_timeout_s", v.get("idle_timeout_s", d.idle_timeout_s), lo=0.0, strict=True),
        min_sample_rate=lo,
        max_sample_rate=hi,
        max_channels=_int("stream.max_channels", v.get("max_channels", d.max_channels), lo=1),
        top_k=_int("stream.top_k", v.get("top_k", d.top_k), lo=1),
        finished_retention_s=_float("stream.finished_retention_s",
                                    v.get("finished_retention_s", d.finished_retention_s), lo=0.0),
        state_segment_chunks=_int("stream.state_segment_chunks",
                                  v.get("state_segment_chunks", d.state_segment_chunks), lo=1),
    )


def _worker(v: dict) -> WorkerSettings:
    d = WorkerSettings()
    return WorkerSettings(
        metrics_port=_int("worker.metrics_port", v.get("metrics_port", d.metrics_port), lo=0, hi=65535),
        batch_max_tracks=_int("worker.batch_max_tracks", v.get("batch_max_tracks", d.batch_max_tracks), lo=1),
        batch_wait_s=_float("worker.batch_wait_s", v.get("batch_wait_s", d.batch_wait_s), lo=0.0),
        stall_after_s=_float("worker.stall_after_s", v.get("stall_after_s", d.stall_after_s),
                             lo=0.0, strict=True),
        session_timeout_s=_float("worker.session_timeout_s",
                                 v.get("session_timeout_s", d.session_timeout_s), lo=1.0),
    )


# --- scalar validators -------------------------------------------------------

def _int(key: str, value: Any, *, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)  # from a command-line flag or environment variable
        else:
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if lo is not None and value < lo or hi is not None and value > hi:
        raise ConfigError(f"{key}: {value} is out of range [{lo}, {hi if hi is not None else 'inf'}]")
    return value


def _float(key: str, value: Any, *, lo: float | None = None, strict: bool = False) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ConfigError(f"{key}: must be finite, got {value!r}")
    if lo is not None and (out < lo or strict and out == lo):
        raise ConfigError(f"{key}: must be {'>' if strict else '>='} {lo}, got {value!r}")
    return out


def _str(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: expected a non-empty string, got {value!r}")
    return value.strip()


def _opt_str(key: str, value: Any) -> str | None:
    return None if value is None else _str(key, value)


def _topic_name(key: str, value: Any) -> str:
    name = _str(key, value)
    if len(name) > 249 or name in (".", "..") or not all(c.isalnum() or c in "._-" for c in name):
        raise ConfigError(f"{key}: {name!r} is not a valid Kafka topic name ([A-Za-z0-9._-], at most 249)")
    return name


# --- client keyword arguments --------------------------------------------------

def _protocol_kwargs(k: KafkaSettings) -> dict[str, Any]:
    """``security_protocol`` and, for SASL, the mechanism and credentials (both clients' names)."""
    kw: dict[str, Any] = {"security_protocol": k.security_protocol}
    if k.security_protocol.startswith("SASL_"):
        kw.update(
            sasl_mechanism=k.sasl_mechanism,
            sasl_plain_username=k.sasl_username,
            sasl_plain_password=k.sasl_password,
        )
    return kw


def kafka_python_security_kwargs(settings: Settings) -> dict[str, Any]:
    """Security keyword arguments for kafka-python clients (producer, consumer, admin)."""
    k = settings.kafka
    kw = _protocol_kwargs(k)
    if k.security_protocol.endswith("SSL"):
        kw.update({
            name: getattr(k, name)
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
            if getattr(k, name)
        })
    return kw


def _ssl_context(settings: Settings):
    k = settings.kafka
    if not k.security_protocol.endswith("SSL"):
        return None
    from aiokafka.helpers import create_ssl_context

    return create_ssl_context(cafile=k.ssl_cafile, certfile=k.ssl_certfile, keyfile=k.ssl_keyfile)


def aiokafka_security_kwargs(settings: Settings) -> dict[str, Any]:
    """Security keyword arguments for aiokafka clients (an ``ssl_context`` for TLS)."""
    k = settings.kafka
    kw = _protocol_kwargs(k)
    ctx = _ssl_context(settings)
    if ctx is not None:
        kw["ssl_context"] = ctx
    return kw


def faust_broker_kwargs(settings: Settings) -> dict[str, Any]:
    """``faust.App`` keyword arguments: ``broker`` URLs and ``broker_credentials`` (if any).

    Combine with :data:`FAUST_BROKER_KW` for the embedded broker.
    """
    k = settings.kafka
    kw: dict[str, Any] = {"broker": [f"kafka://{s}" for s in k.bootstrap_servers]}
    if k.security_protocol == "PLAINTEXT":
        return kw
    import faust

    ctx = _ssl_context(settings)
    if k.security_protocol.startswith("SASL_"):
        kw["broker_credentials"] = faust.SASLCredentials(
            username=k.sasl_username, password=k.sasl_password, mechanism=k.sasl_mechanism, ssl_context=ctx
        )
    else:
        kw["broker_credentials"] = faust.SSLCredentials(ctx)
    return kw
