"""A warm training process: imports torch and the training code, waits until the job queue hands it a run,
trains that run exactly as `python -m resnet_core train --run-id ID` would, and exits.

Importing torch, torch._dynamo (the optimizer's first construction pulls it in) and the training modules takes
~3 s of a ~5 s start on this 2-core machine; a spare pays that before Start is pressed. One run per process, so
no state leaks from one run into the next. Started by `resnet_core.jobs`:

    python -m resnet_core.spare_worker HOME
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

POLL_S = 0.05


def serve_one_run(home: Path, idle_s: float) -> int:
    import torch._dynamo  # noqa: F401  (the slow imports are the point of a spare)

    from . import cli, train  # noqa: F401
    from .jobs import LOG_NAME, spare_paths

    spare, order = spare_paths(home, os.getpid())
    deadline = time.monotonic() + idle_s
    while not order.exists():
        if not home.is_dir():  # a deleted data folder (a test's) has no runs to hand out
            return 0
        if time.monotonic() > deadline:
            try:  # retire, unless a dispatcher claimed this spare at this very moment
                os.rename(spare, spare.with_suffix(".retired"))
            except FileNotFoundError:
                deadline = float("inf")
                continue
            spare.with_suffix(".retired").unlink(missing_ok=True)
            return 0
        time.sleep(POLL_S)
    assignment = json.loads(order.read_text())
    order.unlink()
    run_id = assignment["run_id"]
    with open(home / "runs" / str(run_id) / LOG_NAME, "ab") as log:  # from here on, this process is the run's
        os.dup2(log.fileno(), sys.stdout.fileno())
        os.dup2(log.fileno(), sys.stderr.fileno())
    return cli.main(["train", "--run-id", str(run_id), "--home", str(home), "--threads", str(assignment["threads"])])


if __name__ == "__main__":
    from .cli import exit_now
    from .jobs import SPARE_IDLE_S

    exit_now(serve_one_run(Path(sys.argv[1]), SPARE_IDLE_S))
