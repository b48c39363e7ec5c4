"""The cluster launcher: each job a Ray Core task on a machine of a Ray cluster, executing the same executor as a local
process and recording through the same store (PostgreSQL, which every machine reaches).

    RESNET_EXPLORER_RAY_ADDRESS=auto python -m resnet_core dispatch    # the deployment's one dispatcher

Admission stays in the store: a job becomes a task only when the dispatcher has claimed a free slot for it, so
nothing waits in Ray's own queue, where the store could neither see nor order it. A task dies with the driver that
submitted it, so only the long-lived dispatcher process launches (`default_launcher` gives every other process of
a cluster deployment an `ElsewhereLauncher`). Resources are declared per task: `num_cpus` the run's threads, and on
a GPU a share of one (`RESNET_EXPLORER_GPU_SHARE`; the run caps its GPU memory to it). A job whose task failed
because its machine was lost goes back to the queue and resumes from its last checkpoint on another machine; a
cancel is the store's row, and a task that has not stopped CANCEL_GRACE_S after it is cancelled by Ray, forcibly.
"""
from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

from ..schema import Run
from ..settings import (CHECKPOINTS_VARIABLE, DATABASE_VARIABLE, LEASE_VARIABLE, NODE_VARIABLE, gpu_share,
                        threads_per_run)
from ..store import Store

logger = logging.getLogger(__name__)

CANCEL_GRACE_S = 60.0  # a task still running this long after its cancel was asked for is cancelled by force
NAMESPACE = "resnet-explorer"
FORWARDED = (DATABASE_VARIABLE, CHECKPOINTS_VARIABLE, LEASE_VARIABLE)  # what every worker must see as the driver does


def node_name(node_id: str, address: str) -> str:
    """A machine as runs record it: its address and the start of Ray's node id (two nodes may share an address)."""
    return f"{address}/{node_id[:8]}"


class RayLauncher:
    """Launches jobs as Ray tasks on the cluster at `address`, with `threads` CPUs each (default: the run's threads
    setting). This process becomes the cluster's driver: keep it alive while its tasks run."""

    resumes_lost_jobs = True  # a machine lost is not a reason to give up a run: it continues on another
    launches = True

    def __init__(self, address: str, threads: int | None = None) -> None:
        import ray

        self.ray = ray
        self.threads = threads_per_run() if threads is None else threads
        self.gpu_share = gpu_share()
        if not ray.is_initialized():
            env = {name: os.environ[name] for name in FORWARDED if os.environ.get(name)}
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False,
                     runtime_env={"env_vars": env})
        self._task = ray.remote(execute_on_worker)
        self.tasks: dict[int, object] = {}  # run id -> the ObjectRef of its task, while this driver knows it

    # ----------------------------------------------------------------------------------- the Launcher protocol
    def launch(self, store: Store, run: Run) -> None:
        on_gpu = run.device == "cuda"
        self.tasks[run.id] = self._task.options(
            num_cpus=self.threads, num_gpus=self.gpu_share if on_gpu else 0, max_retries=0,
            name=f"resnet-explorer run {run.id}").remote(run.id, self.threads, self.gpu_share if on_gpu else None)

    def alive(self, run: Run) -> bool | None:
        task = self.tasks.get(run.id)
        if task is None:
            return None  # submitted by an earlier dispatcher: its lease tells
        ready, _ = self.ray.wait([task], timeout=0)
        return not ready  # a task that returned or failed no longer executes the job

    def last_words(self, store: Store, run: Run) -> str:
        task = self.tasks.get(run.id)
        if task is None:
            return ""
        try:
            self.ray.get(task, timeout=0)
        except Exception as error:  # the task's failure is what is asked for: a lost node, a crashed worker
            first_line = next(iter(str(error).strip().splitlines()), "")
            return f"{type(error).__name__}: {first_line[:300]}"
        return ""

    def hurry(self, run: Run) -> bool | None:
        return None  # its lease renewal reads the request within seconds; `enforce_cancels` forces it later

    # ----------------------------------------------------------------------------------- the dispatcher's upkeep
    def upkeep(self, store: Store) -> int | None:
        """Record the machines and their slots for the app, force the cancels that were not heeded; the slots."""
        slots, machines = self.capacity()
        store.record_nodes(machines)
        self.enforce_cancels([run for run in store.active_runs() if isinstance(run, Run)])
        return slots

    def enforce_cancels(self, active: list[Run]) -> None:
        """Cancel, by force, the tasks of jobs whose cancel was asked for over CANCEL_GRACE_S ago."""
        for run in active:
            task = self.tasks.get(run.id)
            if task is not None and run.cancel_requested and time.time() - run.cancel_requested > CANCEL_GRACE_S:
                logger.warning("Run %s did not stop within %g s of its cancel; Ray cancels its task.", run.id,
                               CANCEL_GRACE_S)
                self.ray.cancel(task, force=True)

    def capacity(self) -> tuple[int, list[dict]]:
        """(runs the live machines can train at once, each machine as the store's nodes table records it)."""
        machines = [dict(name=node_name(node["NodeID"], node["NodeManagerAddress"]), alive=int(node["Alive"]),
                         cpus=cpus, gpus=gpus, slots=slots_of(cpus, gpus, self.threads, self.gpu_share))
                    for node, cpus, gpus in _resources(self.ray.nodes())]
        return sum(machine["slots"] for machine in machines if machine["alive"]), machines


