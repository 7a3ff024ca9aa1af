"""``serve`` (the service), ``demo`` (the whole product on drifting traffic), ``config check``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftline.cli._args import UsageError, add_kafka_args, csv, kafka_extra, service, settings

if TYPE_CHECKING:
    from driftline.cli import Command


def register(command: Command) -> None:
    sv = command(
        "serve",
        "run the service: Kafka consumers (with --bootstrap), HTTP API and ingest, alerting",
        "driftline serve --config driftline.yaml     # settings in its 'service:' section or DRIFTLINE_* env",
    )
    sv.add_argument("--config", default=None, help="driftline.yaml: 'service:' settings, receivers and rules")
    sv.add_argument("--store", default=None, help="chdb:///dir or http(s)://user:pass@host:8123/db")
    sv.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (none: HTTP ingest only)")
    add_kafka_args(sv, with_config=False)
    sv.add_argument("--topic", type=csv, default=None)
    sv.add_argument("--host", default=None)
    sv.add_argument("--port", type=int, default=None)
    sv.add_argument("--open", action="store_true", help="no API keys (open mode): only on a trusted network")
    sv.set_defaults(run=run_serve)

    dm = command(
        "demo",
        "the whole product in one process: drifting traffic -> detectors -> chDB -> alerts to a local sink",
        "driftline demo",
    )
    dm.add_argument("--dir", default=None, help="keep the store and files here (default: a temp dir)")
    dm.add_argument("--keep", action="store_true", help="keep the temp dir at exit (default: remove it)")
    dm.add_argument("--keep-running", action="store_true", help="keep serving the API after the demo")
    dm.add_argument(
        "--kafka", action="store_true", help="feed through a dev Kafka broker (scripts/kafka-dev)"
    )
    dm.set_defaults(run=run_demo)

    cf = command(
        "config",
        "validate a driftline.yaml as serve would and print its effective settings, secrets masked",
        "KAFKA_PASSWORD=... driftline config check driftline.yaml   # reference: docs/configuration.md",
    )
    cf.add_argument("action", choices=["check"], help="check: validate every section, print the result")
    cf.add_argument("file", help="driftline.yaml")
    cf.set_defaults(run=run_config)


def run_serve(args: argparse.Namespace) -> int:
    import signal

    from driftline import logs
    from driftline.api.server import server
    from driftline.ingest.kafka import KafkaUnavailable

    config = settings(
        args.config,
        kafka_extra(args),
        store=args.store,
        bootstrap=args.bootstrap,
        topics=args.topic,
        http_host=args.host,
        http_port=args.port,
        open_mode=True if args.open else None,
    )
    if config.rules is None and args.config and _has_rules(args.config):
        config = config.model_copy(update={"rules": args.config})
    if args.log_level is None:
        logs.setup(config.log_level)
    if not config.api_keys and not config.open_mode:
        raise UsageError(
            "no API keys configured: set service.api_keys (or DRIFTLINE_API_KEYS), or pass --open"
        )
    svc = service(config)
    http = server(svc, config.http_host, config.http_port)
    http.listening = lambda port: print(serve_line(config, port), flush=True)
    stop = lambda *_: setattr(http, "should_exit", True)  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        svc.start()
    except KafkaUnavailable as exc:
        svc.stop()
        raise UsageError(str(exc)) from None
    try:
        http.run()  # returns once SIGTERM/SIGINT asked it to
    finally:
        svc.stop()  # flush panes, commit offsets, drain the outbox
    return 0


def serve_line(config: Any, port: int) -> str:
    """The one line `serve` prints: where it listens and what it consumes."""
    where = f"driftline serve: listening on http://{config.http_host}:{port} (API docs /docs)"
    if not config.bootstrap:
        return f"{where}; HTTP ingest only"
    topics = ",".join(config.topics)
    return f"{where}; consuming {topics} from {config.bootstrap} as group {config.group}"


def _has_rules(path: str) -> bool:
    import yaml

    return bool((yaml.safe_load(Path(path).read_text()) or {}).get("rules"))


def run_demo(args: argparse.Namespace) -> int:
    from driftline import demo

    return demo.run(args.dir, args.keep_running, kafka=args.kafka, keep=args.keep)


def run_config(args: argparse.Namespace) -> int:
    import yaml

    from driftline.alerting.config import ConfigError, load
    from driftline.settings import check_kafka, effective

    config = settings(args.file)
    try:
        alerting = load(config.rules or args.file)
        check_kafka(args.file, config.kafka)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if not config.api_keys and not config.open_mode:
        raise UsageError(
            f"{args.file}: service.api_keys: none, so serve would refuse to start: set them (or "
            "DRIFTLINE_API_KEYS), or open_mode: true"
        )
    print(f"# {args.file} is valid. In effect (environment applied, defaults filled in, secrets masked):")
    print(yaml.safe_dump(effective(config, alerting), sort_keys=False, allow_unicode=True), end="")
    return 0
