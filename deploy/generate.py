"""Every generated file of the repository, rebuilt or checked in one command.

    .venv/bin/python deploy/generate.py          # make generate: rewrite each file that differs
    .venv/bin/python deploy/generate.py --check  # make check-generated: write nothing; exit 1
                                                 # naming each stale file and what to run

What is generated, and from what (edit the source, never the output):

    docs/configuration.md (its table), .env.example   shared/config.py, by deploy/gen_config.py
    deploy/grafana/dashboards/switchboard.json        deploy/grafana/build_dashboard.py
    deploy/k8s/base/prometheusrule.yaml               deploy/prometheus/alerts.yml, by
                                                      deploy/k8s/sync_rules.py
    deploy/k8s/base/agents-configmap.yaml             deploy/config/agents.example.yaml
    deploy/requirements/*.txt, uv.lock's header       uv.lock (`uv export`)

uv.lock itself is written by `make lock` (`uv lock`, then this script); ``--check`` also asks uv
whether it still satisfies pyproject.toml. Every generator renders in memory (the scripts that
write their own file are pointed at a temporary one), so ``--check`` never touches the tree.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib.util
import io
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
if str(DEPLOY) not in sys.path:
    sys.path.insert(0, str(DEPLOY))

import gen_config  # noqa: E402

LOCK = ROOT / "uv.lock"
REQUIREMENTS = DEPLOY / "requirements"
PYTHON = "3.11"  # what CI, `make setup` and the images (python:3.11-slim) install the lock on

# The lock (uv.lock) and the requirement files exported from it, one per consumer.
# Why uv: uv.lock is one lock for the project and every extra, with the hash of every file, and
# `uv export --extra …` takes the subset a consumer needs from it without resolving again, so
# the images get the locked versions of their own dependencies and nothing else. pip-compile
# writes one resolution per input set instead: one lock per image (kept in step with -c), or one
# lock and a home-made filter to take subsets of it. The subsets are committed, and checked
# against uv.lock here, so that installing needs nothing but pip (in CI before uv is installed,
# and in the Dockerfile): `pip install --require-hashes -r <file>`, then the project with
# `--no-deps`.
EXPORTS: dict[str, tuple[tuple[str, ...], str]] = {
    "runtime.txt": ((), "the edge and realtime worker images: runtime dependencies only"),
    "sim.txt": (("sim",), "the realtime simulator image: runtime + the sim extra"),
    "dev.txt": (("sim", "dev"), "`make setup` and CI: runtime + the sim and dev extras"),
}
# (`make bench` adds the bench extra with uv, which dev.txt installs: no file of its own.)
LOCK_HEADER = (
    "# Switchboard's one lock: every dependency of the project and of each extra, pinned, with\n"
    f"# the hash of every file. Locked for CPython {PYTHON}: CI, `make setup` and the images\n"
    f"# (python:{PYTHON}-slim) install and test it there; uv resolves it universally (every\n"
    "# platform, requires-python >= 3.11), so entries marked for newer Pythons are untested.\n"
    "# Written by `make lock` (uv lock); deploy/requirements/*.txt are exported from it by\n"
    "# `make generate`. Do not edit by hand.\n"
)


class GenerationError(Exception):
    """A generator could not run (the message says why and what to do)."""


@dataclass(frozen=True)
class Output:
    path: Path
    text: str
    command: str  # what rewrites it


Generator = Callable[[], list[Output]]


def config_files() -> list[Output]:
    return [Output(path, text, "make generate") for path, text in gen_config.render().items()]


def _script_output(script: Path, constant: str, path: Path) -> Output:
    """Run ``script``'s ``main()``, which writes ``path`` (its module constant ``constant``),
    with that constant pointed at a temporary file; what it wrote there."""
    spec = importlib.util.spec_from_file_location(f"_generated_by_{script.stem}", script)
    if spec is None or spec.loader is None:
        raise GenerationError(f"cannot load {script.relative_to(ROOT)}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if Path(getattr(module, constant, "")) != path:
        raise GenerationError(
            f"{script.relative_to(ROOT)} no longer writes {path.relative_to(ROOT)} "
            f"through {constant}: update deploy/generate.py"
        )
    with tempfile.TemporaryDirectory() as tmp:
        setattr(module, constant, Path(tmp) / path.name)
        with contextlib.redirect_stdout(io.StringIO()):
            status = module.main()
        if status:
            raise GenerationError(f"{script.relative_to(ROOT)} exited with {status}")
        return Output(path, (Path(tmp) / path.name).read_text(), "make generate")


def dashboard() -> list[Output]:
    path = DEPLOY / "grafana" / "dashboards" / "switchboard.json"
    return [_script_output(DEPLOY / "grafana" / "build_dashboard.py", "OUT", path)]


def prometheus_rule() -> list[Output]:
    path = DEPLOY / "k8s" / "base" / "prometheusrule.yaml"
    return [_script_output(DEPLOY / "k8s" / "sync_rules.py", "TARGET", path)]


AGENTS_EXAMPLE = DEPLOY / "config" / "agents.example.yaml"


def agents_config_map() -> list[Output]:
    """The example agents file as the switchboard-agents ConfigMap that edges and workers mount
    (kustomize reads no file outside its own folder, so the base carries a copy)."""
    header = (
        "# Generated by `make generate` from deploy/config/agents.example.yaml: edit that file.\n"
        "# Edges and workers mount it at /etc/switchboard (AGENTS_FILE=/etc/switchboard/"
        "agents.yaml).\n"
    )
    lines = AGENTS_EXAMPLE.read_text().rstrip("\n").splitlines()
    body = "\n".join(("    " + line).rstrip() for line in lines)
    text = (
        f"{header}apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: switchboard-agents\n"
        "  labels:\n    app.kubernetes.io/name: switchboard\ndata:\n  agents.yaml: |\n"
        f"{body}\n"
    )
    return [Output(DEPLOY / "k8s" / "base" / "agents-configmap.yaml", text, "make generate")]


def _uv(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the uv of this environment (the dev extra installs it) in the repository root."""
    if importlib.util.find_spec("uv") is None:
        raise GenerationError("uv is not installed in this environment: run `make setup`")
    return subprocess.run(
        [sys.executable, "-m", "uv", "--no-config", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def export_command(extras: tuple[str, ...]) -> list[str]:
    """The ``uv export`` arguments for the requirement file of ``extras``."""
    args = ["export", "--frozen", "--format", "requirements.txt", "--no-emit-project"]
    for extra in extras:
        args += ["--extra", extra]
    return args


def requirement_files() -> list[Output]:
    outputs = []
    for name, (extras, purpose) in EXPORTS.items():
        result = _uv(*export_command(extras), "--no-header")
        if result.returncode:
            raise GenerationError(f"uv export failed for {name}:\n{result.stderr.strip()}")
        header = (
            f"# deploy/requirements/{name}: {purpose}.\n"
            "# Exported from uv.lock by `make generate`; do not edit. Locked for CPython "
            f"{PYTHON}.\n"
            f"#   uv {' '.join(export_command(extras))}\n"
            f"# Install: pip install --require-hashes -r deploy/requirements/{name}\n"
            "#   then the project itself, resolving nothing: pip install --no-deps .\n"
        )
        outputs.append(Output(REQUIREMENTS / name, header + result.stdout, "make generate"))
    body = LOCK.read_text()
    if body.startswith(LOCK_HEADER):
        body = body[len(LOCK_HEADER) :]
    outputs.append(Output(LOCK, LOCK_HEADER + body, "make generate"))
    return outputs


GENERATORS: list[Generator] = [
    config_files,
    dashboard,
    prometheus_rule,
    agents_config_map,
    requirement_files,
]


def lock_problems() -> list[str]:
    """Whether uv.lock still satisfies pyproject.toml (uv needs no network to say it does)."""
    result = _uv("lock", "--check")
    if result.returncode == 0:
        return []
    lines = result.stderr.strip().splitlines() or ["(uv gave no reason)"]
    reason = next((line for line in lines if line.startswith("error:")), lines[-1])
    return [f"stale: uv.lock does not satisfy pyproject.toml ({reason}): run `make lock`"]


def _diff(path: Path, old: str, new: str, limit: int = 20) -> str:
    name = str(path.relative_to(ROOT))
    lines = list(
        difflib.unified_diff(
            old.splitlines(), new.splitlines(), f"{name} (as it is)", f"{name} (as generated)", n=1
        )
    )
    shown = lines[:limit] + ([f"... {len(lines) - limit} more lines"] if len(lines) > limit else [])
    return "\n".join("    " + line.rstrip("\n") for line in shown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if any file is stale"
    )
    args = parser.parse_args(argv)
    problems: list[str] = []
    try:
        if args.check:
            problems += lock_problems()
        outputs = [output for generator in GENERATORS for output in generator()]
    except GenerationError as exc:
        print(f"generate: {exc}", file=sys.stderr)
        return 1
    for output in outputs:
        current = output.path.read_text() if output.path.exists() else ""
        if current == output.text:
            continue
        name = output.path.relative_to(ROOT)
        if args.check:
            problems.append(
                f"stale: {name} differs from what its generator writes: run `{output.command}`\n"
                + _diff(output.path, current, output.text)
            )
        else:
            output.path.write_text(output.text)
            print(f"wrote {name}")
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"generate: {len(problems)} generated file(s) stale", file=sys.stderr)
        return 1
    if args.check:
        print(f"generate: all {len(outputs)} generated files are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
