"""The `reproduce` and `db` subcommands of `python -m resnet_core`: queue a paper table's runs, or report them;
migrate the run store's database, or copy a data folder's runs into another database.

    python -m resnet_core reproduce table6 --nets plain56 resnet56 --iterations 2000
    python -m resnet_core reproduce table6 --report
    python -m resnet_core db upgrade
    python -m resnet_core db copy --to postgresql+psycopg://teacher@db.school/resnet --home ~/.resnet-explorer

The parser is built without importing torch (every command builds it); the handler imports `runs.reproduce`.
"""
from __future__ import annotations

import argparse

from .. import arguments
from ..errors import UserError
from ..json_output import json_text


def add_reproduce_command(commands, with_home) -> None:
    """Add `reproduce`, with its handler as the `handler` default, to `commands` (argparse subparsers)."""
    from ..training.data import SOURCE_HELP
    from .reproduce import TABLES

    reproduce = with_home(commands.add_parser(
        "reproduce", help="queue a table's runs with the paper's recipe, or report them beside the paper's numbers",
        description="Queue one run per net of TABLE through the job queue (the app's Runs page shows them), with the "
                    "paper's recipe exactly (§4.2 for table6: lr 0.1, ÷10 at 32k and 48k of 64k iterations), its "
                    "milestones scaled to --iterations. --report prints the table so far instead."))
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
    reproduce.set_defaults(handler=_reproduce)


def _reproduce(args: argparse.Namespace) -> int:
    from .reproduce import DEFAULT_DATA, format_report, queue_table, report, table_nets
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
    runs = queue_table(args.table, nets, iterations=args.iterations, device=args.device,
                       data=args.data or DEFAULT_DATA, seed=args.seed or 0, store=Store(args.home))
    done = {action: ", ".join(f"{run.run_id} ({run.net})" for run in runs if run.action == action)
            for action in ("queued", "resumed")}
    kept = ", ".join(f"{run.run_id} ({run.net}, {run.status})" for run in runs if run.action == "kept")
    said = [f"Queued runs {done['queued']}." if done["queued"] else "Queued no new run.",
            f"Resumed runs {done['resumed']} from their last checkpoints." if done["resumed"] else "",
            f"Kept runs {kept}: the same settings, already queued, training or done." if kept else ""]
    home = f" --home {args.home}" if args.home else ""
    print(" ".join(filter(None, said)) + f" Watch them with `python -m resnet_core runs{home}` or on the app's Runs "
          f"page; print the table with `python -m resnet_core reproduce {args.table} --report{home}`.")
    return 0


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
