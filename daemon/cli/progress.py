"""Progress bars on a terminal (rich): imported only when stdout is one."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

Advance = Callable[[int], None]
Factory = Callable[[str, int | None], Advance]


class _TimeLeft(ProgressColumn):
    """``ETA 0:01:23`` for a phase with a known total; nothing for one without."""

    def __init__(self) -> None:
        super().__init__()
        self._remaining = TimeRemainingColumn()

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("")
        return Text("ETA ") + self._remaining.render(task)


def _count_text(done: int, total: int | None) -> str:
    return f"{done:,} of {total:,}" if total is not None else f"{done:,}"


def start_progress(console: Console) -> tuple[Progress, Factory]:
    """A started rich Progress on ``console`` and a factory of bars, one per phase.

    Each bar shows done of total, rate and time left when the total is known
    (exports), done and rate otherwise.
    """
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[count]}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        _TimeLeft(),
        console=console,
        transient=False,
    )
    progress.start()

    def factory(description: str, total: int | None) -> Advance:
        task = progress.add_task(description, total=total, count=_count_text(0, total), rate="")

        def advance(n: int) -> None:
            progress.advance(task, n)
            state = progress.tasks[task]
            speed = state.speed
            progress.update(
                task,
                count=_count_text(int(state.completed), total),
                rate=f"{speed:,.0f}/s" if speed else "",
            )

        return advance

    return progress, factory
