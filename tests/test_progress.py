"""rbda.progress: a live bar in a terminal, periodic plain lines in a log."""

from __future__ import annotations

import io

from rbda.progress import Progress


def test_log_mode_prints_lines_and_no_duplicate_final_line():
    out = io.StringIO()
    progress = Progress(100, "convert", unit="stamps", log_every=0.0, stream=out, live=False)
    progress.update(50)
    progress.update(100, force=True)
    progress.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("convert: 50/100 stamps ( 50.0%)")
    assert "ETA" in lines[0]
    assert lines[1].startswith("convert: 100/100 stamps (100.0%)")


def test_log_mode_throttles_to_log_every():
    out = io.StringIO()
    progress = Progress(1000, "train", log_every=3600.0, stream=out, live=False)
    for done in range(1, 1001):
        progress.update(done)
    progress.close(status="done")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # the first update, then the final state on close
    assert lines[-1].endswith("| done")


def test_live_mode_rewrites_one_line():
    out = io.StringIO()
    progress = Progress(None, "read", stream=out, live=True)
    progress.update(10, force=True)
    progress.close()
    text = out.getvalue()
    assert text.startswith("\r\x1b[2K") and text.endswith("\n")
    assert "read: 10 items" in text
