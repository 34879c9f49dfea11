"""Publish audio files as chunk events on ``audio-chunks`` (kafka-python producer).

Each file is decoded with :func:`models.audio.decode` (22,050 Hz mono float32)
and cut into chunks of ``chunk_seconds``; chunk ``k`` carries samples
``[k*n, (k+1)*n)`` and the last chunk has ``end=true``. f32le is the default
because the final streamed highlight must equal offline detection on the same
file; s16le would quantise the audio. With ``native_rate`` a file is sent as
it is, at its own rate and channels (:func:`models.audio.decode_native`), and
the worker resamples it; its chunks are then at most ``chunk_seconds`` long and
short enough to stay under the message limit at that rate and channel count.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.audio import SAMPLE_RATE, decode, decode_native
from models.errors import InputError
from stream_app.events import ENCODINGS, MAX_MESSAGE_BYTES, encode_chunk
from stream_app.settings import LATENCY, Settings, kafka_python_security_kwargs

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SECONDS = 2.0
# Room kept for the JSON header (track id, meta) in the size check.
HEADER_ALLOWANCE_BYTES = 4_096


@dataclass(frozen=True)
class IngestResult:
    """What happened to one file: chunks sent, or the error that stopped it."""

    path: str
    track_id: str
    chunks: int = 0
    audio_s: float = 0.0
    error: str | None = None  # a full sentence naming the file

    @property
    def ok(self) -> bool:
        return self.error is None

    def summary(self) -> str:
        if self.error is not None:
            return self.error
        return f"{self.track_id}: {self.chunks} chunks, {self.audio_s:.2f} s of audio ({self.path})"


@dataclass(frozen=True)
class SentChunk:
    """Passed to ``on_sent`` after each chunk is handed to the producer."""

    track_id: str
    seq: int
    end: bool
    sent_at: float  # unix seconds, the value stamped into the event
    nbytes: int


def chunk_frames(chunk_seconds: float, *, sr: int = SAMPLE_RATE) -> int:
    """Samples per chunk: ``round(chunk_seconds * sr)``, at least 1."""
    if not (isinstance(chunk_seconds, (int, float)) and math.isfinite(chunk_seconds) and chunk_seconds > 0):
        raise InputError(f"--chunk-seconds must be a positive number, got {chunk_seconds!r}")
    return max(1, round(chunk_seconds * sr))


def max_chunk_seconds(*, sr: int = SAMPLE_RATE, encoding: str = "f32le", channels: int = 1) -> float:
    """Longest chunk whose event stays under MAX_MESSAGE_BYTES."""
    frame = ENCODINGS[encoding].itemsize * channels
    return (MAX_MESSAGE_BYTES - HEADER_ALLOWANCE_BYTES) // frame / sr


def check_chunk_seconds(chunk_seconds: float, *, sr: int = SAMPLE_RATE, encoding: str = "f32le") -> int:
    """Validate ``chunk_seconds``; returns the frames per chunk. InputError if too large."""
    if encoding not in ENCODINGS:
        raise InputError(f"--encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    n = chunk_frames(chunk_seconds, sr=sr)
    size = n * ENCODINGS[encoding].itemsize + HEADER_ALLOWANCE_BYTES
    if size > MAX_MESSAGE_BYTES:
        raise InputError(
            f"--chunk-seconds {chunk_seconds:g} makes {encoding} messages of about {size:,} bytes at {sr} Hz, "
            f"over the {MAX_MESSAGE_BYTES:,}-byte Kafka message limit; use at most "
            f"{math.floor(max_chunk_seconds(sr=sr, encoding=encoding) * 100) / 100:g} s"
        )
    return n


def native_chunk_frames(chunk_seconds: float, *, sr: int, channels: int, encoding: str = "f32le") -> int:
    """Frames per chunk of a file sent at its own rate: ``chunk_seconds`` or less, under the limit."""
    fits = int(max_chunk_seconds(sr=sr, encoding=encoding, channels=channels) * sr)
    return max(1, min(chunk_frames(chunk_seconds, sr=sr), fits))


def chunk_events(
    track_id: str,
    samples: np.ndarray,
    *,
    sr: int = SAMPLE_RATE,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    encoding: str = "f32le",
    clock: Callable[[], float] = time.time,
) -> Iterator[bytes]:
    """Chunk event values for one track, seq 0..n-1, ``end`` on the last.

    Lazy: each value is encoded when requested, with ``sent_at = clock()``.
    An empty signal gives one empty end chunk.

    Parameters
    ----------
    samples : shape (n,), float32 mono at ``sr`` Hz
    """
    n = check_chunk_seconds(chunk_seconds, sr=sr, encoding=encoding)
    for _seq, _end, _sent_at, value in _chunks(track_id, samples, sr=sr, n_frames=n, encoding=encoding, clock=clock):
        yield value


def _chunks(
    track_id: str,
    samples: np.ndarray,
    *,
    sr: int,
    n_frames: int,
    encoding: str,
    clock: Callable[[], float],
    pace: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, bool, float, bytes]]:
    """(seq, end, sent_at, value) for each chunk; ``pace(k)`` runs before chunk k is stamped."""
    samples = np.asarray(samples, dtype=np.float32)
    count = max(1, math.ceil(len(samples) / n_frames))
    for k in range(count):
        if pace is not None:
            pace(k)
        end, sent_at = k == count - 1, clock()
        value = encode_chunk(track_id, k, samples[k * n_frames:(k + 1) * n_frames],
                             sample_rate=sr, encoding=encoding, end=end, sent_at=sent_at)
        yield k, end, sent_at, value


_MISLEADING = "File does not exist or is not a regular file"  # libsndfile's text for unknown content


def probe(path: str | Path) -> None:
    """Check that ``path`` is an audio file soundfile can open, without decoding it.

    Cheap (reads the header), so a command checks every file before it contacts
    the broker. Formats soundfile cannot open (audioread's) pass; ``decode``
    judges them. Raises InputError naming the file: no such file, a directory,
    empty, or corrupt / not audio.
    """
    import soundfile as sf

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not an audio file")
    if not p.is_file():
        return  # a pipe or device: decode reads it
    if p.stat().st_size == 0:
        raise InputError(f"{p}: empty file (0 bytes)")
    try:
        with _quiet_stderr():  # libmpg123 narrates a broken mp3 on fd 2
            info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError) as exc:
        if p.suffix.lower() in {".m4a", ".aac", ".mp4", ".wma", ".opus", ".webm"}:
            return  # not libsndfile's: audioread may decode it
        reason = str(exc).split(": ", 1)[-1] if _MISLEADING not in str(exc) else "unrecognised content"
        raise InputError(f"{p}: corrupt or not an audio file ({reason})") from None
    if info.frames == 0:
        raise InputError(f"{p}: contains no audio samples (zero length)")


class _quiet_stderr:
    """Silence file descriptor 2 (C libraries' own messages) unless logging is at DEBUG."""

    def __enter__(self):
        import os
        import sys

        self.saved = None
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            return self
        try:
            sys.stderr.flush()
            self.saved = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        except (OSError, ValueError):
            self.saved = None
        return self

    def __exit__(self, *exc):
        import os

        if self.saved is not None:
            os.dup2(self.saved, 2)
            os.close(self.saved)
        return False


STDIN = "-"  # a PATH of "-" reads the audio from standard input


def default_track_id(path: str | Path) -> str:
    return "stdin" if str(path) == STDIN else Path(path).stem


def spool_stdin(paths: Sequence[str], directory: str | Path, *, stdin=None) -> list[str]:
    """``paths`` with ``-`` replaced by a file in ``directory`` holding standard input's bytes.

    The decoders need a seekable file, so the bytes are written out once. At most
    one ``-``; UsageError otherwise, or when standard input is a terminal.
    """
    import sys

    from stream_app.errors import UsageError

    paths = [str(p) for p in paths]
    if paths.count(STDIN) > 1:
        raise UsageError("'-' (standard input) can be given only once")
    if STDIN not in paths:
        return paths
    stdin = stdin or sys.stdin.buffer
    if hasattr(stdin, "isatty") and stdin.isatty():
        raise UsageError("'-' reads audio from standard input, which is a terminal: pipe a file in")
    spooled = Path(directory) / "stdin"
    spooled.write_bytes(stdin.read())
    return [str(spooled) if p == STDIN else p for p in paths]


def ingest_files(
    paths: Sequence[str | Path],
    *,
    settings: Settings,
    track_ids: Sequence[str] | None = None,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    realtime: bool = False,
    encoding: str = "f32le",
    on_sent: Callable[[SentChunk], None] | None = None,
    ensure: bool = True,
    native_rate: bool = False,
) -> list[IngestResult]:
    """Decode and publish each file; one result per path, in order.

    A file that cannot be decoded gets a result with ``error`` set and nothing
    of it is sent; the others go on. Files are sent one after another, or, with
    ``realtime``, concurrently (one thread each) at the audio's own pace: chunk
    ``k`` of a file leaves at ``t0 + k * chunk_seconds``. Returns after every
    sent chunk is acknowledged (acks=all).

    Parameters
    ----------
    track_ids : one per path; default each file's stem. Must be distinct.
    on_sent : called from the sending thread after each chunk is handed to the producer
    ensure : create the topics first (``ensure_topics``)
    native_rate : send each file at its own rate and channels (default: 22,050 Hz mono)

    Raises
    ------
    InputError for bad arguments (chunk size, duplicate track ids);
    BrokerUnreachableError (stream_app.errors) if the broker cannot be reached.
    """
    paths = [str(p) for p in paths]
    n_frames = check_chunk_seconds(chunk_seconds, encoding=encoding)
    ids = list(track_ids) if track_ids is not None else [default_track_id(p) for p in paths]
    if len(ids) != len(paths):
        raise InputError(f"got {len(ids)} track ids for {len(paths)} files")
    seen: dict[str, str] = {}
    for p, tid in zip(paths, ids):
        if not tid:
            raise InputError(f"{p}: empty track id")
        if tid in seen:
            raise InputError(f"{seen[tid]} and {p} would both be track {tid!r}; rename one or give track ids")
        seen[tid] = p
    if ensure:
        from stream_app.broker import ensure_topics

        ensure_topics(settings.kafka.bootstrap, settings.topic_partitions(),
                      security=kafka_python_security_kwargs(settings))
    producer = make_producer(settings)
    try:
        stop = threading.Event()

        def one(path: str, tid: str) -> IngestResult:
            return _ingest_one(path, tid, producer=producer, topic=settings.topics.chunks,
                               n_frames=n_frames, encoding=encoding, realtime=realtime,
                               on_sent=on_sent, stop=stop, native_rate=native_rate)

        if not realtime or len(paths) == 1:
            return [one(p, t) for p, t in zip(paths, ids)]
        results: list[IngestResult | None] = [None] * len(paths)

        def worker(i: int) -> None:
            try:
                results[i] = one(paths[i], ids[i])
            except Exception as exc:  # reported per file, never a silent thread death
                results[i] = IngestResult(paths[i], ids[i], error=f"{paths[i]}: failed: {exc}")

        threads = [threading.Thread(target=worker, args=(i,), name=f"ingest-{ids[i]}", daemon=True)
                   for i in range(len(paths))]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except KeyboardInterrupt:
            stop.set()
            raise
        return [r for r in results if r is not None]
    finally:
        producer.close(timeout=10)


def make_producer(settings: Settings):
    """The chunk producer: acks=all, no linger, no idempotence (Tansu lacks InitProducerId)."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    from stream_app.broker import wait_reachable
    from stream_app.errors import BrokerUnreachableError

    wait_reachable(settings.kafka.bootstrap)
    try:
        return KafkaProducer(
            bootstrap_servers=settings.kafka.bootstrap_servers,
            acks="all",
            linger_ms=int(LATENCY["ingest_linger_ms"]),  # see stream_app.settings.LATENCY
            enable_idempotence=False,
            max_request_size=MAX_MESSAGE_BYTES + 48_576,
            client_id="hookstream-ingest",
            **kafka_python_security_kwargs(settings),
        )
    except KafkaError as exc:
        raise BrokerUnreachableError(
            f"cannot reach the Kafka broker at {settings.kafka.bootstrap} ({exc}); is it running?"
        ) from None


def _ingest_one(
    path: str,
    track_id: str,
    *,
    producer,
    topic: str,
    n_frames: int,
    encoding: str,
    realtime: bool,
    on_sent: Callable[[SentChunk], None] | None,
    stop: threading.Event,
    native_rate: bool = False,
) -> IngestResult:
    from kafka.errors import KafkaError

    sr = SAMPLE_RATE
    try:
        if native_rate:
            samples, sr = decode_native(path)
            n_frames = native_chunk_frames(n_frames / SAMPLE_RATE, sr=sr, channels=samples.shape[1],
                                           encoding=encoding)
        else:
            samples = decode(path)
    except InputError as exc:
        return IngestResult(path, track_id, error=str(exc))  # decode names the file
    chunk_s = n_frames / sr
    key = track_id.encode("utf-8")
    futures = []
    t0 = time.monotonic()

    def pace(k: int) -> None:  # chunk k leaves at t0 + k * chunk_s
        delay = t0 + k * chunk_s - time.monotonic()
        if delay > 0 and stop.wait(delay) or stop.is_set():
            raise _Interrupted(k)

    try:
        for k, end, sent_at, value in _chunks(track_id, samples, sr=sr, n_frames=n_frames,
                                              encoding=encoding, clock=time.time,
                                              pace=pace if realtime else None):
            futures.append(producer.send(topic, key=key, value=value))
            if on_sent is not None:
                on_sent(SentChunk(track_id, k, end, sent_at, len(value)))
        producer.flush()
        for f in futures:
            f.get(timeout=30)
    except _Interrupted as exc:
        producer.flush()
        return IngestResult(path, track_id, chunks=len(futures),
                            error=f"{path}: interrupted after {exc.args[0]} chunks")
    except KafkaError as exc:
        return IngestResult(path, track_id, chunks=len(futures),
                            error=f"{path}: publishing failed after {len(futures)} chunks: {exc}")
    return IngestResult(path, track_id, chunks=len(futures), audio_s=len(samples) / sr)



class _Interrupted(Exception):
    """Raised inside a realtime sender when ingestion is being stopped (Ctrl-C)."""
