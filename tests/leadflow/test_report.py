"""The report's figures against a hand-computed scenario, from every source, and its command."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from lifecycle.records import AlertRecord, LifecycleRecord
from schemas.wire import record_json
from leadflow.cli import report_command
from leadflow.replay_output import ReplayOutput
from leadflow.report import Report, build_report, render_json, render_text
from leadflow.report_sources import load_kafka, load_replay_dir, load_sql
from sinks.sql import SqlSink
from tests.sinks import report_scenario as s


@pytest.fixture
def report() -> Report:
    return build_report(s.lifecycle_records(), s.alert_records())


def test_totals(report: Report) -> None:
    assert (report.leads, report.transitions, report.alerts) == (s.LEADS, s.TRANSITIONS, s.ALERTS)


def test_funnel_and_conversion(report: Report) -> None:
    assert {f.stage: f.reached for f in report.funnel} == s.REACHED
    assert {f.stage: f.current for f in report.funnel} == s.CURRENT
    got = {(c.from_stage, c.to_stage): (c.leads, c.converted) for c in report.conversions}
    assert got == s.CONVERSIONS
    rates = {(c.from_stage, c.to_stage): c.rate for c in report.conversions}
    assert rates[("mql", "sal")] == pytest.approx(4 / 6)


def test_time_in_stage(report: Report) -> None:
    got = {t.stage: (t.count, t.median_ms, t.p90_ms) for t in report.time_in_stage if t.count}
    assert got == s.TIME_IN_STAGE
    assert next(t for t in report.time_in_stage if t.stage == "new").histogram == s.NEW_HISTOGRAM


def test_sla_compliance(report: Report) -> None:
    def table(rows: tuple) -> dict:
        return {c.group: (c.met, c.late, c.open, c.in_progress) for c in rows}

    assert table(report.compliance_by_sla) == s.BY_SLA
    assert table(report.compliance_by_owner) == s.BY_OWNER
    assert table(report.compliance_by_team) == s.BY_TEAM
    first_touch = next(c for c in report.compliance_by_sla if c.group == "first_touch")
    assert first_touch.rate == pytest.approx(0.8)


def test_reasons_lost_and_instant_handoffs(report: Report) -> None:
    assert [(r.decision, r.reason, r.count) for r in report.reasons] == s.REASONS
    assert [(x.from_stage, x.recycled, x.disqualified) for x in report.lost] == s.LOST
    assert dict(report.instant_handoffs) == s.INSTANT


def _quality(rows: tuple) -> dict:
    return {q.group: (q.leads, q.mqls, q.sals, q.rejected, q.disqualified, q.sqls, q.opportunities, q.customers,
                      q.revenue, q.top_reject_reasons, q.median_mql_to_sal_ms) for q in rows}


def test_by_channel_campaign_and_grade(report: Report) -> None:
    assert _quality(report.by_channel) == s.BY_CHANNEL
    assert _quality(report.by_campaign) == s.BY_CAMPAIGN
    assert [q.group for q in report.by_campaign] == s.BY_CAMPAIGN_ORDER
    assert _quality(report.by_grade) == s.BY_GRADE
    assert [q.group for q in report.by_grade] == ["A", "B", "C", "D", "(none)"]
    cpc, email = report.by_channel[0], report.by_channel[1]
    assert (cpc.sal_rate, cpc.reject_rate) == (pytest.approx(1 / 3), 0.0)
    assert (email.sal_rate, email.reject_rate) == (1.0, 0.5)


def test_by_week(report: Report) -> None:
    assert {w.week: (w.mqls, w.sals, w.first_touch_met, w.first_touch_decided) for w in report.by_week} == s.BY_WEEK
    (week,) = report.by_week
    assert (week.sal_rate, week.first_touch_compliance) == (pytest.approx(0.6), pytest.approx(0.8))


def test_records_without_attribution_group_under_none() -> None:
    """Records written before SPEC section 10 carry no channel, campaign or grade."""
    from dataclasses import replace

    bare = [replace(r, first_channel=None, first_campaign=None, grade=None) for r in s.lifecycle_records()]
    report = build_report(bare, s.alert_records())
    for rows in (report.by_channel, report.by_campaign, report.by_grade):
        assert [(q.group, q.leads, q.mqls, q.revenue) for q in rows] == [("(none)", 6, 5, 40000.0)]


def test_revenue_is_exact_whatever_the_order() -> None:
    from dataclasses import replace

    won = [replace(r, lead_id=f"W{i}", transition_id=f"w{i}", amount=amount, first_channel="cpc")
           for i, amount in enumerate([0.1, 0.2, 0.3, 1e16, -1e16])
           for r in s.lifecycle_records()[5:6]]
    forward, backward = build_report(won, []), build_report(list(reversed(won)), [])
    assert forward.by_channel[0].revenue == backward.by_channel[0].revenue == pytest.approx(0.6)


def test_is_deterministic_and_order_independent() -> None:
    lifecycle, alerts = s.lifecycle_records(), s.alert_records()
    assert build_report(lifecycle, alerts) == build_report(list(reversed(lifecycle)), list(reversed(alerts)))


def test_renders_json_and_text(report: Report) -> None:
    data = json.loads(render_json(report))
    assert data["leads"] == s.LEADS
    assert data["compliance_by_sla"][1] == {"group": "first_touch", "met": 4, "late": 0, "open": 1,
                                            "in_progress": 0, "rate": 0.8}
    assert data["first_at"] == "2026-01-05T09:00:00.000Z"
    assert data["by_channel"][1] == {
        "group": "email", "leads": 2, "mqls": 2, "sals": 2, "rejected": 1, "disqualified": 0, "sqls": 0,
        "opportunities": 0, "customers": 0, "revenue": 0.0, "sal_rate": 1.0, "reject_rate": 0.5,
        "top_reject_reasons": [{"reason": "no_budget", "count": 1}], "median_mql_to_sal_ms": 2.5 * 3_600_000}
    assert [row["group"] for row in data["by_grade"]] == ["A", "B", "C", "D", "(none)"]
    assert [row["group"] for row in data["by_campaign"]] == s.BY_CAMPAIGN_ORDER
    assert data["by_week"] == [{"week": "2026-W02", "mqls": 5, "sals": 3, "sal_rate": 0.6, "first_touch_met": 4,
                                "first_touch_decided": 5, "first_touch_compliance": 0.8}]
    console = Console(record=True, width=200)
    render_text(report, console)
    text = console.export_text()
    for needle in ("Funnel", "mql → sal", "66.7%", "SLA compliance by team", "no_budget", "rep-2",
                   "By first-touch channel", "By first-touch campaign", "By grade", "By ISO week of the MQL move",
                   "40,000", "2026-W02", "33.3%", "2h 30m"):
        assert needle in text, needle


def test_text_from_the_data_is_neither_markup_nor_terminal_escapes() -> None:
    from dataclasses import replace

    records = [replace(r, first_channel="[bold red]cpc[/]\x1b[2J") if r.lead_id == "A" else r
               for r in s.lifecycle_records()]
    console = Console(record=True, width=250)
    render_text(build_report(records, s.alert_records()), console)
    text = console.export_text()
    # leadflow.terminal.safe: markup shown as typed, control characters dropped
    assert "[bold red]cpc[/][2J" in text and "\x1b" not in text


def test_empty_input_gives_an_empty_report() -> None:
    report = build_report([], [])
    assert report.leads == 0 and all(f.reached == 0 for f in report.funnel)
    assert all(c.rate is None for c in report.conversions)
    json.loads(render_json(report))


# -- sources --------------------------------------------------------------------------------------

def write_replay_dir(directory: Path, lifecycle: list[LifecycleRecord], alerts: list[AlertRecord],
                     raw_lifecycle: bytes | None = None) -> Path:
    """A replay output directory as replay writes it (manifest included), with these records."""
    with ReplayOutput.open(directory) as out:
        lifecycle_out, alerts_out, _ = out.begin()
        lifecycle_out.write(raw_lifecycle if raw_lifecycle is not None
                            else b"".join(record_json(r) + b"\n" for r in lifecycle))
        alerts_out.write(b"".join(record_json(a) + b"\n" for a in alerts))
        out.commit(inputs=["test"], until=None)
    return directory


def test_from_replay_output(tmp_path: Path, report: Report) -> None:
    out = write_replay_dir(tmp_path / "out", s.lifecycle_records(), s.alert_records())
    assert build_report(*load_replay_dir(out)) == report


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_from_a_sql_sink(backend: str, tmp_path: Path, request: pytest.FixtureRequest, report: Report) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    with SqlSink(url, batch_size=5) as sink:
        sink.add_all([*s.lifecycle_records(), *s.alert_records()])
    lifecycle, alerts = load_sql(url)
    # SQL reads back in time order; the report does not depend on order
    assert build_report(lifecycle, alerts) == report


def test_from_kafka_topics(bootstrap: str, unique_name: Callable[..., str], report: Report) -> None:
    from streams.topics import ensure_topics
    from tests.kafka_helpers import produce

    lifecycle_topic, alerts_topic = unique_name("lifecycle"), unique_name("alerts")
    ensure_topics(bootstrap, [lifecycle_topic, alerts_topic], partitions=3)
    produce(bootstrap, lifecycle_topic, [(r.lead_id, record_json(r)) for r in s.lifecycle_records()])
    produce(bootstrap, alerts_topic, [(a.lead_id, record_json(a)) for a in s.alert_records()])
    lifecycle, alerts = load_kafka(f"kafka://{bootstrap}?lifecycle={lifecycle_topic}&alerts={alerts_topic}",
                                   idle=1.0)
    assert len(lifecycle) == len(s.lifecycle_records())  # counted, repeats included
    assert build_report(lifecycle, alerts) == report


@pytest.mark.parametrize("schemas", ["registry", "bundled"])
def test_from_kafka_topics_written_in_avro(schemas: str, bootstrap: str, unique_name: Callable[..., str],
                                           report: Report, request: pytest.FixtureRequest,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker with LEADFLOW_FORMAT=avro writes Confluent-framed Avro: under the ids of
    LEADFLOW_SCHEMA_REGISTRY_URL's registry, or the bundled ids (101-103) without one."""
    from schemas.codec import BUNDLED_SCHEMA_IDS, encode_record_avro
    from schemas.registry import RegistryClient
    from streams.output import AvroOutput
    from streams.topics import Topics, ensure_topics
    from tests.kafka_helpers import produce

    for name in ("LEADFLOW_CONFIG", "LEADFLOW_SCHEMA_REGISTRY_URL", "LEADFLOW_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    topics = Topics.prefixed(unique_name("lf"), partitions=3)
    ensure_topics(bootstrap, topics)
    if schemas == "registry":
        registry = request.getfixturevalue("fake_registry")
        output = AvroOutput.register(RegistryClient(registry.url), topics)
        # ids the bundled schemas do not have (or have for another record): only the registry decodes them
        assert all(output.ids[name] != BUNDLED_SCHEMA_IDS[name] for name in output.ids)
        monkeypatch.setenv("LEADFLOW_SCHEMA_REGISTRY_URL", registry.url)
        lifecycle_values = [output.lifecycle(record_json(r).decode()) for r in s.lifecycle_records()]
        alert_values = [output.alert(record_json(a).decode()) for a in s.alert_records()]
    else:
        lifecycle_values = [encode_record_avro(r) for r in s.lifecycle_records()]
        alert_values = [encode_record_avro(a) for a in s.alert_records()]
    assert all(v[0] == 0 for v in lifecycle_values + alert_values)   # Confluent framing, not JSON
    produce(bootstrap, topics.lifecycle, [(r.lead_id, v) for r, v in zip(s.lifecycle_records(), lifecycle_values)])
    produce(bootstrap, topics.alerts, [(a.lead_id, v) for a, v in zip(s.alert_records(), alert_values)])

    lifecycle, alerts = load_kafka(f"kafka://{bootstrap}?lifecycle={topics.lifecycle}&alerts={topics.alerts}",
                                   idle=1.0)
    assert len(lifecycle) == len(s.lifecycle_records())
    assert build_report(lifecycle, alerts) == report


def test_a_kafka_value_that_holds_no_record_fails_the_report_naming_the_topic(
    bootstrap: str, unique_name: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sinks.base import SinkError
    from streams.topics import ensure_topics
    from tests.kafka_helpers import produce

    monkeypatch.delenv("LEADFLOW_SCHEMA_REGISTRY_URL", raising=False)
    lifecycle_topic, alerts_topic = unique_name("lifecycle"), unique_name("alerts")
    ensure_topics(bootstrap, [lifecycle_topic, alerts_topic], partitions=1)
    produce(bootstrap, lifecycle_topic, [("L1", b"\x00\x00\x00\x03\xe7not avro")])
    with pytest.raises(SinkError, match=f"{lifecycle_topic}: .*unknown_schema_id"):
        load_kafka(f"kafka://{bootstrap}?lifecycle={lifecycle_topic}&alerts={alerts_topic}", idle=0.5)


# -- the command ----------------------------------------------------------------------------------

def test_report_command_json_and_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = write_replay_dir(tmp_path / "out", s.lifecycle_records(), s.alert_records())
    html = tmp_path / "report.html"
    assert report_command(str(out), "json", str(html)) == 0
    assert json.loads(capsys.readouterr().out)["transitions"] == s.TRANSITIONS
    assert "<svg" in html.read_text()
    assert report_command(str(out), "text", None) == 0
    assert "Funnel" in capsys.readouterr().out


def test_report_command_bad_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report_command(str(tmp_path / "missing"), "text", None) == 2
    assert report_command("ftp://x", "text", None) == 2
    assert report_command(str(tmp_path), "text", None) == 2  # a directory without lifecycle.jsonl
    assert report_command(str(tmp_path), "yaml", None) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("leadflow report: ") for line in err)
    bad = write_replay_dir(tmp_path / "bad", [], [], raw_lifecycle=b"{nope\n")
    assert report_command(str(bad), "text", None) == 1
