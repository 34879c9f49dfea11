"""``hookstream worker [--bootstrap HOST:PORT] [--metrics-port 9108]``: the streaming worker."""

from __future__ import annotations

import os

from stream_app.commands._common import add_kafka_args, port

ENV_METRICS_HOST = "HOOKSTREAM_METRICS_HOST"  # the image sets 0.0.0.0 (deploy/Dockerfile)


def register(sub) -> None:
    p = sub.add_parser("worker", help="run the streaming worker (Faust app)",
                       description="Consume audio chunk events, emit provisional and final "
                                   "highlight events, serve Prometheus metrics.")
    add_kafka_args(p)
    p.add_argument("--chunks-topic", metavar="NAME", help="chunk topic (default: topics.chunks)")
    p.add_argument("--highlights-topic", metavar="NAME", help="highlights topic (default: topics.highlights)")
    p.add_argument("--dead-letter-topic", metavar="NAME", help="dead-letter topic (default: topics.dead_letter)")
    p.add_argument("--metrics-port", type=port, default=None, metavar="PORT",
                   help="port of the Prometheus /metrics endpoint (default 9108; 0 disables)")
    p.add_argument("--metrics-host", default=None, metavar="ADDR",
                   help=f"address /metrics listens on (default ${ENV_METRICS_HOST}, else 127.0.0.1: "
                        "this machine only; the container image sets 0.0.0.0)")
    p.add_argument("--detect-config", default=None, metavar="FILE",
                   help="scorer/window settings YAML (default: configs/detect.yaml)")
    p.add_argument("--broker-wait", type=float, default=None, metavar="S",
                   help="give up when Kafka is unreachable for S seconds at start (default: keep "
                        "retrying, with backoff up to 30 s, logging each attempt); exit code 3")
    p.add_argument("--lag-interval", type=float, default=15.0, metavar="S",
                   help="seconds between consumer-lag readings for /metrics (default 15; 0 disables)")
    p.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="model checkpoint (default: the shipped model)")
    p.add_argument("--app-id", default="hookstream",
                   help="Faust app id: the consumer group and table changelog prefix")
    p.add_argument("--torch-threads", type=int, default=1, metavar="N",
                   help="torch intra-op threads for scoring (default 1: the small batched "
                        "LSTM runs fastest single-threaded, see docs/performance.md)")
    p.set_defaults(func=run)


def run(args) -> int:
    """Start the worker; the model loads on the scorer thread while Faust joins the group.

    Nothing here imports torch: a restarted worker's group join (seconds on
    Kafka) and its model load (torch's import is ~3 s) overlap instead of
    adding up. A checkpoint that cannot be loaded still stops the worker with
    a clear error (exit code 1) before it scores anything.
    """
    import logging
    import time

    from stream_app.faust_patches import Worker  # Faust's, with a shutdown deadline
    from prometheus_client import CollectorRegistry

    from models.config import load_detect_config
    from stream_app.app import create_app
    from stream_app.cli import version
    from stream_app.broker import ensure_topics
    from stream_app.health import Health, serve
    from stream_app.metrics import Metrics
    from stream_app.settings import kafka_python_security_kwargs, load_settings

    started = time.monotonic()
    settings = load_settings(args.config, environ=os.environ, bootstrap=args.bootstrap,
                             worker={"metrics_port": args.metrics_port},
                             topics={"chunks": args.chunks_topic, "highlights": args.highlights_topic,
                                     "dead_letter": args.dead_letter_topic})
    metrics_host = args.metrics_host or os.environ.get(ENV_METRICS_HOST) or "127.0.0.1"
    detect_cfg = load_detect_config(args.detect_config)
    ckpt_path = args.checkpoint or detect_cfg.checkpoint
    if ckpt_path is not None and not os.path.isfile(ckpt_path):
        from models.errors import CheckpointError

        raise CheckpointError(f"{ckpt_path}: checkpoint not found")
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    log = logging.getLogger("hookstream.worker")
    _wait_for_kafka(lambda: ensure_topics(settings.kafka.bootstrap, settings.topic_partitions(),
                                          security=kafka_python_security_kwargs(settings)),
                    bootstrap=settings.kafka.bootstrap, give_up_s=args.broker_wait, log=log)
    metrics_url = "off"
    health = Health(stall_after_s=settings.worker.stall_after_s)
    if settings.worker.metrics_port:  # /metrics, /healthz, /readyz
        server, _ = serve(settings.worker.metrics_port, registry, health, addr=metrics_host)
        host, bound = server.server_address[:2]
        metrics_url = f"http://{f'[{host}]' if ':' in host else host}:{bound}/metrics"
    if settings.worker.metrics_port and args.lag_interval > 0:
        from stream_app.lag import ConsumerLag

        registry.register(ConsumerLag(settings, args.app_id, interval_s=args.lag_interval).start())
    log.info("worker: broker %s, metrics %s; loading the model while joining the group",
             settings.kafka.bootstrap, metrics_url)

    def load_detector():
        try:
            import torch

            from models import checkpoint
            from models.detect import Detector

            torch.set_num_threads(max(1, args.torch_threads))
            detector = Detector(detect_cfg, checkpoint.load(ckpt_path))
            detector.warm_up()  # first-call costs here, overlapped, not in the first batch
        except Exception as exc:  # a bad checkpoint: nothing was scored yet, nothing is lost
            log.error("worker: cannot load the model: %s", exc)
            logging.shutdown()
            os._exit(1)
        metrics.model.info({"name": detector.ckpt.name, "arch": detector.ckpt.model.arch,
                            "trained": str(detector.ckpt.trained).lower(),
                            "device": str(detector.scorer.device)})
        metrics.set_build(version=version(), model=detector.ckpt.name)
        log.info("worker: model %s on %s, loaded %.1f s after start", detector.ckpt.name,
                 detector.scorer.device, time.monotonic() - started)
        return detector

    app = create_app(settings, load_detector, metrics, context_chunks=detect_cfg.scorer.context_chunks,
                     app_id=args.app_id, health=health)
    Worker(app, loglevel="INFO" if not args.verbose else "DEBUG", quiet=True,
           redirect_stdouts=False).execute_from_commandline()
    return 0


def _wait_for_kafka(connect, *, bootstrap: str, give_up_s: float | None, log) -> None:
    """Run ``connect`` until Kafka answers: backoff 1, 2, 4, ... 30 s, one log line per attempt.

    A pod whose broker comes up later thus starts cleanly instead of crash-looping;
    ``give_up_s`` re-raises the BrokerUnreachableError after that long (exit code 3).
    """
    import time

    from stream_app.errors import BrokerUnreachableError

    t0, attempt = time.monotonic(), 0
    while True:
        attempt += 1
        try:
            connect()
        except BrokerUnreachableError as exc:
            delay = min(30.0, 2.0 ** min(attempt - 1, 5))
            waited = time.monotonic() - t0
            if give_up_s is not None and waited + delay > give_up_s:
                raise
            log.warning("worker: Kafka at %s unreachable (attempt %d, %.0f s so far): %s; retrying in %.0f s",
                        bootstrap, attempt, waited, exc, delay)
            time.sleep(delay)
        else:
            if attempt > 1:
                log.info("worker: Kafka at %s reachable after %d attempts", bootstrap, attempt)
            return
