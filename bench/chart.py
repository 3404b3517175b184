"""Figures against their baseline as bars, for the bench scripts' reports."""

from __future__ import annotations


def bars(rates: dict[str, float], reference: float, target: float, width: int = 48) -> str:
    """The rates as bars scaled to ``reference`` (one full bar), ``|`` where ``target`` x of it lies."""
    mark = round(width * target)
    column = max(22, *(len(label) + 2 for label in rates))
    lines = [f"  {'':<{column}}{'':<{mark}}| target x{target:g} of {reference:,.0f}/s"]
    for label, rate in rates.items():
        filled = min(width, round(width * rate / reference))
        bar = ["█"] * filled + [" "] * (width - filled)
        if filled <= mark < width:
            bar[mark] = "|"
        lines.append(f"  {label:<{column}}{''.join(bar)} {rate / reference:5.2f}x")
    return "\n".join(lines)
