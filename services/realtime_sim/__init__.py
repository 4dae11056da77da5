"""A local OpenAI Realtime (GA) server speaking G.711 μ-law, for tests, demos and users
without an OpenAI account. Run it with ``python -m services.realtime_sim --help``, or in
process::

    async with run_simulator(SimulatorConfig(behaviour=BehaviourConfig(mode=Mode.ECHO))) as sim:
        ...  # connect to sim.url
"""

from __future__ import annotations

from .behaviour import BehaviourConfig, Mode, SimSession
from .client_events import validate_client_event, validate_server_event
from .failures import DropHow, Failures
from .faults import Fault
from .record import SessionRecord
from .server import RunningSimulator, SimulatorConfig, run_simulator
from .vad import VadSettings
from .values import AllowList

__all__ = [
    "AllowList",
    "BehaviourConfig",
    "DropHow",
    "Failures",
    "Fault",
    "Mode",
    "RunningSimulator",
    "SessionRecord",
    "SimSession",
    "SimulatorConfig",
    "VadSettings",
    "run_simulator",
    "validate_client_event",
    "validate_server_event",
]
