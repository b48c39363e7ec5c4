"""The `reproduce` and `db` subcommands of `python -m resnet_core`: queue a paper table's runs (and, on a terminal,
follow them), or report them; migrate the run store's database, or copy a data folder's runs into another database.

    python -m resnet_core reproduce table6 --nets plain56 resnet56 --iterations 2000
    python -m resnet_core reproduce table6 --report
    python -m resnet_core db upgrade
    python -m resnet_core db copy --to postgresql+psycopg://teacher@db.school/resnet --home ~/.resnet-explorer

The parser is built without importing torch (every command builds it); the handler imports `runs.reproduce`.
"""
from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from .. import arguments
from ..errors import UserError
from ..json_output import json_text

if TYPE_CHECKING:
    from ..progress import ProgressLine
    from .store import Store


def add_reproduce_command(commands, with_home) -> None:
    """Add `reproduce`, with its handler as the `handler` default, to `commands` (argparse subparsers)."""
    from ..training.data import SOURCE_HELP
    from .reproduce import TABLES

    reproduce = with_home(commands.add_parser(
        "reproduce", help="queue a table's runs with the paper's recipe, or report them beside the paper's numbers",
        description="Queue one run per net of TABLE through the job queue (the app's Runs page shows them), with the "
                    "paper's recipe exactly (§4.2 for table6: lr 0.1, ÷10 at 32k and 48k of 64k iterations), its "
                    "milestones scaled to --iterations; on a terminal it then follows them with a progress line until "
                    "they end (Ctrl-C stops following, not the runs). --report prints the table so far instead."))
    reproduce.add_argument("table", metavar="TABLE", help=f"the paper's table: {', '.join(TABLES)}")
    reproduce.add_argument("--nets", nargs="+", metavar="NET", help="only these nets of the table (default: all; "
                           + "; ".join(f"{name}: {' '.join(table.nets)}" for name, table in TABLES.items()) + ")")
    reproduce.add_argument("--iterations", type=int, metavar="N", help="train for N batches (default: the paper's "
                           "64000; a CPU refuses a table it would take over 2 hours for and suggests an N)")
    reproduce.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    reproduce.add_argument("--data", metavar="SOURCE", help=f"{SOURCE_HELP} (default: cifar10, the paper's)")
    reproduce.add_argument("--seed", type=arguments.seed, help="seed of every run (default 0)")
    reproduce.add_argument("--report", action="store_true", help="print net, parameters, paper error, our error, "
                           "iterations and wall time of each net's latest run, and queue nothing")
    reproduce.add_argument("--json", action="store_true", help="with --report: print a JSON list instead")
    arguments.add_quiet(reproduce)  # on a terminal, queuing follows the runs with a progress line until they end
    reproduce.set_defaults(handler=_reproduce)


def _reproduce(args: argparse.Namespace) -> int:
    from ..progress import ProgressLine
    from ..nets.specs import NetSpec
    from ..training.recipe import Recipe
    from .reproduce import DEFAULT_DATA, format_report, queue_table, report, table_estimate, table_nets
    from .store import Store

    nets = table_nets(args.table, args.nets)  # checked before the data folder is opened
    if args.report:
        queuing = [flag for flag, value in (("--iterations", args.iterations), ("--device", args.device),
                                            ("--data", args.data), ("--seed", args.seed)) if value is not None]
        if queuing:
            raise UserError(f"--report only prints what the runs recorded; drop {', '.join(queuing)}.")
        rows = report(args.table, nets, Store(args.home))
        print(json_text([row.to_dict() for row in rows]) if args.json else format_report(args.table, rows))
        return 0
    if args.json:
        raise UserError("--json goes with --report; queuing prints the run ids.")
    store = Store(args.home)
    runs = queue_table(args.table, nets, iterations=args.iterations, device=args.device,
                       data=args.data or DEFAULT_DATA, seed=args.seed or 0, store=store)
    done = {action: ", ".join(f"{run.run_id} ({run.net})" for run in runs if run.action == action)
            for action in ("queued", "resumed")}
    kept = ", ".join(f"{run.run_id} ({run.net}, {run.status})" for run in runs if run.action == "kept")
    to_train = [store.run(run.run_id) for run in runs if run.action != "kept"]
    takes = table_estimate([(NetSpec.from_dict(run.spec), Recipe.from_dict(run.recipe)) for run in to_train],
                           to_train[0].data, store) if to_train else None
    said = [f"Queued runs {done['queued']}." if done["queued"] else "Queued no new run.",
            f"Resumed runs {done['resumed']} from their last checkpoints." if done["resumed"] else "",
            f"They take {takes.describe()} (speeds from {takes.basis})." if takes else "",
            f"Kept runs {kept}: the same settings, already queued, training or done." if kept else ""]
    home = f" --home {args.home}" if args.home else ""
    print(" ".join(filter(None, said)) + f" Watch them with `python -m resnet_core runs{home}` or on the app's Runs "
          f"page; print the table with `python -m resnet_core reproduce {args.table} --report{home}`.", flush=True)
    with ProgressLine("it", quiet=args.quiet, label=args.table) as line:
        if line.shown:  # a terminal: follow the runs, which train in processes of their own
            try:
                follow_runs(store, [run.run_id for run in runs], line)
            except KeyboardInterrupt:
                line.write(f"Stopped following; the runs go on: watch them with `python -m resnet_core runs{home}`.")
    return 0


