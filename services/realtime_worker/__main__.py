"""``python -m services.realtime_worker``: a realtime worker, configured from the environment."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from prometheus_client import start_http_server

from services.realtime_worker.settings import WorkerSettings
from services.realtime_worker.worker import Worker
from shared.errors import ConfigError
from shared.logs import setup_logging

logger = logging.getLogger("switchboard.worker")


async def _serve(settings: WorkerSettings) -> None:
    worker = Worker(settings)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, registry=worker.registry)
        logger.info("metrics on :%d/metrics", settings.metrics_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            logger.info("%s: draining (DRAIN_MODE=%s)", sig.name, settings.drain_mode)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    await worker.run(stop)


def main() -> int:
    try:
        settings = WorkerSettings.from_env()
    except ConfigError as exc:
        print(f"switchboard realtime worker: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, secrets=settings.secret_values())
    logger.info("starting worker: %s", settings.describe())
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(settings))
    else:
        uvloop.run(_serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
