"""An HTTP endpoint for the worker's tool calls (TOOLS_FILE), and a stack whose realtime
simulator calls it."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from services.devstack import Stack
from tests.support.calls import short_reply
from tests.support.stack import ADMIN_TOKEN, StackFactory

__all__ = ["ToolServer", "tools_stack"]


class ToolServer:
    """A tiny HTTP endpoint for the worker's tool calls (or its set-up hook), in a thread: /ok
    answers (ANSWER, or ``json_answer`` as JSON), /broken fails with 500, /slow answers after
    3 s."""

    ANSWER = "Order 42 ships tomorrow."

    def __init__(self, json_answer: Any = None) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append((self.path, body))
                if self.path == "/slow":
                    time.sleep(3)
                status, text = (500, "boom") if self.path == "/broken" else (200, owner.ANSWER)
                kind = "text/plain"
                if status == 200 and json_answer is not None:
                    text, kind = json.dumps(json_answer), "application/json"
                data = text.encode()
                with contextlib.suppress(OSError):  # the worker may have given up (/slow)
                    self.send_response(status)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ToolServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def tools_stack(
    make_stack: StackFactory,
    tmp_path: Path,
    server: ToolServer,
    path: str,
    timeout_s: float,
    sim_args: list[str] | None = None,
) -> Stack:
    """A stack whose worker has one tool, ``lookup_order`` at ``server``'s ``path``, and whose
    simulated model calls it (``{"order": "42"}``) after the caller's first turn, then answers
    with a 2 s reply. The edge serves the admin API."""
    tools = [
        {
            "name": "lookup_order",
            "description": "Look up an order by its number.",
            "parameters": {
                "type": "object",
                "properties": {"order": {"type": "string"}},
                "required": ["order"],
            },
            "url": server.url + path,
            "timeout_s": timeout_s,
        }
    ]
    tools_file = tmp_path / "tools.json"
    tools_file.write_text(json.dumps(tools))
    return make_stack(
        workers=1,
        worker_env={"TOOLS_FILE": str(tools_file)},
        edge_env={"ADMIN_TOKEN": ADMIN_TOKEN},
        sim_args=[
            *short_reply(tmp_path),
            "--call-tool",
            "lookup_order",
            "--tool-arguments",
            '{"order": "42"}',
            *(sim_args or []),
        ],
    )
