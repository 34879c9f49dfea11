"""The numeric core stays framework-free: models/ never imports Kafka, Faust or Prometheus."""

import ast
from pathlib import Path

FORBIDDEN = ("faust", "kafka", "aiokafka", "prometheus_client", "stream_app")


def test_models_do_not_import_streaming_frameworks():
    root = Path(__file__).resolve().parents[1] / "models"
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert not offenders
