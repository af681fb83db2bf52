"""One progress line on stderr for long work: reading a log, then the stages of a fit.

A fit of a large log spends its first minute reading and counting, then vectorises, builds the
label tree and trains; one ``ProgressLine`` follows all of it, redrawn in place (at most five
times a second) from the first line read to the trained model, and ended with a newline.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from xrcomplete import _core

T = TypeVar("T")
_REDRAW_SECONDS = 0.2
_BAR = 30


def bar(done: int, total: int) -> str:
    """``[#####-----]`` for ``done`` of ``total``."""
    filled = _BAR * min(done, total) // total if total > 0 else 0
    return "[" + "#" * filled + "-" * (_BAR - filled) + "]"


class ProgressLine:
    """A status line on stderr: shown always with ``progress=True``, only when stderr is a
    terminal with ``"auto"``, never with ``False``. ``update`` redraws it (rate-limited unless
    ``force``), ``close`` ends it with a newline; both do nothing when it is not shown. As a
    context manager it is closed on the way out, by an error too."""

    def __init__(self, progress: bool | str) -> None:
        if progress not in (True, False, "auto"):
            raise ValueError(f'progress must be True, False or "auto", got {progress!r}')
        self.shown = progress is True or (progress == "auto" and sys.stderr.isatty())
        self.start = time.perf_counter()
        self._last_draw = -1.0
        self._width = 0
        self._open = False

    def update(self, text: str, force: bool = False) -> None:
        if not self.shown:
            return
        now = time.perf_counter()
        if not force and now - self._last_draw < _REDRAW_SECONDS:
            return
        self._last_draw = now
        line = f"xrcomplete: {text}, {now - self.start:.1f} s"
        # Spaces over what a longer previous text left (no terminal escapes: logs stay clean).
        sys.stderr.write("\r" + line.ljust(self._width))
        sys.stderr.flush()
        self._width = len(line)
        self._open = True

    def __enter__(self) -> ProgressLine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, text: str | None = None) -> None:
        """Draws ``text`` (if given) and ends the line."""
        if text is not None:
            self.update(text, force=True)
        if self.shown and self._open:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._open = False


def fit_stage(counter: _core.ProgressCounter) -> str:
    """The text of a fit's progress: its stage, with a bar of nodes while training."""
    stage = counter.stage
    if stage == "training":
        return f"training {bar(counter.done, counter.total)} {counter.done}/{counter.total} nodes"
    return stage


def with_progress(
    train: Callable[[_core.ProgressCounter], T],
    progress: bool | str,
    line: ProgressLine | None = None,
) -> T:
    """Runs ``train(counter)`` (a core call that releases the GIL and reports its stage and the
    nodes trained in ``counter``) on a worker thread, drawing its progress on ``line`` (a new one
    for ``progress`` when none is given), which is closed when the fit ends. Errors reach the
    caller."""
    line = line if line is not None else ProgressLine(progress)
    counter = _core.ProgressCounter()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["model"] = train(counter)
        except BaseException as err:  # re-raised on the caller's thread
            outcome["error"] = err

    worker = threading.Thread(target=run, name="xrcomplete-fit", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(_REDRAW_SECONDS)
        line.update(fit_stage(counter))
    if "error" in outcome:
        line.close()
        raise outcome["error"]
    done = counter.total
    line.close(f"trained {bar(done, done)} {done}/{done} nodes")
    result: T = outcome["model"]
    return result