def follow_runs(store: Store, run_ids: list[int], line: ProgressLine, *, poll_s: float = 1.0) -> None:
    """Draw runs `run_ids` on `line` until all have ended, reading the store every `poll_s`: their iterations done
    over all of theirs, the summed images/s of those running, the ETA of them all (the running ones' own, then the
    waiting ones' at this server's speed, on its slots) and the latest test error. Only reads, so a watcher never
    holds up the runs' writes."""
    from ..speed import book
    from ..speed.estimate import makespan
    from .reproduce import seconds_once_started
    from .schema import ENDED, Status
    from .settings import max_concurrent_runs

    newest: dict[int, dict[str, dict]] = {}  # run id -> "train" or "test" -> its newest metric row
    pids: dict[int, int | None] = {}
    waiting_s: dict[int, float | None] = {}  # run id -> its time once started
    found, slots = book.measurements(store.home), max_concurrent_runs()
    test_error = None
    while True:
        runs = [store.run(run_id) for run_id in run_ids]
        for run in runs:
            if pids.get(run.id, run.pid) != run.pid:  # a resumed run records again what followed its checkpoint
                newest.pop(run.id, None)
            pids[run.id] = run.pid
            rows = newest.setdefault(run.id, {})
            # Per kind: a flush may carry iteration i's training row before its test row.
            seen = {kind: rows[kind]["iteration"] if kind in rows else -1 for kind in ("train", "test")}
            for row in store.metrics(run.id, after_iteration=min(seen.values())):
                kind = "train" if row["kind"] == "train" else "test"  # test or validation
                if row["iteration"] > seen[kind]:
                    rows[kind] = row
                    test_error = row["error"] if kind == "test" else test_error
        running = [newest[run.id]["train"] for run in runs
                   if run.status == Status.RUNNING and "train" in newest[run.id]]
        for run in runs:
            if run.status in (Status.QUEUED, Status.STARTING) and run.id not in waiting_s:
                waiting_s[run.id] = seconds_once_started(run, found)
        left = [row["eta_s"] for row in running] + [waiting_s[run.id] for run in runs
                                                    if run.status in (Status.QUEUED, Status.STARTING)]
        line.update(sum(latest["train"]["iteration"] for latest in newest.values() if "train" in latest),
                    total=sum(run.recipe["iterations"] for run in runs),
                    images_per_s=sum(row["images_per_s"] for row in running) if running else None,
                    eta_s=makespan(left, slots) if left and None not in left else None, test_error=test_error)
        if all(run.status in ENDED for run in runs):
            return
        time.sleep(poll_s)


