"""Every configuration variable of both services, in one list: what the generated
configuration table and ``.env.example`` are made from (``deploy/gen_config.py``)."""

from __future__ import annotations

from services.edge.settings import EdgeSettings
from services.realtime_worker.settings import WorkerSettings
from shared.config import Variable

__all__ = ["all_variables", "reference_table"]


def all_variables() -> dict[str, tuple[Variable, set[str]]]:
    """Every variable, with the services (``edge``, ``worker``) that read it."""
    table: dict[str, tuple[Variable, set[str]]] = {}
    for service, cls in (("edge", EdgeSettings), ("worker", WorkerSettings)):
        for _, var in cls.variables():
            table.setdefault(var.name, (var, set()))[1].add(service)
    return table


def reference_table() -> str:
    """The table of docs/configuration.md (Markdown), generated so that it cannot drift."""
    rows = [
        "| Variable | Read by | Default | What it does |",
        "|---|---|---|---|",
    ]
    for name, (var, services) in all_variables().items():
        default = f"`{var.default}`" if var.default else "—"
        note = " *Secret: never logged.*" if var.secret else ""
        rows.append(f"| `{name}` | {', '.join(sorted(services))} | {default} | {var.help}{note} |")
    return "\n".join(rows)
