"""Placing simulated inbound calls: one (``place_call``) or many at once (``place_calls``),
each a ``call._Call`` driven to its end within its time budget."""

from __future__ import annotations

import asyncio
import logging

import httpx

from services.call_sim.call import TIMEOUT_MARGIN_S, _Call, drive
from services.call_sim.callee import CALLEES
from services.call_sim.report import ASSET_AUDIO, CallConfig, CallFailed, CallReport
from services.call_sim.stream_end import ABRUPT_DROP_MODES
from shared.audio import SAMPLE_RATE

__all__ = ["place_call", "place_calls"]

logger = logging.getLogger("switchboard.call_sim")


async def place_call(config: CallConfig) -> CallReport:
    """Place one call and return what happened.

    Never raises for a failed call or protocol faults (see ``CallReport.error`` and
    ``.protocol_violations``) unless ``config.strict``, which raises ``CallFailed``.
    """
    if config.abrupt_drop not in ABRUPT_DROP_MODES:
        raise ValueError(f"abrupt_drop={config.abrupt_drop!r}: expected one of {ABRUPT_DROP_MODES}")
    if config.callee not in CALLEES:
        raise ValueError(f"callee={config.callee!r}: expected one of {CALLEES}")
    if config.callee_ring_s < 0 or config.callee_talk_s < 0:
        raise ValueError("callee_ring_s and callee_talk_s must not be negative")
    if config.caller_audio is None:
        audio = await asyncio.to_thread(ASSET_AUDIO.read_bytes)
    else:
        audio = config.caller_audio
    budget = config.timeout_s
    if budget is None:
        budget = len(audio) / SAMPLE_RATE + config.hold_s + config.linger_s + TIMEOUT_MARGIN_S
        # Each document followed may <Dial>: its ringing and talk time come on top.
        budget += (config.callee_ring_s + config.callee_talk_s) * (config.max_redirects + 1)
    timeout = httpx.Timeout(config.http_timeout_s)
    async with httpx.AsyncClient(timeout=timeout, trust_env=False) as http:
        call = _Call(config, audio, http)
        logger.info("placing call %s to %s", call.report.call_sid, config.edge_urls)
        try:
            await drive(call, budget)
            await call.recorder.announce()
        finally:
            call.recorder.cancel()  # only if cancelled: announce awaited them all
    report = call.finish()
    logger.info(
        "call %s ended: %s", report.call_sid, "ok" if report.ok else "; ".join(report.problems())
    )
    if config.strict and not report.ok:
        raise CallFailed(report)
    return report


async def place_calls(configs: list[CallConfig]) -> list[CallReport]:
    """Place the calls concurrently; the reports in the same order."""
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(place_call(config)) for config in configs]
    return [task.result() for task in tasks]
