"""leadflow.terminal: data printed to a console keeps its text and loses its power."""

from __future__ import annotations

from rich.console import Console

from leadflow.terminal import plain, safe


def test_plain_strips_c0_c1_and_bidi_controls_and_keeps_the_text() -> None:
    assert plain("a\x1b]0;title\x07b") == "a]0;titleb"
    assert plain("\x1b[31mred\x9b31m\x00\x7f") == "[31mred31m"
    assert plain("tab\tnew\nline\r") == "tabnewline"
    assert plain("abc\u202edcba\u2066x\u2069") == "abcdcbax"
    assert plain("ünïcödé ✓ 日本") == "ünïcödé ✓ 日本"


def test_safe_text_renders_literally_in_rich_markup() -> None:
    console = Console(record=True, width=200, color_system="truecolor", force_terminal=True)
    for text in ("lead[/]x", "[link=https://evil.example]x[/link]", "[bold red]x", "a\\", "\x1b]0;t\x07"):
        console.print(f"[cyan]{safe(text)}[/]")
    shown = console.export_text(styles=False)
    assert "lead[/]x" in shown and "[link=https://evil.example]x[/link]" in shown and "[bold red]x" in shown
    assert "a\\" in shown and "]0;t" in shown
    assert "\x1b]" not in console.export_text(styles=True)
