"""Fixtures shared by the streaming tests: malformed chunk events, one per rejection reason."""

from pathlib import Path

import numpy as np
import pytest
from streaming import raw_chunk

SR = 22050
LABELS = ("a", "b", "c", "d", "e")


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A tiny untrained checkpoint on disk (what the worker subprocesses load)."""
    from models import checkpoint, nets

    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    return checkpoint.save(checkpoint.untrained(nets.tiny(), LABELS, seed=0), path)


@pytest.fixture(scope="module")
def detector(tiny_ckpt):
    """What ``hookstream detect --checkpoint TINY`` runs (configs/detect.yaml)."""
    from models import checkpoint
    from models.config import CONFIG_DIR, DetectConfig, load_yaml
    from models.detect import Detector

    return Detector(load_yaml(DetectConfig, CONFIG_DIR / "detect.yaml"), checkpoint.load(tiny_ckpt))


@pytest.fixture(scope="session")
def bad_chunks():
    """``[(reason, key, value)]``: one chunk event for every decode-time rejection reason.

    Each uses its own track id (``bad-<reason>``), so a test can tell them apart.
    """
    ok = np.zeros(SR // 10, "<f4").tobytes()
    nan = np.full(16, np.nan, "<f4").tobytes()

    def tid(reason):
        return f"bad-{reason}"

    cases = [
        ("undecodable", b"\x00\x00\x00\x09{not json", None),
        ("unknown_schema", None, dict(schema=2)),
        ("bad_header", None, dict(seq=-1)),
        ("unsupported_encoding", None, dict(encoding="mp3")),
        ("unsupported_sample_rate", None, dict(sample_rate=7999)),
        ("unsupported_channels", None, dict(channels=9)),
        ("nonfinite_audio", nan, {}),
        ("payload_length", b"\x00" * 5, {}),
        ("missing_key", None, {}),
        ("key_mismatch", None, {}),
        # 1.2 MB: Kafka's default limit is about 1 MB; Tansu does not enforce one.
        ("oversize", np.zeros(300_000, "<f4").tobytes(), {}),
    ]
    out = []
    for reason, payload, header in cases:
        if header is None:  # a ready-made value
            value = payload
        else:
            value = raw_chunk(tid(reason), ok if payload is None else payload, **header)
        key = {"missing_key": None, "key_mismatch": b"someone-else"}.get(reason, tid(reason).encode())
        out.append((reason, key, value))
    return out
