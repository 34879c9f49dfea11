"""Event wire formats: roundtrips, every rejection reason, event ids, dead letters. No broker."""

import base64
import json
import struct

import numpy as np
import pytest

from models.errors import InputError
from stream_app import events as ev
from stream_app.events import (
    MAX_MESSAGE_BYTES,
    EventError,
    decode_chunk,
    decode_dead_letter,
    decode_highlight,
    encode_chunk,
    encode_dead_letter,
    encode_highlight,
    make_dead_letter,
    make_highlight_event,
)

SR = 22050


def raw(header: dict, payload: bytes = b"") -> bytes:
    """A chunk message built by hand, bypassing encode_chunk's checks."""
    head = json.dumps(header).encode()
    return struct.pack(">I", len(head)) + head + payload


def header(**kw) -> dict:
    h = dict(schema=1, track_id="t", seq=0, sample_rate=SR, channels=1, encoding="f32le", end=False)
    h.update(kw)
    return h


F32 = np.zeros(4, "<f4").tobytes()


# --- audio chunks ---------------------------------------------------------------

def test_f32_mono_roundtrip_is_exact(seed):
    x = np.random.uniform(-1, 1, 1000).astype(np.float32)
    value = encode_chunk("song-1", 3, x, sample_rate=SR, end=True, sent_at=1700000000.25, meta={"a": 1})
    c = decode_chunk(b"song-1", value)
    assert (c.track_id, c.seq, c.sample_rate, c.channels, c.encoding, c.end) == ("song-1", 3, SR, 1, "f32le", True)
    assert c.sent_at == 1700000000.25 and c.meta == {"a": 1}
    assert c.frames == 1000 and c.duration_s == pytest.approx(1000 / SR)
    mono = c.samples_mono()
    assert mono.dtype == np.float32 and mono.shape == (1000,)
    np.testing.assert_array_equal(mono, x)
    mono[0] = 5.0  # writable, and a copy
    np.testing.assert_array_equal(decode_chunk(b"song-1", value).samples_mono(), x)


def test_layout_is_length_json_payload():
    x = np.array([0.5, -0.25], np.float32)
    value = encode_chunk("t", 0, x, sample_rate=SR)
    (n,) = struct.unpack(">I", value[:4])
    h = json.loads(value[4:4 + n])
    assert h == dict(schema=1, track_id="t", seq=0, sample_rate=SR, channels=1, encoding="f32le", end=False)
    assert value[4 + n:] == x.astype("<f4").tobytes()


def test_s16_stereo_roundtrip_and_mono_mix():
    left = np.array([0.5, -1.0, 0.0, 0.25], np.float32)
    right = np.array([0.0, -1.0, 1.0, 0.25], np.float32)  # 1.0 clips to 32767/32768
    value = encode_chunk("t", 0, np.stack([left, right], axis=1), sample_rate=SR, encoding="s16le")
    c = decode_chunk(b"t", value)
    assert c.channels == 2 and c.frames == 4 and len(c.payload) == 16
    s = c.samples()
    assert s.shape == (4, 2) and s.dtype == np.float32
    np.testing.assert_array_equal(s[:, 0], left)
    assert s[2, 1] == np.float32(32767 / 32768)
    np.testing.assert_allclose(c.samples_mono(), (s[:, 0] + s[:, 1]) / 2)


def test_empty_end_chunk_is_valid():
    c = decode_chunk(b"t", encode_chunk("t", 7, np.zeros(0, np.float32), sample_rate=SR, end=True))
    assert c.end and c.frames == 0 and c.samples_mono().shape == (0,)


