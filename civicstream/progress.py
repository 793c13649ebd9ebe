"""Progress output for long work: one refreshed line on a terminal, periodic lines in logs."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import TextIO

__all__ = ["Progress", "format_rate"]


def format_rate(count: float, seconds: float) -> str:
    rate = count / seconds if seconds > 0 else 0.0
    return f"{rate:,.0f}/s"


class Progress:
    """Counts work done against an optional total and reports rate, event time and ETA."""

    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.count = 0
        self.event_time_ms: int | None = None
        self.started = time.monotonic()
        self._tty = self.stream.isatty()
        self._last = self.started  # the first line after one interval, not at once
        self._interval = 0.5 if self._tty else 5.0

    def update(self, count: int = 1, event_time_ms: int | None = None) -> None:
        self.count += count
        if event_time_ms is not None:
            self.event_time_ms = event_time_ms
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self._write(self.line(), final=False)

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        parts = [f"{self.label}: {self.count:,}"]
        if self.total:
            parts[0] += f"/{self.total:,} ({100 * self.count / self.total:.0f}%)"
        parts.append(format_rate(self.count, elapsed))
        if self.event_time_ms is not None:
            reached = datetime.fromtimestamp(self.event_time_ms / 1000, tz=UTC)
            parts.append(f"event time {reached:%Y-%m-%d %H:%M}Z")
        if self.total and self.count and elapsed > 0:
            remaining = (self.total - self.count) * elapsed / self.count
            parts.append(f"ETA {remaining:.0f}s")
        return " · ".join(parts)

    def close(self) -> float:
        """Print the final line; return the elapsed seconds."""
        elapsed = time.monotonic() - self.started
        self._write(f"{self.line()} · done in {elapsed:.1f}s", final=True)
        return elapsed

    def _write(self, text: str, *, final: bool) -> None:
        if self._tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