def add_db_command(commands, with_home) -> None:
    """Add `db upgrade|copy`, with its handler as the `handler` default, to `commands` (argparse subparsers)."""
    db = with_home(commands.add_parser(
        "db", help="migrate the run store's database, or copy a data folder's runs into another database",
        description="upgrade: bring the database ($RESNET_EXPLORER_DATABASE_URL, else the data folder's runs.sqlite) "
                    "to the newest schema (opening it does so too). copy --to URL: copy the data folder's runs, "
                    "metrics, results, checkpoints and lesson into the database at URL, e.g. "
                    "postgresql+psycopg://USER@HOST/DATABASE; rows already there are kept, so running it twice "
                    "doubles nothing. Then set RESNET_EXPLORER_DATABASE_URL=URL for the app and every worker."))
    db.add_argument("action", choices=("upgrade", "copy"))
    db.add_argument("--to", metavar="URL", help="with copy: the database to copy into")
    db.set_defaults(handler=_db)


def _db(args: argparse.Namespace) -> int:
    from .store import Store

    if (args.action == "copy") != (args.to is not None):
        raise UserError("db copy needs --to URL, and only db copy takes it.")
    store = Store(args.home)  # opening migrates
    if args.action == "upgrade":
        print(f"The run store {store.where} is at the newest schema.")
        return 0
    from .copy import copy_store

    report = copy_store(store, args.to)
    print(f"Copied {store.where} into {report.target}: {report.describe()}.")
    return 0


def add_cluster_commands(commands, with_home) -> None:
    """Add `dispatch` and `cluster`, with their handlers as `handler` defaults, to `commands` (argparse subparsers)."""
    dispatch = with_home(commands.add_parser(
        "dispatch", help="run the deployment's dispatcher in the foreground until stopped",
        description="Hands queued runs to free slots: as local processes, or with RESNET_EXPLORER_RAY_ADDRESS as Ray "
                    "tasks on the cluster, of which this process is the driver (keep it running; the app starts one "
                    "itself when none is alive). One per deployment: a second one refuses to start."))
    dispatch.set_defaults(handler=_dispatch)
    cluster = with_home(commands.add_parser(
        "cluster", help="show the Ray cluster's machines, their slots and the runs on each",
        description="Needs RESNET_EXPLORER_RAY_ADDRESS (auto, or HOST:PORT of the Ray head). Every machine, alive or "
                    "not, its CPUs and GPUs and the runs training on it; the slots of the live machines and how many "
                    "are free (docs/SCALING.md)."))
    cluster.add_argument("--json", action="store_true", help='print {"nodes": [{"id", "address", "alive", "cpus", '
                         '"gpus", "jobs"}], "slots": N, "free": N} instead of a table')
    cluster.set_defaults(handler=_cluster)


def _dispatch(args: argparse.Namespace) -> int:
    import logging

    from .dispatch import dispatcher_lock, serve
    from .launchers import default_launcher
    from .store import Store

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store = Store(args.home)
    with dispatcher_lock(store) as mine:
        if not mine:
            raise UserError(f"Another dispatcher is already running for {store.where}; a deployment has one.")
        launcher = default_launcher(dispatcher=True)
        print(f"Dispatching the queue of {store.where}; Ctrl-C stops.", flush=True)
        try:
            serve(store, launcher)
        except KeyboardInterrupt:
            pass
    return 0


def _cluster(args: argparse.Namespace) -> int:
    from .settings import RAY_ADDRESS_VARIABLE, ray_address
    from .store import Store

    address = ray_address()
    if address is None:
        raise UserError(f"No cluster is configured: set {RAY_ADDRESS_VARIABLE} to auto or HOST:PORT of the Ray head.")
    from .launchers.cluster import cluster_state

    state = cluster_state(Store(args.home), address)
    if args.json:
        print(json_text(state))
        return 0
    print(f"{state['slots']} slots, {state['free']} free")
    print(f"{'machine':<58}  {'alive':<5}  {'CPUs':>5}  {'GPUs':>5}  runs")
    for node in state["nodes"]:
        print(f"{node['address'] + ' ' + node['id']:<58}  {'yes' if node['alive'] else 'no':<5}  {node['cpus']:>5g}  "
              f"{node['gpus']:>5g}  {', '.join(map(str, node['jobs'])) or '-'}")
    return 0