def test_encode_refuses_oversize_and_nonfinite():
    with pytest.raises(EventError) as e:
        encode_chunk("t", 0, np.zeros(MAX_MESSAGE_BYTES // 4, np.float32), sample_rate=SR)
    assert e.value.reason == "oversize"
    with pytest.raises(EventError) as e:
        encode_chunk("t", 0, np.array([0.0, np.nan], np.float32), sample_rate=SR)
    assert e.value.reason == "nonfinite_audio"
    with pytest.raises(EventError) as e:
        encode_chunk("t", 0, np.zeros(0, np.float32), sample_rate=SR)  # empty but not the end
    assert e.value.reason == "payload_length"


# Every rejection of decode_chunk: (reason, key, value, kwargs).
REJECTIONS = [
    ("oversize", b"t", raw(header(), b"\0" * MAX_MESSAGE_BYTES), {}),
    ("undecodable", b"t", b"\0\0", {}),
    ("undecodable", b"t", struct.pack(">I", 999) + b"{}", {}),
    ("undecodable", b"t", raw(header())[:4] + b"\xff" * (len(raw(header())) - 4), {}),
    ("undecodable", b"t", struct.pack(">I", 2) + b"[]", {}),
    ("unknown_schema", b"t", raw(header(schema=2), F32), {}),
    ("unknown_schema", b"t", raw({k: v for k, v in header().items() if k != "schema"}, F32), {}),
    ("bad_header", b"t", raw({k: v for k, v in header().items() if k != "seq"}, F32), {}),
    ("bad_header", b"t", raw(header(seq=-1), F32), {}),
    ("bad_header", b"t", raw(header(seq=True), F32), {}),
    ("bad_header", b"t", raw(header(seq=2**53), F32), {}),
    ("bad_header", b"t", raw(header(seq=2**63), F32), {}),
    ("bad_header", b"", raw(header(track_id=""), F32), {}),
    ("bad_header", b"t", raw(header(channels=0), F32), {}),
    ("bad_header", b"t", raw(header(sample_rate="22050"), F32), {}),
    ("bad_header", b"t", raw(header(end="yes"), F32), {}),
    ("bad_header", b"t", raw(header(sent_at="now"), F32), {}),
    ("bad_header", b"t", raw(header(meta=[1]), F32), {}),
    ("unsupported_encoding", b"t", raw(header(encoding="mp3"), F32), {}),
    ("unsupported_sample_rate", b"t", raw(header(sample_rate=7999), F32), {}),
    ("unsupported_sample_rate", b"t", raw(header(sample_rate=192001), F32), {}),
    ("unsupported_sample_rate", b"t", raw(header(sample_rate=44100), F32), dict(max_rate=22050)),
    ("unsupported_channels", b"t", raw(header(channels=9), np.zeros(9, "<f4").tobytes()), {}),
    ("unsupported_channels", b"t", raw(header(channels=3), np.zeros(3, "<f4").tobytes()),
     dict(max_channels=2)),
    ("payload_length", b"t", raw(header(), b"\0" * 6), {}),
    ("payload_length", b"t", raw(header(channels=2), F32[:12]), {}),
    ("payload_length", b"t", raw(header()), {}),
    ("nonfinite_audio", b"t", raw(header(), np.array([0, np.inf], "<f4").tobytes()), {}),
    ("nonfinite_audio", b"t", raw(header(), np.array([np.nan], "<f4").tobytes()), {}),
    ("missing_key", None, raw(header(), F32), {}),
    ("key_mismatch", b"other", raw(header(), F32), {}),
]


@pytest.mark.parametrize("reason,key,value,kw", REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_decode_rejects(reason, key, value, kw):
    with pytest.raises(EventError) as e:
        decode_chunk(key, value, **kw)
    assert e.value.reason == reason
    assert isinstance(e.value, InputError)
    assert str(e.value)  # a message naming the problem


def test_every_chunk_reason_is_tested():
    chunk_reasons = set(ev.REASONS) - {"bad_highlight"}
    assert {r[0] for r in REJECTIONS} == chunk_reasons


@pytest.mark.parametrize("rate,channels", [(8000, 1), (16000, 1), (44100, 2), (48000, 6),
                                          (192000, 8)])
def test_any_rate_and_layout_within_the_bounds(rate, channels):
    value = raw(header(sample_rate=rate, channels=channels), np.zeros(channels, "<f4").tobytes())
    c = decode_chunk(b"t", value)
    assert c.sample_rate == rate and c.channels == channels


def test_bounds_named_in_the_rejection():
    with pytest.raises(EventError, match="7999 Hz is outside the accepted 8000-192000 Hz"):
        decode_chunk(b"t", raw(header(sample_rate=7999), F32))
    with pytest.raises(EventError, match="9 channels, at most 8"):
        decode_chunk(b"t", raw(header(channels=9), np.zeros(9, "<f4").tobytes()))


def test_error_message_names_the_track_and_seq():
    with pytest.raises(EventError, match=r"track 'song-9' chunk 4.*200000"):
        decode_chunk(b"song-9", raw(header(track_id="song-9", seq=4, sample_rate=200000), F32))


def test_reason_of():
    assert ev.reason_of(EventError("oversize", "x")) == "oversize"
    assert ev.reason_of(InputError("x")) == "bad_input"
    assert ev.reason_of(RuntimeError("x")) == "internal_error"


# --- highlights --------------------------------------------------------------------

def highlight(**kw):
    args = dict(kind="final", start_s=30.0, end_s=60.0, score=0.9, audio_s=180.0, model="tiny-v1", seq=89)
    args.update(kw)
    return make_highlight_event("song-1", **args)


def test_highlight_roundtrip():
    e = highlight(labels={"chorus": 0.8}, incomplete=False)
    assert decode_highlight(encode_highlight(e)) == e
    assert e["schema"] == 1 and e["emitted_at"].endswith("Z")
    assert set(e) == {"schema", "event_id", "track_id", "kind", "seq", "start_s", "end_s", "score",
                      "audio_s", "model", "emitted_at", "incomplete", "labels"}


def test_event_id_is_stable_and_ignores_emitted_at():
    a = highlight(emitted_at="2025-01-01T00:00:00.000Z")
    b = highlight(emitted_at="2025-06-01T12:00:00.000Z", score=0.1)
    assert a["event_id"] == b["event_id"]
    assert highlight(start_s=30.0004)["event_id"] == a["event_id"]  # rounded to ms
    for change in (dict(kind="provisional"), dict(seq=90), dict(start_s=30.5), dict(end_s=61.0)):
        assert highlight(**change)["event_id"] != a["event_id"], change
    assert make_highlight_event("song-2", kind="final", start_s=30.0, end_s=60.0, score=0.9, audio_s=180.0,
                                model="tiny-v1", seq=89)["event_id"] != a["event_id"]


@pytest.mark.parametrize("bad", [
    b"not json", b"[1]", b"\xff",
    json.dumps({"track_id": "t"}).encode(),
])
def test_decode_highlight_rejects(bad):
    with pytest.raises(EventError) as e:
        decode_highlight(bad)
    assert e.value.reason == "bad_highlight"


@pytest.mark.parametrize("change", [
    dict(kind="maybe"), dict(start_s=70.0), dict(start_s=-1.0), dict(score=float("nan")), dict(schema=2),
    dict(labels={"a": "high"}), dict(incomplete="no"), dict(seq=1.5),
])
def test_encode_highlight_validates(change):
    e = dict(highlight(), **change)
    with pytest.raises(EventError):
        encode_highlight(e)


# --- dead letters ----------------------------------------------------------------------

def test_dead_letter_keeps_key_value_and_position():
    value = raw(header(sample_rate=44100), F32)
    d = make_dead_letter(reason="unsupported_sample_rate", detail="44100 Hz", key=b"song-1", value=value,
                         topic="audio-chunks", partition=2, offset=17)
    assert d["reason"] == "unsupported_sample_rate" and d["detail"] == "44100 Hz"
    assert (d["topic"], d["partition"], d["offset"]) == ("audio-chunks", 2, 17)
    assert d["key"] == "song-1" and d["key_encoding"] == "utf-8"
    assert d["value_bytes"] == len(value) and base64.b64decode(d["value_b64"]) == value
    assert d["failed_at"].endswith("Z")
    back = decode_dead_letter(encode_dead_letter(d))
    assert back == d
    assert ev.dead_letter_value(back) == value and ev.dead_letter_key(back) == b"song-1"


def test_dead_letter_binary_key_missing_key_and_large_value():
    d = make_dead_letter(reason="undecodable", detail="x" * 5000, key=b"\xff\x00", value=b"\0" * (ev.DLQ_MAX_VALUE_BYTES + 1),
                         topic="audio-chunks", partition=0, offset=0)
    assert d["key_encoding"] == "base64" and ev.dead_letter_key(d) == b"\xff\x00"
    assert "value_b64" not in d and d["value_bytes"] == ev.DLQ_MAX_VALUE_BYTES + 1
    assert ev.dead_letter_value(d) is None
    assert len(d["detail"]) <= ev.DLQ_MAX_DETAIL_CHARS + 3
    d = make_dead_letter(reason="missing_key", detail="no key", key=None, value=None,
                         topic="audio-chunks", partition=0, offset=1)
    assert d["key"] is None and d["value_bytes"] == 0 and ev.dead_letter_key(d) is None


def test_largest_dead_letter_stays_under_the_message_limit():
    d = make_dead_letter(reason="undecodable", detail="x" * 10_000, key=b"k" * 256,
                         value=b"\xff" * ev.DLQ_MAX_VALUE_BYTES, topic="a" * 249, partition=0, offset=2**62)
    assert len(encode_dead_letter(d)) < MAX_MESSAGE_BYTES


def test_events_module_is_framework_free():
    import ast
    from pathlib import Path

    tree = ast.parse(Path(ev.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"faust", "kafka", "aiokafka", "prometheus_client"}


# --- settings (configs/stream.yaml); here until a tests/stream_app/test_settings.py exists -------

def test_settings_defaults_equal_the_yaml(tmp_path):
    from stream_app.settings import Settings, load_settings

    assert load_settings() == Settings()
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_settings(empty) == Settings()


def test_every_settings_field_is_read_from_the_yaml(tmp_path):
    """A YAML value other than the default reaches the settings, for every field of every section."""
    import dataclasses

    import yaml

    from stream_app.settings import StreamSettings, WorkerSettings, load_settings

    changed = {"stream": dict(provisional_min_interval_s=0.5, idle_timeout_s=7.0, min_sample_rate=16000,
                              max_sample_rate=48000, max_channels=1, finished_retention_s=20.0, top_k=2,
                              state_segment_chunks=4),
               "worker": dict(metrics_port=9999, batch_max_tracks=3, batch_wait_s=0.2, stall_after_s=9.0,
                              session_timeout_s=3.0)}
    for section, cls in (("stream", StreamSettings), ("worker", WorkerSettings)):
        assert set(changed[section]) == {f.name for f in dataclasses.fields(cls)}, section
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(changed))
    s = load_settings(path)
    for section, values in changed.items():
        got = dataclasses.asdict(getattr(s, section))
        assert {k: list(v) if isinstance(v, tuple) else v for k, v in got.items()} == values


def test_settings_overrides_and_environment():
    from stream_app.settings import load_settings

    s = load_settings(bootstrap="h:1", partitions=8, topics={"highlights": "hl-x"}, stream={"max_channels": None})
    assert s.kafka.bootstrap == "h:1" and s.partitions == 8 and s.topics.highlights == "hl-x"
    assert s.stream.max_channels == 8
    assert s.topic_partitions() == {"audio-chunks": 8, "hl-x": 8, "audio-chunks.dlq": 8}
    env = {"HOOKSTREAM_BOOTSTRAP": "envhost:9093"}
    assert load_settings().kafka.bootstrap == "127.0.0.1:9092"  # environment ignored unless passed
    assert load_settings(environ=env).kafka.bootstrap == "envhost:9093"
    assert load_settings(environ=env, bootstrap="flag:1").kafka.bootstrap == "flag:1"


@pytest.mark.parametrize("text,key", [
    ("partitions: 0", "partitions"),
    ("partitions: two", "partitions"),
    ("kafka: {bootstrap: nohost}", "kafka.bootstrap"),
    ("kafka: {security_protocol: TLS}", "kafka.security_protocol"),
    ("kafka: {security_protocol: SASL_SSL, sasl_mechanism: PLAIN, sasl_username: u}", "kafka.sasl_password"),
    ("kafka: {security_protocol: SASL_SSL}", "kafka.sasl_mechanism"),
    ("kafka: {bootstarp: x:1}", "kafka.bootstarp"),
    ("topics: {chunks: 'a b'}", "topics.chunks"),
    ("topics: {chunks: x, highlights: x}", "topics"),
    ("stream: {allowed_sample_rates: [22050]}", "stream.allowed_sample_rates"),
    ("stream: {min_sample_rate: 0}", "stream.min_sample_rate"),
    ("stream: {min_sample_rate: 48000, max_sample_rate: 44100}", "stream.max_sample_rate"),
    ("stream: {max_channels: 0}", "stream.max_channels"),
    ("stream: {idle_timeout_s: 0}", "stream.idle_timeout_s"),
    ("worker: {metrics_port: 70000}", "worker.metrics_port"),
    ("extra: 1", "extra"),
])
def test_settings_errors_name_the_key(tmp_path, text, key):
    from models.errors import ConfigError
    from stream_app.settings import load_settings

    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings(path)


def test_security_kwargs():
    from stream_app.settings import kafka_python_security_kwargs, load_settings

    assert kafka_python_security_kwargs(load_settings()) == {"security_protocol": "PLAINTEXT"}
    s = load_settings(kafka={"security_protocol": "SASL_SSL", "sasl_mechanism": "scram-sha-512",
                             "sasl_username": "u", "sasl_password": "s3cr3t", "ssl_cafile": "/ca.pem"})
    assert kafka_python_security_kwargs(s) == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "u", "sasl_plain_password": "s3cr3t", "ssl_cafile": "/ca.pem",
    }
    assert "s3cr3t" not in repr(s)  # the password stays out of logs
