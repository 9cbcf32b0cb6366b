"""The README's generated parts (the topic table), and a check that they are current."""

from __future__ import annotations

import re
from pathlib import Path

from schemas import topics

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- topics:start -->", "<!-- topics:end -->"


def _retention(ms: int) -> str:
    return "forever" if ms < 0 else f"{ms // topics.DAY_MS} d"


def topic_table() -> str:
    """A Markdown table of the topic registry."""
    rows = [
        "| topic | key | values | partitions | cleanup | retention | public | producers | consumers |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in topics.ALL:
        rows.append(
            f"| `{t.name}` | {t.key_shape} | {', '.join(t.value_types)} | {t.partitions} | {t.cleanup} | "
            f"{_retention(t.retention_ms)} | {'yes' if t.public else 'no'} | {', '.join(t.producers)} | "
            f"{', '.join(t.consumers)} |"
        )
    return "\n".join(rows)


def render(text: str) -> str:
    """``text`` with the table between the markers replaced by the current one."""
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(f"README has no {START} ... {END} markers")
    return pattern.sub(lambda _: f"{START}\n{topic_table()}\n{END}", text)


def write() -> bool:
    """Rewrite the README's table; True if it changed."""
    old = README.read_text()
    new = render(old)
    README.write_text(new)
    return new != old
