"""Progress bars for long work: shown on an interactive terminal, silent (and free) otherwise."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_EVERY = 1000  # records between bar refreshes, so the bar costs nothing per record


@contextmanager
def progress(description: str, total: int | None = None, every: int = _EVERY) -> Iterator[Callable[[], None]]:
    """Yield a ``tick()`` to call once per item; draws a rich progress bar on stderr when it is a TTY."""
    if not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    count = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total)

        def tick() -> None:
            nonlocal count
            count += 1
            if count % every == 0:
                bar.update(task, completed=count)

        yield tick
        bar.update(task, completed=count)
