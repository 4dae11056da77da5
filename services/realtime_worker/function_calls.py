"""The model's function calls on one call: ``end_call``, ``transfer_call``, the tools of
TOOLS_FILE, and calls to functions nobody declared.

Each call is answered once, with a ``function_call_output`` on the *current* session. A
session knows only its own calls: an answer for a call made in a session since replaced (a
rollover or a reconnect while an HTTP tool ran) would be refused (``invalid_tool_call_id``), so
the call is first recreated in the current session. Configured tools run as tasks beside the
relays, so a slow tool never holds up audio; the call's end cancels them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import websockets.exceptions

from services.realtime_worker import openai_protocol as rt
from services.realtime_worker.call_io import CallIO
from services.realtime_worker.conversation import Conversation
from services.realtime_worker.live_session import LiveSession, SessionHolder
from services.realtime_worker.tool_runner import run_tool
from services.realtime_worker.tools import Tool, tool_error_output
from services.realtime_worker.transfer_tool import (
    TRANSFER_CALL,
    Transfer,
    handoff_cue,
    parse_transfer,
)
from services.realtime_worker.turn_state import EndReason
from shared.records import transfer_commands

__all__ = ["FunctionCalls", "LastWords"]

END_CALL_OUTPUT = '{"ok": true, "note": "The call ends after your goodbye."}'
TRANSFER_OUTPUT = (
    '{"ok": true, "note": "The caller is transferred once you have told them you are '
    'connecting them."}'
)


@dataclass(frozen=True, slots=True)
class LastWords:
    """The model ended the call (``end_call``, ``transfer_call``): the call ends for
    ``reason`` once its last words, asked for with ``cue`` if it has not said them, are heard."""

    reason: EndReason
    cue: str | None = None  # None: the reason's own goodbye


class FunctionCalls:
    def __init__(
        self,
        call: CallIO,
        holder: SessionHolder,
        conversation: Conversation,
        tools: tuple[Tool, ...],
    ) -> None:
        self._call = call
        self._holder = holder
        self._conversation = conversation
        self._tools = {tool.name: tool for tool in tools}
        self._tasks: set[asyncio.Task[None]] = set()

    async def answer(self, calls: list[rt.FunctionCall]) -> LastWords | None:
        """Answer the calls a response made (from the model's relay: never waits for a
        session switch); what ends the call, when one of them does (``end_call``, a valid
        ``transfer_call``). Raises ConnectionClosed when the current session has just dropped
        (the relay then replaces it)."""
        ended: LastWords | None = None
        for call in calls:
            if call.name in self._tools:
                task = asyncio.create_task(self._run_tool(call), name=f"tool-{call.name}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                continue
            self._call.log.info("model called %s(%s)", call.name, call.arguments[:200])
            if call.name == rt.END_CALL:
                await self._output(self._holder.current, call, END_CALL_OUTPUT)
                ended = ended or LastWords(EndReason.MODEL)
                continue
            if call.name == TRANSFER_CALL and self._call.profile.transfer_targets:
                ended = await self._transfer(call) or ended
                continue
            output = f'{{"error": "there is no function named {call.name[:64]}"}}'
            await self._output(self._holder.current, call, output)
            await self._holder.current.send(rt.response_create(self._call_id("tool")))
        return ended

    async def _transfer(self, call: rt.FunctionCall) -> LastWords | None:
        """Accept a valid transfer (recorded; the call ends once the handoff is heard), or
        answer what is wrong and let the model go on."""
        io, profile = self._call, self._call.profile
        request = parse_transfer(call.arguments, profile.transfer_targets, profile.warm_transfer)
        if isinstance(request, Transfer) and self._conversation.ending is not None:
            request = "the call is ending already"
        if not isinstance(request, Transfer):
            io.metrics.transfers.labels(profile.agent, "refused").inc()
            io.log.warning("refused the model's transfer: %s", request)
            await self._output(self._holder.current, call, tool_error_output(call.name, request))
            await self._holder.current.send(rt.response_create(self._call_id("tool")))
            return None
        kind = "warm" if request.warm else "cold"
        io.metrics.transfers.labels(profile.agent, kind).inc()
        io.write(
            transfer_commands(
                io.ctx.keys,
                io.call_sid,
                request.target,
                request.address,
                request.summary,
                request.warm,
            )
        )
        io.log.info(
            "transferring the call (%s) to %s (%s) once the handoff has been heard",
            kind,
            request.target,
            request.address,
        )
        await self._output(self._holder.current, call, TRANSFER_OUTPUT)
        return LastWords(EndReason.TRANSFER, handoff_cue(request))

    def cancel(self) -> None:
        """The call is over: tools still running are not waited for."""
        for task in self._tasks:
            task.cancel()

    async def _output(self, session: LiveSession, call: rt.FunctionCall, output: str) -> None:
        """``function_call_output`` on ``session``, recreating the call there first if it
        never saw it. Raises ConnectionClosed if the session is gone."""
        if call.call_id not in session.call_ids:
            item = rt.function_call_item(call.call_id, call.name, call.arguments)
            await session.send(rt.conversation_item_create(self._call_id("tool"), item))
            session.call_ids.add(call.call_id)
        item = rt.function_call_output_item(call.call_id, output)
        await session.send(rt.conversation_item_create(self._call_id("tool"), item))

    async def _run_tool(self, call: rt.FunctionCall) -> None:
        """Call a configured tool, give the model its answer (or what went wrong), then ask
        for a response. Supervised: a failure is logged, never the end of the call."""
        io = self._call
        tool = self._tools[call.name]
        io.log.info("model called %s(%s)", call.name, call.arguments[:200])
        try:
            assert io.ctx.http is not None
            result = await run_tool(
                io.ctx.http, tool, io.call_sid, call.arguments, io.profile.variables
            )
            io.metrics.tool_calls.labels(tool.name, result.outcome).inc()
            if result.problem is not None:
                io.log.warning("tool %s failed: %s", tool.name, result.problem)
            await self._deliver(call, result.output)
            # One response at a time: a reply already under way finishes first.
            await io.response_ended(self._conversation, io.timing.wrap_up_timeout_s)
            if self._conversation.ending is None and io.end_reason is None:
                await self._holder.send(rt.response_create(self._call_id("tool")))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            io.log.warning("could not answer the call of tool %s: %r", tool.name, exc)

    async def _deliver(self, call: rt.FunctionCall, output: str) -> None:
        """The output on whichever session is current once it is ready, waiting through a
        switch (a rollover or a reconnect) if one is under way."""
        holder = self._holder
        while True:
            async with holder.lock:
                session = holder.current
                try:
                    await self._output(session, call, output)
                    return
                except websockets.exceptions.ConnectionClosed:
                    pass
            await holder.replaced(session)

    def _call_id(self, kind: str) -> str:
        return self._call.next_event_id(kind)
