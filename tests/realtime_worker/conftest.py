"""Fixtures shared by the worker tests."""

from tests.realtime_worker.test_call_session import harness

__all__ = ["harness"]
