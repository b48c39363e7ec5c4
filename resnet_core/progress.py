"""The live progress line of the long commands (train, reproduce, lesion, landscape, shattering) on stderr:

     42%|████████▍           | 126/300 it [00:12, 1,050 img/s, ETA 00:17, err 0.412, test err 0.380]

It is drawn only on a terminal and without --quiet, and what the commands print goes to stdout either way, so
their output, --json and logs are the same with the line as without it.
"""
from __future__ import annotations

import sys
from typing import Any, Callable

from tqdm import tqdm

# tqdm's own remaining time counts only the steps; the callers that know better (training counts its test passes
# too) give theirs, so the ETA is drawn here in the postfix and tqdm's `{remaining}` is left out.
BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} {unit} [{elapsed}{postfix}]"


class ProgressLine:
    """One progress line counting `unit`s (iterations, steps) to `total`, which `update` may give later."""

    def __init__(self, unit: str, *, total: int | None = None, quiet: bool = False, label: str = "") -> None:
        # disable=None: tqdm draws nothing when stderr is not a terminal.
        self._bar = tqdm(total=total, desc=label, unit=unit, file=sys.stderr, disable=True if quiet else None,
                         bar_format=BAR_FORMAT, dynamic_ncols=True, miniters=0)  # miniters=0: redraw on a new postfix
        self._started = False

    @property
    def shown(self) -> bool:
        """Whether the line is drawn (a terminal, no --quiet)."""
        return not self._bar.disable

    def update(self, done: int, *, total: int | None = None, images_per_s: float | None = None,
               eta_s: float | None = None, error: float | None = None, test_error: float | None = None) -> None:
        """`done` units so far; the line is redrawn at most every 0.1 s. Without `eta_s` the ETA is tqdm's, from the
        rate of units; `error` is the work's own latest (e.g. smoothed training error), `test_error` a test pass's."""
        bar = self._bar
        if bar.disable:
            return
        if total is not None:
            bar.total = total
        if not self._started:  # a resumed run starts part way: that jump is not speed
            bar.n = bar.last_print_n = done
            self._started = True
        if eta_s is None:
            rate = bar.format_dict["rate"]
            eta_s = (bar.total - done) / rate if rate and bar.total else None
        fields = [f"{images_per_s:,.0f} img/s" if images_per_s is not None else None,
                  f"ETA {tqdm.format_interval(eta_s)}" if eta_s is not None else "ETA ?",
                  f"err {error:.3f}" if error is not None else None,
                  f"test err {test_error:.3f}" if test_error is not None else None]
        bar.set_postfix_str(", ".join(field for field in fields if field), refresh=False)
        bar.update(done - bar.n)

    def write(self, text: str) -> None:
        """Print `text` as a line of the command's output (stdout), above the progress line."""
        self._bar.write(text)
        sys.stdout.flush()  # stdout into a pipe or file is block-buffered: the line shows now, not at the end

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> ProgressLine:
        return self

    def __exit__(self, error_type, *_) -> None:
        self._bar.leave = error_type is None  # a failure's message stands alone, not under a half-drawn line
        self.close()


def show_training(line: ProgressLine) -> Callable[[Any], None]:
    """An executor's `on_event` for a run that trains (`training.train`'s records, or `pixels.segment_train`'s, whose
    fields carry the same names): a training record moves `line`, a test or validation record prints its error and
    loss (and a segmenter's mIoU) above it; other records (a checkpoint due, the end) pass."""
    test_error = None

    def show(record) -> None:
        nonlocal test_error
        kind = getattr(record, "kind", None)
        if kind == "train":
            line.update(record.iteration, images_per_s=record.images_per_s, eta_s=record.eta_s,
                        error=record.smoothed_error, test_error=test_error)
        elif kind in ("test", "validation"):
            test_error = record.error
            miou = getattr(record, "miou", None)
            line.write(f"iteration {record.iteration}: {kind} error {record.error:.4f}, loss {record.loss:.4f}"
                       + (f", mIoU {miou:.4f}" if miou is not None else ""))

    return show
