"""Catalogue backfill: stream a list of files (one per line) through the cluster.

``hookstream ingest --from-list FILE`` reads a list of ``path`` or
``path<TAB>track_id`` lines and publishes each file as chunk events, as
``hookstream ingest`` does, with:

- **bounded memory**: the list is read line by line, and at most
  ``max_in_flight`` tracks are decoded and unacknowledged at once (each holds
  its 22,050 Hz float32 signal, about 5 MB per minute of audio, until the
  broker has acknowledged all of its chunks); the bookkeeping is one track id
  per line (the duplicate check and the resume sets);
- **a journal**: each track whose every chunk the broker acknowledged
  (acks=all) is appended to the journal as ``track_id<TAB>path`` and flushed;
  a track cut off mid-way is not journalled, and sending it again is safe
  (the worker drops chunks it already applied as duplicates);
- **resume**: with ``resume``, tracks in the journal are skipped, and so are
  tracks whose ``final`` event is already on the highlights topic;
- **failures by path**: a file that cannot be decoded or sent is reported
  (``on_result``) and the rest go on.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from models.errors import InputError
from stream_app.ingest import IngestResult, _ingest_one, check_chunk_seconds, default_track_id, make_producer
from stream_app.settings import Settings, kafka_python_security_kwargs

log = logging.getLogger(__name__)

DEFAULT_MAX_IN_FLIGHT = 4


@dataclass(frozen=True)
class ListEntry:
    line: int  # 1-based line number in the list
    path: str
    track_id: str


@dataclass(frozen=True)
class BackfillSummary:
    listed: int
    sent: int
    skipped: int  # already journalled or finished on the highlights topic
    failed: int
    audio_s: float


def read_list(path: str | os.PathLike) -> Iterator[ListEntry]:
    """Entries of a list file, lazily: ``path`` or ``path<TAB>track_id`` a line.

    Blank lines and lines starting with ``#`` are skipped. A malformed line
    (more than one tab, empty path or id) is an InputError naming ``FILE:LINE``.
    """
    try:
        f = open(path, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the list ({exc.strerror or exc})") from None
    with f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\r\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) > 2 or not parts[0].strip() or (len(parts) == 2 and not parts[1].strip()):
                raise InputError(f"{path}:{n}: expected 'PATH' or 'PATH<TAB>TRACK_ID', got {line[:200]!r}")
            p = parts[0].strip()
            yield ListEntry(n, p, parts[1].strip() if len(parts) == 2 else default_track_id(p))


def scan_list(path: str | os.PathLike) -> int:
    """Validate the whole list before anything is sent; returns the number of entries.

    Raises InputError naming ``FILE:LINE`` for a malformed line or a track id
    that appears twice (the second would be dropped by the worker as a
    finished track).
    """
    first: dict[str, int] = {}
    for entry in read_list(path):
        if entry.track_id in first:
            raise InputError(f"{path}:{entry.line}: track id {entry.track_id!r} is also on line "
                             f"{first[entry.track_id]}; give one of them its own id (PATH<TAB>ID)")
        first[entry.track_id] = entry.line
    return len(first)


def default_journal(list_path: str | os.PathLike) -> Path:
    return Path(f"{list_path}.journal")


def read_journal(path: str | os.PathLike) -> set[str]:
    """Track ids marked sent in a journal (missing file: none)."""
    try:
        with open(path, encoding="utf-8") as f:
            return {line.split("\t", 1)[0] for line in f if line.strip()}
    except FileNotFoundError:
        return set()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the journal ({exc.strerror or exc})") from None


def finished_on_topic(settings: Settings, *, idle_s: float = 3.0) -> set[str]:
    """Track ids with a ``final`` event on the highlights topic (read until idle for ``idle_s``)."""
    from stream_app.subscribe import iter_highlights

    return {e["track_id"] for e in iter_highlights(settings, from_beginning=True, final_only=True,
                                                    timeout_s=idle_s)}


def backfill(
    list_path: str | os.PathLike,
    *,
    settings: Settings,
    journal: str | os.PathLike | None = None,
    resume: bool = False,
    check_topic: bool = True,
    topic_idle_s: float = 3.0,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    chunk_seconds: float = 2.0,
    encoding: str = "f32le",
    on_result: Callable[[ListEntry, IngestResult | None], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    ensure: bool = True,
    native_rate: bool = False,
) -> BackfillSummary:
    """Publish every file of the list; see the module docstring.

    Parameters
    ----------
    journal : where sent tracks are recorded; default ``LIST.journal``
    resume : skip tracks in the journal and, with ``check_topic``, tracks
        whose final event is on the highlights topic (read from the beginning
        until no event came for ``topic_idle_s``); without ``resume`` an
        existing journal is an error (so a rerun never silently re-sends)
    max_in_flight : tracks decoded and not yet acknowledged at once (>= 1)
    on_result : called, in order of completion, with each entry and its
        result (None for a skipped entry)
    on_start : called once before sending with (entries in the list, of
        them already done), for a progress bar
    native_rate : send each file at its own rate and channels (as ``ingest --native-rate``)

    Raises
    ------
    InputError for a bad list line, a duplicate track id, a journal that
    exists without ``resume``; HookstreamError if the broker cannot be reached.
    """
    if not (isinstance(max_in_flight, int) and max_in_flight >= 1):
        raise InputError(f"--max-in-flight must be a positive integer, got {max_in_flight!r}")
    n_frames = check_chunk_seconds(chunk_seconds, encoding=encoding)
    journal = Path(journal) if journal is not None else default_journal(list_path)
    if journal.exists() and not resume:
        raise InputError(f"{journal}: a journal of an earlier run exists; use --resume to skip "
                         "the tracks it lists, or delete it to send everything again")
    total = scan_list(list_path)
    done = read_journal(journal) if resume else set()
    if ensure:
        from stream_app.broker import ensure_topics

        ensure_topics(settings.kafka.bootstrap, settings.topic_partitions(),
                      security=kafka_python_security_kwargs(settings))
    if resume and check_topic:
        done |= finished_on_topic(settings, idle_s=topic_idle_s)
    if on_start is not None:
        on_start(total, len(done))
    try:
        jf = open(journal, "a", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{journal}: cannot write the journal ({exc.strerror or exc})") from None
    producer = make_producer(settings)
    stop = threading.Event()
    counts = {"listed": 0, "sent": 0, "skipped": 0, "failed": 0}
    audio = [0.0]
    try:
        with ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="backfill") as pool:
            running: dict[Future, ListEntry] = {}

            def settle(futures) -> None:
                for fut in futures:
                    entry = running.pop(fut)
                    try:
                        result = fut.result()
                    except Exception as exc:  # reported by path, never a silent thread death
                        result = IngestResult(entry.path, entry.track_id, error=f"{entry.path}: failed: {exc}")
                    if result.ok:
                        counts["sent"] += 1
                        audio[0] += result.audio_s
                        jf.write(f"{entry.track_id}\t{entry.path}\n")
                        jf.flush()
                    else:
                        counts["failed"] += 1
                    if on_result is not None:
                        on_result(entry, result)

            try:
                for entry in read_list(list_path):
                    counts["listed"] += 1
                    if entry.track_id in done:
                        counts["skipped"] += 1
                        if on_result is not None:
                            on_result(entry, None)
                        continue
                    while len(running) >= max_in_flight:
                        finished, _ = wait(running, return_when=FIRST_COMPLETED)
                        settle(finished)
                    running[pool.submit(_ingest_one, entry.path, entry.track_id, producer=producer,
                                        topic=settings.topics.chunks, n_frames=n_frames,
                                        encoding=encoding, realtime=False, on_sent=None,
                                        stop=stop, native_rate=native_rate)] = entry
                while running:
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    settle(finished)
            except BaseException:  # Ctrl-C, or the list changed under us: journal what finished
                stop.set()
                for fut in list(running):
                    if fut.cancel():
                        running.pop(fut)
                settle(wait(running).done)
                raise
    finally:
        jf.close()
        producer.close(timeout=10)
    return BackfillSummary(counts["listed"], counts["sent"], counts["skipped"], counts["failed"],
                           audio[0])
