"""``python -m services.realtime_worker``: a realtime worker, configured from the environment."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from prometheus_client import start_http_server

from services.realtime_worker.probe_server import ProbeServer
from services.realtime_worker.settings import WorkerSettings
from services.realtime_worker.worker import Worker
from shared.errors import ConfigError
from shared.logs import setup_logging
from shared.redis_kind import unsuitable_redis

logger = logging.getLogger("switchboard.worker")


async def _serve(settings: WorkerSettings) -> None:
    worker = Worker(settings)
    probes = ProbeServer(worker.registry, test_hooks=settings.test_hooks)
    if settings.metrics_port:
        await probes.start("0.0.0.0", settings.metrics_port)
        logger.info("/livez and /metrics on :%d, answered by the event loop", settings.metrics_port)
    if settings.test_hooks:
        # As workers served /metrics before /livez: from a thread, which answers even while the
        # event loop is stuck. The liveness tests show the difference.
        httpd, _ = start_http_server(0, addr="127.0.0.1", registry=worker.registry)
        logger.warning(
            "SWITCHBOARD_TEST_HOOKS is on (never in production): POST /test/block-loop; "
            "thread-served /metrics on :%d",
            httpd.server_port,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            logger.info("%s: draining (DRAIN_MODE=%s)", sig.name, settings.drain_mode)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await worker.run(stop)
    finally:
        await probes.aclose()


def main() -> int:
    try:
        settings = WorkerSettings.from_env()
    except ConfigError as exc:
        print(f"switchboard realtime worker: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, secrets=settings.secret_values())
    logger.info("starting worker: %s", settings.describe())
    if (problem := unsuitable_redis(settings.redis_url, settings.redis_cluster)) is not None:
        print(f"switchboard realtime worker: {problem}", file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(settings))
    else:
        uvloop.run(_serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