def slots_of(cpus: float, gpus: float, threads: int, gpu_share: float) -> int:
    """Runs a machine trains at once: its CPUs by the run's threads, and on a GPU machine also its GPUs by the share
    each run takes."""
    slots = int(cpus // threads)
    if gpus:
        slots = min(slots, int(math.floor(gpus / gpu_share + 1e-9)))
    return slots


def _resources(nodes: list[dict]) -> list[tuple[dict, float, float]]:
    """Each of Ray's nodes with its CPUs and GPUs (none on a dead one)."""
    found = []
    for node in nodes:
        resources = node.get("Resources", {}) if node["Alive"] else {}
        found.append((node, resources.get("CPU", 0.0), resources.get("GPU", 0.0)))
    return found


# ------------------------------------------------------------------------------------------- a task's own side
def execute_on_worker(run_id: int, threads: int, gpu_share: float | None) -> str:
    """A job on a cluster's machine: take it, execute it through the store, say how it ended. Its data folder (for
    datasets and checkpoint files) is this machine's own, $RESNET_EXPLORER_HOME or the default; nothing is shared
    with the dispatcher's machine but the database."""
    import ray
    import torch

    from ...errors import UserError
    from ..admission import SOURCE_SIZES
    from ..executor import execute
    from ..job import take

    context = ray.get_runtime_context()
    os.environ[NODE_VARIABLE] = node_name(context.get_node_id(), ray.util.get_node_ip_address())
    torch.set_num_threads(threads)
    if gpu_share is not None and torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(gpu_share)  # its share, so a neighbour's run cannot starve it
    store = Store()
    take(store, run_id)
    run = store.run(run_id)
    if run.data not in SOURCE_SIZES and not Path(run.data).is_dir():
        message = (f"The image folder {run.data} does not exist on {os.environ[NODE_VARIABLE]}; every machine of "
                   "the cluster needs it at the same path.")
        store.finish(run_id, "failed", message)
        raise UserError(message)
    return str(execute(store, run_id))


def recorded_capacity(store: Store) -> tuple[int, int]:
    """(slots, machines with a slot) of the live machines as the cluster's dispatcher last recorded them in the store:
    what a page counts without connecting to the cluster."""
    machines = [node for node in store.nodes() if node["alive"] and node["slots"]]
    return sum(node["slots"] for node in machines), len(machines)


# ------------------------------------------------------------------------------------------- what the app reads
def cluster_state(store: Store, address: str) -> dict:
    """The cluster at `address` as `python -m resnet_core cluster --json` prints it: every machine (its Ray node id,
    address, alive or not, CPUs, GPUs, the runs training on it, from the store), the slots of the live ones and how
    many are free."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
    training: dict[str, list[int]] = {}
    for run in store.active_runs():
        if isinstance(run, Run) and run.status == "running" and run.node:
            training.setdefault(run.node, []).append(run.id)
    threads, share = threads_per_run(), gpu_share()
    nodes, slots = [], 0
    for node, cpus, gpus in _resources(ray.nodes()):
        if node["Alive"]:
            slots += slots_of(cpus, gpus, threads, share)
        nodes.append({"id": node["NodeID"], "address": node["NodeManagerAddress"], "alive": node["Alive"],
                      "cpus": cpus, "gpus": gpus,
                      "jobs": training.get(node_name(node["NodeID"], node["NodeManagerAddress"]), [])})
    busy = sum(len(jobs) for jobs in training.values())
    return {"nodes": nodes, "slots": slots, "free": max(slots - busy, 0)}
