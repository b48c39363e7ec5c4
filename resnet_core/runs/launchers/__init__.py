"""Launchers: how a claimed job comes to execute somewhere. The dispatcher (`runs.dispatch`) decides which job runs
and records it in the store; a launcher only starts the job's executor (`runs.executor`) and, for the dispatcher,
tells what it can about the job's process. Every launcher executes the same executor, which records through the
same store, so a launcher knows nothing of metrics, checkpoints or statuses.

`launchers.local` starts local processes (the default); `launchers.cluster` submits Ray tasks to a cluster.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..schema import Run
    from ..store import Store


class Launcher(Protocol):
    resumes_lost_jobs: bool  # a job whose executor was lost goes back to the queue rather than stay interrupted
    launches: bool  # False where another process launches this deployment's jobs (a cluster's dispatcher)

    def launch(self, store: Store, run: Run) -> None:
        """Start executing `run`, which a dispatcher has just claimed (`starting`), and record what it started
        (`Store.launched`); an exception fails the run's start with its message."""

    def alive(self, run: Run) -> bool | None:
        """Whether the job's executor is still there: False when it is known gone (a dead local process), None
        when this launcher cannot tell from here (the job's lease then tells)."""

    def last_words(self, store: Store, run: Run) -> str:
        """The last thing the job's executor said, e.g. an exception's message, to explain why it is gone; "" when
        nothing can be read."""

    def upkeep(self, store: Store) -> int | None:
        """What the deployment's dispatcher does every tick before it dispatches; the slots jobs may fill now, or
        None for the server's setting (RESNET_EXPLORER_MAX_RUNS)."""

    def hurry(self, run: Run) -> bool | None:
        """Make a job whose cancel was requested in the store notice it now rather than at its next lease renewal
        (a local process gets SIGTERM); False when its executor turned out to be gone, None where it cannot tell."""


class ElsewhereLauncher:
    """What every process but a cluster's dispatcher has for a launcher: the jobs' tasks belong to that dispatcher
    (a Ray task dies with the driver that submitted it), so this one launches nothing and tells nothing of their
    executors; their leases do, and a cancel reaches them through the store."""

    resumes_lost_jobs = True
    launches = False

    def launch(self, store: Store, run: Run) -> None:
        raise RuntimeError("Only the cluster's dispatcher launches jobs (python -m resnet_core dispatch).")

    def alive(self, run: Run) -> bool | None:
        return None

    def last_words(self, store: Store, run: Run) -> str:
        return ""

    def upkeep(self, store: Store) -> int | None:
        return 0

    def hurry(self, run: Run) -> bool | None:
        return None


def default_launcher(*, dispatcher: bool = False) -> Launcher:
    """The launcher of this deployment: local processes; with $RESNET_EXPLORER_RAY_ADDRESS, Ray tasks, but only in
    the deployment's one dispatcher process (`dispatcher`): every other process (a page, the CLI) only queues and
    leaves launching to it."""
    from ..settings import ray_address

    address = ray_address()
    if address is None:
        from .local import LocalLauncher

        return LocalLauncher()
    if not dispatcher:
        return ElsewhereLauncher()
    from .cluster import RayLauncher

    return RayLauncher(address)
