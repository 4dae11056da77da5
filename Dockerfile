# syntax=docker/dockerfile:1
#
# Switchboard container images: one Dockerfile, one small image per service, built as targets.
#
#   docker build --target edge   -t switchboard-edge   .   # python -m services.edge
#   docker build --target worker -t switchboard-worker .   # python -m services.realtime_worker
#   docker build --target sim    -t switchboard-sim    .   # python -m services.realtime_sim
#
# Why per-service targets rather than one image with two entry points: each service gets its own
# HEALTHCHECK (GET /livez, answered by the event loop: the edge's on ADMIN_PORT, the worker's on
# METRICS_PORT) and its own exec-form ENTRYPOINT, so `docker run switchboard-worker` needs no
# command override, and the simulator's extra dependencies (openai, pydantic, twilio) never ship
# in the production images. The targets share every layer up to `runtime`, so building both
# costs one build.
#
# Dependencies come from the project's one lock, uv.lock (locked for CPython 3.11, the Python of
# these images and of CI), through the subsets exported from it by `make generate`:
# deploy/requirements/runtime.txt (the edge and worker images: runtime dependencies only) and
# sim.txt (the simulator image: runtime + the sim extra). Both pin every package with the hashes
# of its files, and pip installs them with --require-hashes; the project itself is then installed
# with --no-deps, so no dependency is resolved at build time (pip only fetches the build backend,
# setuptools, into its isolated build environment, which stays out of the image) and no dev tool
# (pytest, mypy, ruff, uv…) can reach an image. The build needs only pip: the exports are
# committed and checked against uv.lock by `make check-generated`, so uv never runs here.
# The console script `switchboard` exists in every image, but only the simulator image has the
# sim extra: elsewhere its demo, realtime-sim, call-sim and bench commands exit 2 naming the
# extra (services/cli.py).
# Configuration comes only from the environment (docs/configuration.md); no config file is read.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtualenv with the pinned dependencies and the project (compilers allowed here) --
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# Every runtime dependency ships manylinux wheels for amd64 and arm64; the toolchain is here only
# for platforms where pip has to build one from source. It never reaches the final images.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/switchboard
ENV PATH=/opt/switchboard/bin:$PATH
WORKDIR /src
COPY deploy/requirements/runtime.txt deploy/requirements/runtime.txt
RUN pip install --require-virtualenv --require-hashes -r deploy/requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY services services
COPY shared shared
RUN pip install --require-virtualenv --no-deps . \
 && python -m compileall -q /opt/switchboard

# --- build-sim: the same, plus the sim extra (sim.txt repeats runtime.txt, already installed) -
FROM build AS build-sim
COPY deploy/requirements/sim.txt deploy/requirements/sim.txt
RUN pip install --require-virtualenv --require-hashes -r deploy/requirements/sim.txt \
 && python -m compileall -q /opt/switchboard

# --- runtime: slim base, no compilers, non-root -------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/switchboard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 switchboard \
 && useradd --system --uid 10001 --gid switchboard --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin switchboard
COPY --from=build /opt/switchboard /opt/switchboard
# The venv holds the code; the working directory holds nothing, so a read-only root is fine.
WORKDIR /tmp
USER 10001:10001

# --- edge: Twilio webhooks and Media Streams (python -m services.edge) --------------------------
FROM runtime AS edge
# PORT: Twilio's routes only (publish this one); ADMIN_PORT: metrics, health, the read API and
# call control (keep it private: SECURITY.md).
ENV PORT=8080 \
    ADMIN_PORT=8081
EXPOSE 8080 8081
# /livez on the admin port (on loopback: ADMIN_HOST, if set, must cover 127.0.0.1), answered by
# the event loop: a stuck loop answers nothing. (/readyz also needs Redis; orchestrators use it
# for traffic.)
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('ADMIN_PORT', '8081'), timeout=2)"]
# Where docker-compose.yml mounts RECORDINGS_DIR, owned by the edge's user: an empty named
# volume mounted there starts with this ownership, so the edge can write it.
USER root
RUN mkdir -p /var/lib/switchboard/recordings \
 && chown 10001:10001 /var/lib/switchboard/recordings
USER 10001:10001
# Exec form: python is PID 1 and receives SIGTERM itself (the edge drains for DRAIN_TIMEOUT).
ENTRYPOINT ["python", "-m", "services.edge"]

# --- sim: the local Realtime simulator (python -m services.realtime_sim) ------------------------
FROM runtime AS sim
COPY --from=build-sim /opt/switchboard /opt/switchboard
EXPOSE 8765
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import socket; socket.create_connection(('127.0.0.1', 8765), 2).close()"]
ENTRYPOINT ["python", "-m", "services.realtime_sim"]
CMD ["--host", "0.0.0.0", "--port", "8765"]

# --- worker: OpenAI Realtime sessions (python -m services.realtime_worker) ----------------------
# Last, so a plain `docker build .` yields a production service image.
FROM runtime AS worker
ENV METRICS_PORT=9100
EXPOSE 9100
# /livez and /metrics on METRICS_PORT, both answered by the event loop: a stuck loop answers
# nothing.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('METRICS_PORT', '9100'), timeout=2)"]
ENTRYPOINT ["python", "-m", "services.realtime_worker"]
