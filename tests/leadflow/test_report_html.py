"""The HTML report is one self-contained page whose SVG charts survive a real browser's parser.

Needs Chromium (Debian: ``apt-get install -y chromium``); skipped with that reason when it is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from leadflow.report import build_report
from leadflow.report_html import render_html
from tests.sinks import report_scenario as s

CHART_IDS = ("funnel-chart", "time-in-stage-chart", "compliance-by-team-chart", "channel-chart", "grade-chart",
             "weekly-chart")


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium_args(profile: Path) -> list[str]:
    return ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
            f"--user-data-dir={profile}"]


@pytest.fixture
def page(tmp_path: Path) -> Path:
    path = tmp_path / "report.html"
    path.write_text(render_html(build_report(s.lifecycle_records(), s.alert_records())), encoding="utf-8")
    return path


def test_page_is_self_contained(page: Path) -> None:
    html = page.read_text()
    assert "<script" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)  # no fetches
    assert "@import" not in html and "url(" not in html
    for chart in CHART_IDS:
        assert f'<svg id="{chart}"' in html


def test_the_channel_chart_draws_each_channels_mini_funnel_to_one_scale() -> None:
    html = render_html(build_report(s.lifecycle_records(), s.alert_records()))
    chart = re.search(r'<svg id="channel-chart".*?</svg>', html, re.S).group(0)  # type: ignore[union-attr]
    widths = {(step, float(w)) for step, w in re.findall(r'data-step="(\w+)" x="\d+" y="\d+" width="([\d.]+)"', chart)}
    # cpc: 3 MQL, 1 SAL, 1 SQL, 1 won; the widest bar (3 MQLs) is the full 420 px
    assert ("MQL", 420.0) in widths and ("SAL", 140.0) in widths
    assert "3 MQL · 1 SAL · 1 SQL · 1 won" in chart and "revenue 40,000" in chart


def test_the_weekly_chart_leaves_room_for_weeks_without_mqls() -> None:
    from dataclasses import replace

    records = [replace(r, occurred_at=r.occurred_at + 21 * s.DAY) if r.lead_id == "B" else r
               for r in s.lifecycle_records()]
    html = render_html(build_report(records, s.alert_records()))
    chart = re.search(r'<svg id="weekly-chart".*?</svg>', html, re.S).group(0)  # type: ignore[union-attr]
    assert re.findall(r'data-week="([0-9W-]+)"', chart) == ["2026-W02", "2026-W03", "2026-W04", "2026-W05"]


def test_text_is_escaped() -> None:
    from dataclasses import replace

    lifecycle = s.lifecycle_records()[:-2]  # without the repeats
    assert lifecycle[11].reason == "no_budget"
    lifecycle[11] = replace(lifecycle[11], reason="<script>alert(1)</script>")
    lifecycle[3] = replace(lifecycle[3], team="<b>x</b>")
    lifecycle[5] = replace(lifecycle[5], first_channel="<img src=x>", first_campaign="</svg><script>")
    html = render_html(build_report(lifecycle, s.alert_records()))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img" not in html and "&lt;img src=x&gt;" in html


def test_charts_render_in_headless_chromium(page: Path, tmp_path: Path) -> None:
    browser = chromium()
    if browser is None:
        pytest.fail("Chromium is not installed: `apt-get install -y chromium` (`make test` installs it)")
    run = subprocess.run([browser, *chromium_args(tmp_path / "profile"), "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    dom = run.stdout
    assert run.returncode == 0, run.stderr[-2000:]
    for chart in CHART_IDS:
        match = re.search(rf'<svg id="{chart}".*?</svg>', dom, re.S)
        assert match, f"{chart} missing from the rendered DOM"
        assert chart == "weekly-chart" or match.group(0).count("<rect") >= 2, f"{chart} has no bars"
    funnel = re.search(r'<svg id="funnel-chart".*?</svg>', dom, re.S).group(0)  # type: ignore[union-attr]
    assert funnel.count('class="bar"') == 7  # new … customer
    channels = re.search(r'<svg id="channel-chart".*?</svg>', dom, re.S).group(0)  # type: ignore[union-attr]
    assert channels.count('class="bar"') == 4 * len(s.BY_CHANNEL)  # MQL, SAL, SQL, won per channel
    weekly = re.search(r'<svg id="weekly-chart".*?</svg>', dom, re.S).group(0)  # type: ignore[union-attr]
    assert weekly.count('data-week="2026-W02"') == 1 and weekly.count("<polyline") == 2

    shot = tmp_path / "report.png"
    run = subprocess.run([browser, *chromium_args(tmp_path / "profile2"), f"--screenshot={shot}",
                          "--window-size=1200,2400", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.stat().st_size > 10_000  # a blank page is a few KB
