"""The code in sinks/README.md runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sinks.sql import SqlSink
from tests.sinks import report_scenario

README = Path(__file__).resolve().parents[2] / "sinks" / "README.md"


def test_readme_code_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    records = report_scenario.lifecycle_records() + report_scenario.alert_records()
    namespace: dict = {"records": records}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
    list_sink = namespace["checkpoint"].sink.sinks[1]
    assert list_sink.records == records
    assert [p.offset for p in list_sink.positions] == list(range(len(records)))
    assert namespace["committed"] == [{("lead.lifecycle", 0): len(records)}]
    with SqlSink(f"sqlite:///{tmp_path / 'leadflow.db'}") as written:
        assert written.count("lead_transitions") == report_scenario.TRANSITIONS
