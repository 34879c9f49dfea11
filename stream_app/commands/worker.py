"""``hookstream worker [--bootstrap HOST:PORT] [--metrics-port 9108]``: the streaming worker."""

from __future__ import annotations

import os


def register(sub) -> None:
    p = sub.add_parser("worker", help="run the streaming worker (Faust app)",
                       description="Consume audio chunk events, emit provisional and final "
                                   "highlight events, serve Prometheus metrics.")
    p.add_argument("--bootstrap", default=None, metavar="HOST:PORT",
                   help="Kafka bootstrap servers (default: config, or $HOOKSTREAM_BOOTSTRAP)")
    p.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                   help="port of the Prometheus /metrics endpoint (default 9108; 0 disables)")
    p.add_argument("--config", default=None, metavar="FILE", help="stream settings YAML")
    p.add_argument("--detect-config", default=None, metavar="FILE",
                   help="scorer/window settings YAML (default: configs/detect.yaml)")
    p.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="model checkpoint (default: the shipped model)")
    p.add_argument("--app-id", default="hookstream",
                   help="Faust app id: the consumer group and table changelog prefix")
    p.add_argument("--torch-threads", type=int, default=1, metavar="N",
                   help="torch intra-op threads for scoring (default 1: the small batched "
                        "LSTM runs fastest single-threaded, see docs/performance.md)")
    p.set_defaults(func=run)


def run(args) -> int:
    import logging

    from stream_app.faust_patches import Worker  # Faust's, with a shutdown deadline
    from prometheus_client import CollectorRegistry

    from models import checkpoint
    from models.config import load_detect_config
    from models.detect import Detector
    from stream_app.app import create_app
    from stream_app.broker import ensure_topics
    from stream_app.health import Health, serve
    from stream_app.metrics import Metrics
    from stream_app.settings import kafka_python_security_kwargs, load_settings

    import torch

    torch.set_num_threads(max(1, args.torch_threads))
    settings = load_settings(args.config, environ=os.environ, bootstrap=args.bootstrap,
                             worker={"metrics_port": args.metrics_port})
    detect_cfg = load_detect_config(args.detect_config)
    detector = Detector(detect_cfg, checkpoint.load(args.checkpoint or detect_cfg.checkpoint))
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.model.info({"name": detector.ckpt.name, "arch": detector.ckpt.model.arch,
                        "trained": str(detector.ckpt.trained).lower(),
                        "device": str(detector.scorer.device)})
    ensure_topics(settings.kafka.bootstrap, settings.topic_partitions(),
                  security=kafka_python_security_kwargs(settings))
    port = settings.worker.metrics_port
    health = Health(stall_after_s=settings.worker.stall_after_s)
    if port:
        serve(port, registry, health)  # /metrics, /healthz, /readyz
    log = logging.getLogger("hookstream.worker")
    log.info("worker: broker %s, model %s on %s, metrics %s", settings.kafka.bootstrap,
             detector.ckpt.name, detector.scorer.device,
             f"http://127.0.0.1:{port}/metrics" if port else "off")
    app = create_app(settings, detector, metrics, app_id=args.app_id, health=health)
    Worker(app, loglevel="INFO" if not args.verbose else "DEBUG", quiet=True,
           redirect_stdouts=False).execute_from_commandline()
    return 0
