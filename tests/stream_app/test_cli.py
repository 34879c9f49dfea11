"""Command-line conventions: --version, -b, --topic, exit codes, files before the broker, quiet libraries."""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stream_app.broker import free_port
from stream_app.cli import build_parser, main
from stream_app.errors import EXIT_BROKER_UNREACHABLE, EXIT_FAILURE, EXIT_USAGE

REPO = Path(__file__).resolve().parents[2]
SR = 22050


def hookstream(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "stream_app", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    sf.write(d / "ok.wav", (0.1 * np.sin(np.arange(3 * SR) / 10)).astype(np.float32), SR)
    (d / "broken.mp3").write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 8)
    return d


def test_version():
    r = hookstream("--version")
    assert r.returncode == 0 and r.stdout.split() == ["hookstream", "0.1.0"]


@pytest.mark.parametrize("flag", ["-b", "--bootstrap-server", "--bootstrap"])
@pytest.mark.parametrize("command", [["ingest", "x.wav"], ["subscribe"], ["worker"]])
def test_bootstrap_spellings(command, flag):
    assert build_parser().parse_args([*command, flag, "h:9"]).bootstrap == "h:9"


@pytest.mark.parametrize("argv", [
    ["detect", "x.wav", "--length", "inf"],
    ["detect", "x.wav", "--length", "nan"],
    ["detect", "x.wav", "--length", "-3"],
    ["detect", "x.wav", "--length", "0"],
    ["subscribe", "--count", "0"],
    ["subscribe", "--timeout", "-1"],
    ["ingest", "x.wav", "--chunk-seconds", "0"],
    ["worker", "--metrics-port", "70000"],
    ["no-such-command"],
])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == EXIT_USAGE
    assert "usage:" in capsys.readouterr().err


def test_usage_errors_found_by_the_command_exit_2(audio, capsys):
    assert main(["ingest"]) == EXIT_USAGE  # neither PATH nor --from-list
    assert main(["ingest", str(audio / "ok.wav"), "--from-list", "list.txt"]) == EXIT_USAGE
    assert main(["ingest", str(audio / "ok.wav"), str(audio / "ok.wav"), "--track-id", "x"]) == EXIT_USAGE
    assert main(["ingest", str(audio / "ok.wav"), "--chunk-seconds", "30"]) == EXIT_USAGE
    assert "at most 11" in capsys.readouterr().err


def test_broker_unreachable_is_exit_3_with_one_line(audio):
    bs = f"127.0.0.1:{free_port()}"  # nothing listens there
    for argv in (["ingest", str(audio / "ok.wav"), "-b", bs], ["subscribe", "-b", bs, "--timeout", "1"]):
        r = hookstream(*argv)
        assert r.returncode == EXIT_BROKER_UNREACHABLE, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"hookstream {argv[0]}: error: cannot reach"), r.stderr


def test_ingest_checks_files_before_the_broker(audio):
    bs = f"127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    r = hookstream("ingest", str(audio / "missing.wav"), str(audio / "broken.mp3"), "-b", bs)
    assert r.returncode == EXIT_FAILURE and "cannot reach" not in r.stderr
    assert r.stderr.splitlines() == [f"hookstream ingest: {audio / 'missing.wav'}: no such file",
                                     f"hookstream ingest: {audio / 'broken.mp3'}: corrupt or not an audio file "
                                     "(unrecognised content)"]  # and no libmpg123 chatter
    assert time.monotonic() - t0 < 30  # no 5 s wait for a broker


def test_corrupt_file_is_called_corrupt(audio, capsys):
    rc = main(["detect", str(audio / "broken.mp3"), "--json"])
    err = capsys.readouterr().err
    assert rc == EXIT_FAILURE and "corrupt" in err and "does not exist" not in err


def test_length_longer_than_the_track_warns(audio, tmp_path, capsys):
    from models import checkpoint, nets

    ckpt = checkpoint.save(checkpoint.untrained(nets.tiny(), ("a", "b", "c", "d", "e")), tmp_path / "tiny.safetensors")
    assert main(["detect", str(audio / "ok.wav"), "--json", "--length", "60", "--checkpoint", str(ckpt)]) == 0
    err = capsys.readouterr().err
    assert "highlight length 60 s is longer than the track (3.0 s)" in err


def test_detect_reads_stdin(audio, tmp_path):
    from models import checkpoint, nets

    ckpt = checkpoint.save(checkpoint.untrained(nets.tiny(), tuple("abcde")), tmp_path / "tiny.safetensors")
    with open(audio / "ok.wav", "rb") as f:
        r = subprocess.run([sys.executable, "-m", "stream_app", "detect", "-", "--json", "--checkpoint", str(ckpt)],
                           stdin=f, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)
    assert (row["path"], row["track_id"], row["duration_s"]) == ("-", "stdin", 3.0)
    r = subprocess.run([sys.executable, "-m", "stream_app", "detect", "-", "-"], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == EXIT_USAGE and "only once" in r.stderr


@pytest.mark.integration
def test_ingest_reads_stdin(broker, audio):
    with open(audio / "ok.wav", "rb") as f:
        r = subprocess.run([sys.executable, "-m", "stream_app", "ingest", "-", "-b", broker.bootstrap,
                            "--topic", f"chunks-stdin-{uuid.uuid4().hex[:8]}"],
                           stdin=f, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("stdin: 2 chunks, 3.00 s of audio")


@pytest.mark.integration
def test_subscribe_never_creates_topics(broker):
    from kafka import KafkaAdminClient

    topic = f"hl-absent-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    r = hookstream("subscribe", "-b", broker.bootstrap, "--topic", topic, "--timeout", "2")
    assert r.returncode == 0 and r.stdout == "" and time.monotonic() - t0 >= 2
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        assert topic not in admin.list_topics()
    finally:
        admin.close()


@pytest.mark.integration
def test_ingest_topic_override(broker, audio):
    from kafka import KafkaConsumer, TopicPartition

    topic = f"chunks-override-{uuid.uuid4().hex[:8]}"
    r = hookstream("ingest", str(audio / "ok.wav"), "-b", broker.bootstrap, "--topic", topic)
    assert r.returncode == 0, r.stderr
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, auto_offset_reset="earliest")
    try:
        tps = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        got, deadline = [], time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            got += [rec for recs in c.poll(200).values() for rec in recs]
        assert len(got) == 2 and {rec.key for rec in got} == {b"ok"}  # 3 s: two 2 s chunks
    finally:
        c.close()
