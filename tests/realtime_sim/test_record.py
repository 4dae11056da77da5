"""Reading the simulator's session records while it may still be appending one."""

from __future__ import annotations

import json
from pathlib import Path

from services.realtime_sim.record import read_records


def test_a_line_still_being_appended_is_left_for_the_next_read(tmp_path: Path) -> None:
    path = tmp_path / "sessions.jsonl"
    first = json.dumps({"session": "sess_1", "audio_out_b64": "//79"}) + "\n"
    second = json.dumps({"session": "sess_2", "audio_out_b64": "fn5+" * 1000}) + "\n"
    path.write_text(first + second[:2000])  # the second line reached the file in part

    assert [r["session"] for r in read_records(path)] == ["sess_1"]

    path.write_text(first + second)
    assert [r["session"] for r in read_records(path)] == ["sess_1", "sess_2"]


def test_no_file_yet_means_no_sessions(tmp_path: Path) -> None:
    assert read_records(tmp_path / "none.jsonl") == []
