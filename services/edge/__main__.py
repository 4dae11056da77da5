"""``python -m services.edge``: the edge, configured from the environment."""

from __future__ import annotations

import logging
import sys

import uvicorn

from services.edge.app import create_app
from services.edge.listeners import Listeners, bind_listeners
from services.edge.runtime import RuntimeSlot
from services.edge.server import EdgeServer
from services.edge.settings import EdgeSettings
from shared.errors import ConfigError
from shared.logs import setup_logging
from shared.redis_kind import unsuitable_redis


def main() -> int:
    try:
        settings = EdgeSettings.from_env()
    except ConfigError as exc:
        print(f"switchboard edge: {exc}", file=sys.stderr)
        return 2
    setup_logging(
        settings.log_level,
        secrets=settings.secret_values(),
    )
    logger = logging.getLogger("switchboard.edge")
    logger.info("starting edge: %s", settings.describe())
    if (problem := unsuitable_redis(settings.redis_url, settings.redis_cluster)) is not None:
        print(f"switchboard edge: {problem}", file=sys.stderr)
        return 2
    try:
        # Bound before anything starts, so a port in use stops the edge at once.
        sockets = bind_listeners(settings)
    except OSError as exc:
        print(f"switchboard edge: {exc}", file=sys.stderr)
        return 3  # uvicorn's exit code when it cannot bind
    slot = RuntimeSlot()
    app = Listeners(create_app(settings, slot=slot), slot, settings.port, settings.admin_port)
    logger.info(
        "listening: public port %d (Twilio's /twilio/… only) on %s, admin port %d (/metrics, "
        "/healthz, /readyz, the read API, call control) on %s",
        settings.port,
        settings.host,
        settings.admin_port,
        settings.admin_bind_host,
    )
    config = uvicorn.Config(
        app,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        ws="websockets-sansio",
        # A hard cap well above MAX_MESSAGE_BYTES: the edge itself counts and drops messages
        # over that, and keeps the call; past this cap the server closes the socket.
        ws_max_size=4 * settings.max_message_bytes,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
    )
    EdgeServer(config, slot, settings.drain_timeout_s, settings.port).run(sockets=sockets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
