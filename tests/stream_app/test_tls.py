"""A real TLS path: the embedded broker behind stunnel4, with a CA and certificates made here.

    clients --TLS--> stunnel4 (127.0.0.1:T, server cert signed by the test CA) --tcp--> tansu
    (tansu advertises 127.0.0.1:T, so every connection goes through the terminator)

Ingest, worker (Faust/aiokafka) and subscribe with ``security_protocol: SSL`` and
``ssl_cafile``: the final equals detect. A client trusting another CA is refused at once
with an error naming the certificate problem.
"""

import shutil
import socket
import subprocess
import time
import uuid

import pytest
import yaml

from models.config import CONFIG_DIR
from models.errors import ConfigError
from stream_app.broker import EmbeddedBroker, free_port
from stream_app.demo import start_worker
from stream_app.ingest import ingest_files
from stream_app.settings import load_settings
from stream_app.subscribe import iter_highlights
from streaming import Worker, assert_equals_detect, song

STUNNEL = shutil.which("stunnel4") or shutil.which("stunnel")
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300),
              pytest.mark.skipif(STUNNEL is None, reason="stunnel4 not installed (scripts/apt-packages.txt)")]


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
            "-days", "2", "-subj", "/CN=hookstream test CA", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out", "other.crt",
            "-days", "2", "-subj", "/CN=another CA", cwd=d)
    return d


@pytest.fixture(scope="module")
def tls_bootstrap(certs):
    port = free_port()
    with EmbeddedBroker(advertised=f"127.0.0.1:{port}") as broker:
        conf = certs / "stunnel.conf"
        conf.write_text(f"foreground = yes\npid =\n[kafka]\naccept = 127.0.0.1:{port}\n"
                        f"connect = {broker.bootstrap}\ncert = {certs / 'server.crt'}\n"
                        f"key = {certs / 'server.key'}\n")
        proc = subprocess.Popen([STUNNEL, str(conf)], stdout=open(certs / "stunnel.log", "w"),
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.5).close()
                    break
                except OSError:
                    assert proc.poll() is None and time.monotonic() < deadline, \
                        (certs / "stunnel.log").read_text()
                    time.sleep(0.1)
            yield f"127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(10)


def tls_config(path, bootstrap, cafile, tag):
    cfg = yaml.safe_load((CONFIG_DIR / "stream.yaml").read_text())
    cfg["topics"] = {"chunks": f"chunks-{tag}", "highlights": f"highlights-{tag}",
                     "dead_letter": f"chunks-{tag}.dlq"}
    cfg["kafka"].update(bootstrap=bootstrap, security_protocol="SSL", ssl_cafile=str(cafile))
    cfg["stream"].update(idle_timeout_s=30, provisional_min_interval_s=0)
    path.write_text(yaml.safe_dump(cfg))
    return load_settings(path)


def test_ingest_worker_subscribe_over_tls(tls_bootstrap, certs, tiny_ckpt, detector, tmp_path):
    tag = uuid.uuid4().hex[:6]
    config = tmp_path / "tls.yaml"
    settings = tls_config(config, tls_bootstrap, certs / "ca.crt", tag)
    w = Worker(settings, config, tiny_ckpt, f"hookstream-tls-{tag}", tmp_path)
    w.start()
    try:
        w.wait_ready()
        path = song(tmp_path, f"tls-{tag}", 4)
        [result] = ingest_files([path], settings=settings, chunk_seconds=2.0)
        assert result.ok, result
        finals = []
        for e in iter_highlights(settings, from_beginning=True, track_ids=[result.track_id], timeout_s=60):
            if e["kind"] == "final":
                finals.append(e)
                break
    finally:
        w.stop()
    assert finals, w.log_tail()
    assert_equals_detect(finals[0], detector.detect_file(path))


def test_a_client_trusting_another_ca_is_refused_clearly(tls_bootstrap, certs, tiny_ckpt, tmp_path):
    tag = uuid.uuid4().hex[:6]
    config = tmp_path / "wrong-ca.yaml"
    settings = tls_config(config, tls_bootstrap, certs / "other.crt", tag)
    started = time.monotonic()
    with pytest.raises(ConfigError, match="certificate is refused .*ssl_cafile .*other.crt"):
        ingest_files([song(tmp_path, "x", 1)], settings=settings)
    with pytest.raises(ConfigError, match="certificate is refused"):
        next(iter_highlights(settings, timeout_s=5))
    assert time.monotonic() - started < 10  # at once, not after the clients' timeouts
    log = tmp_path / "worker.log"
    proc = start_worker(settings, metrics_port=free_port(), log_path=log,
                        extra=["--config", str(config), "--checkpoint", str(tiny_ckpt)])
    assert proc.wait(120) != 0
    assert "certificate is refused (unable to get local issuer certificate)" in log.read_text()
