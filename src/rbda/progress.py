"""Progress display for long steps.

In a terminal, a live single-line bar on stderr (done/total, rate, ETA, and a
free-form status); otherwise (a log file, a Slurm job) one plain line every
``log_every`` seconds. Both go through :meth:`Progress.update`.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _fmt_seconds(s: float) -> str:
    if s != s or s == float("inf"):
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


class Progress:
    """Report progress of ``total`` units of work (``unit`` names them)."""

    def __init__(
        self,
        total: int | None,
        label: str,
        unit: str = "items",
        log_every: float = 30.0,
        stream: TextIO | None = None,
        live: bool | None = None,
    ):
        self.total = total
        self.label = label
        self.unit = unit
        self.log_every = log_every
        self.stream = stream if stream is not None else sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.start = time.monotonic()
        self.last_emit = -float("inf")
        self.done = 0
        self.status = ""
        self._last_line_state: tuple[int, str] | None = None

    def update(self, done: int, status: str = "", force: bool = False) -> None:
        self.done = done
        self.status = status
        now = time.monotonic()
        interval = 0.2 if self.live else self.log_every
        if force or now - self.last_emit >= interval:
            self.last_emit = now
            self._emit(now)

    def line(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        if self.total:
            pct = 100.0 * self.done / self.total
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            head = f"{self.label}: {self.done}/{self.total} {self.unit} ({pct:5.1f}%)"
            tail = f"{rate:,.0f} {self.unit}/s, elapsed {_fmt_seconds(elapsed)}, ETA {_fmt_seconds(eta)}"
        else:
            head = f"{self.label}: {self.done} {self.unit}"
            tail = f"{rate:,.0f} {self.unit}/s, elapsed {_fmt_seconds(elapsed)}"
        return f"{head} | {tail}" + (f" | {self.status}" if self.status else "")

    def _emit(self, now: float) -> None:
        self._last_line_state = (self.done, self.status)
        text = self.line(now)
        if self.live:
            self.stream.write("\r\x1b[2K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self, status: str = "") -> None:
        """Emit the final state (unless a log already has exactly that line)."""
        if status:
            self.status = status
        if self.live or self._last_line_state != (self.done, self.status):
            self._emit(time.monotonic())
        if self.live:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
