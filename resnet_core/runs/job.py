"""A job's own process, as the queue starts one for a run or an experiment it claimed (`runs.launchers.local`):

    python -m resnet_core.runs.job --run-id ID --home HOME --threads N

It confirms the job is its own, executes it (`runs.executor`), prints how it ended and the run id last, and starts
the next queued job, its slot being free. SIGTERM or SIGINT stops the job cleanly. Exit status 0; 2 on a user error
(one line on stderr) or a diverged run; 1 on a bug.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import torch

from ..errors import UserError
from ..shutdown import exit_now, stop_requests
from .executor import Outcome, execute
from .dispatch import dispatch
from .schema import Status
from .store import Store


def configure_logging() -> None:
    # A job's process has its stderr in the run's log file (runs.launchers.local): its warnings stay with the run.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def take(store: Store, run_id: int) -> None:
    """Confirm the job a dispatcher launched this process for; a UserError when it no longer waits for this one."""
    if not store.confirm(run_id, os.getpid()):
        raise UserError(f"Run {run_id} is no longer waiting for this process: it was cancelled, has ended, or another "
                        "process took it.")


def report(store: Store, run_id: int, outcome: Outcome) -> int:
    """Say how the job ended, start the next queued job, and print the run id last; the exit status."""
    print(f"run {run_id} {outcome}", flush=True)
    dispatch(store)  # this job's slot is free: start the next queued one, even if no page is open
    print(run_id)
    if outcome.status == Status.DIVERGED:
        print(f"error: {outcome.message}", file=sys.stderr)
        return 2
    return 0


def run(home: Path, run_id: int, threads: int) -> int:
    """Take, execute and report job `run_id` of the data folder `home` on `threads` torch threads; the exit status."""
    configure_logging()
    torch.set_num_threads(threads)
    try:
        store = Store(home)
        take(store, run_id)
        with stop_requests() as should_stop:
            outcome = execute(store, run_id, should_stop=should_stop)
        return report(store, run_id, outcome)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resnet_core.runs.job",
                                     description="Execute a job the queue started this process for.")
    parser.add_argument("--run-id", type=int, required=True, metavar="RUN_ID")
    parser.add_argument("--home", type=Path, required=True, metavar="DIR", help="the data folder")
    parser.add_argument("--threads", type=int, default=1, metavar="N", help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    return run(args.home, args.run_id, args.threads)


if __name__ == "__main__":
    exit_now(main())
