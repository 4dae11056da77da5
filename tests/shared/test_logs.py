"""Log lines: call sid on every call line, secrets masked wherever they appear."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest

from shared.logs import CallLog, setup_logging

SECRET = "sk-proj-abcdefSECRET"
TOKEN = "twilio-token-123456"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    noisy = {name: logging.getLogger(name).level for name in ("websockets", "httpx")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lvl in noisy.items():
        logging.getLogger(name).setLevel(lvl)


def _lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


@pytest.mark.usefixtures("restore_logging")
def test_line_format_and_call_sid(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO")
    log = CallLog(logging.getLogger("switchboard.test"), "CA123")
    log.info("AI said: %s", "hello")
    logging.getLogger("switchboard.other").info("no call here")
    first, second = _lines(capsys)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO switchboard\.test call=CA123 AI said: hello",
        first,
    )
    assert second.endswith("INFO switchboard.other no call here")
    assert "call=" not in second


@pytest.mark.usefixtures("restore_logging")
def test_secrets_are_masked_in_messages_args_and_tracebacks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("DEBUG", [SECRET, TOKEN, None, ""])
    log = logging.getLogger("switchboard.test")
    log.info("connecting with Bearer %s", SECRET)
    log.warning(f"token is {TOKEN}")
    try:
        raise RuntimeError(f"auth failed for {SECRET}")
    except RuntimeError:
        log.exception("failed")
    out = "\n".join(_lines(capsys))
    assert SECRET not in out
    assert TOKEN not in out
    assert "Bearer ***" in out
    assert "token is ***" in out
    assert "RuntimeError: auth failed for ***" in out


@pytest.mark.usefixtures("restore_logging")
def test_longer_secret_containing_a_shorter_one_is_masked_whole(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("INFO", ["abcd", "abcdefgh"])
    logging.getLogger("t").info("x abcdefgh y abcd z")
    (line,) = _lines(capsys)
    assert line.endswith("x *** y *** z")


@pytest.mark.usefixtures("restore_logging")
def test_level_filters_and_noisy_libraries_are_quieted(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("WARNING")
    logging.getLogger("switchboard.test").info("hidden")
    logging.getLogger("switchboard.test").warning("shown")
    assert [line.split(" ", 1)[1] for line in _lines(capsys)] == ["WARNING switchboard.test shown"]
    setup_logging("DEBUG")
    assert logging.getLogger("websockets").level == logging.WARNING
    assert logging.getLogger().level == logging.DEBUG
    assert len(logging.getLogger().handlers) == 1


@pytest.mark.usefixtures("restore_logging")
def test_call_log_keeps_caller_extra_and_debug_flag(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO")
    logger = logging.getLogger("switchboard.callx")
    log = CallLog(logger, "CA9")
    assert log.debug_enabled is False
    captured: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    keep = Keep()
    logger.addHandler(keep)
    try:
        log.info("with extra", extra={"frames": 3})
    finally:
        logger.removeHandler(keep)
    (record,) = captured
    assert record.__dict__["call_sid"] == "CA9"
    assert record.__dict__["frames"] == 3
    assert "call=CA9 with extra" in _lines(capsys)[0]
    logger.setLevel(logging.DEBUG)
    try:
        assert CallLog(logger, "CA9").debug_enabled is True
    finally:
        logger.setLevel(logging.NOTSET)
