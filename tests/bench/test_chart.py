"""The bench scripts' bars: each rate drawn to scale against its baseline, the target marked."""

from bench.chart import bars


def test_bars_are_to_scale_and_mark_the_target() -> None:
    text = bars({"baseline": 200.0, "replay": 50.0, "fast": 150.0}, 200.0, 0.4, width=20)
    header, baseline, replay, fast = text.splitlines()
    column = header.index("|")
    assert header.endswith("| target x0.4 of 200/s")
    assert baseline.count("█") == 20 and baseline.endswith("1.00x")
    assert replay.count("█") == 5 and replay[column] == "|" and replay.endswith("0.25x")
    assert fast.count("█") == 15 and fast[column] == "█" and fast.endswith("0.75x")  # past the target


def test_a_rate_above_the_baseline_fills_the_bar_and_no_more() -> None:
    line = bars({"x": 300.0}, 100.0, 0.4, width=10).splitlines()[1]
    assert line.count("█") == 10 and line.endswith("3.00x")
