"""The paper's tables as commands: queue a table's runs with the paper's recipe, then report them beside its numbers.

    python -m resnet_core reproduce table6 [--nets resnet20 plain20] [--iterations N]   # queue them
    python -m resnet_core reproduce table6 --report                                     # the table so far

Table 6 / Fig. 6: the plain and residual nets of depth 20 to 110 on CIFAR-10, each trained with §4.2's recipe (lr
0.1, ÷10 at 32k and 48k of 64k iterations; ResNet-110 warms up at 0.01), its milestones scaled to a shorter length
when one is asked for. The runs go through the job queue as the app's do (`admission.submit_all`), so the cap holds and
the Runs page shows them. A table's runs carry its name ("reproduce table6"); the report takes each net's latest.
Queuing a table again finishes it (runs that stopped continue) instead of training its nets twice.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Sequence

from ..errors import UserError
from ..nets.model import ResNet
from ..nets.paper import paper_facts
from ..nets.specs import NetSpec, get_spec
from ..nets.summary import count_parameters
from ..training.device import pick_device
from ..training.recipe import Recipe
from ..speed import book as speed_book
from ..speed.calibrate import calibrate
from ..speed.estimate import Estimate, estimate_planned, here
from .admission import dataset_shape, planned_runs, recorded_source, submit_all, test_images_of
from .dispatch import dispatch
from .schema import RESUMABLE, Status
from .store import Run, Store


@dataclass(frozen=True)
class PaperTable:
    nets: tuple[str, ...]
    note: str  # what the paper's numbers beside ours are


TABLES = {
    # Pairs by depth, plain first, as Fig. 6 compares them. Table 6's ResNet-1202 is not in the set: 19.4M
    # parameters, and §4.2 itself finds it worse than ResNet-110 (overfitting).
    "table6": PaperTable(
        nets=tuple(f"{kind}{depth}" for depth in (20, 32, 44, 56, 110) for kind in ("plain", "resnet")),
        note="paper: Table 6's CIFAR-10 test error (ResNet-110: the best of 5 runs, mean 6.61 ± 0.16); it has none "
             "for plain nets, which Fig. 6 shows only as curves (plain-110's above 60 %)."),
}
FULL_ITERATIONS = Recipe().iterations  # §4.2: 64k iterations
DEFAULT_DATA = "cifar10"  # the paper's Table 6 data
PAPER_QUANTITY = "CIFAR-10 test error"  # the paper fact the report sets beside ours

CPU_LIMIT_S = 2 * 3600  # a CPU run of a table past this is refused: a shorter run, or a GPU, answers sooner


def run_name(table: str) -> str:
    """The name a table's runs carry in the store, by which its report finds them."""
    return f"reproduce {table}"


def table_nets(table: str, nets: Sequence[str] | None = None) -> tuple[str, ...]:
    """The nets of `table` to queue or report: those of `nets` (each checked against the table), else all, in the
    table's order."""
    if table not in TABLES:
        raise UserError(f"Unknown table {table!r}; allowed: {', '.join(TABLES)}.")
    allowed = TABLES[table].nets
    unknown = [net for net in nets or () if net not in allowed]
    if unknown:
        raise UserError(f"Unknown net {', '.join(map(repr, unknown))} for {table}; allowed: {', '.join(allowed)}.")
    return tuple(net for net in allowed if net in nets) if nets else allowed


@dataclass(frozen=True)
class TableRun:
    """A net's run of a table after `queue_table`: `action` says what the call did with it."""

    net: str
    run_id: int
    action: str  # "queued" (new), "resumed" (from its last checkpoint) or "kept" (its own status: nothing to do)
    status: str  # the run's status as the call left it


def queue_table(table: str, nets: Sequence[str] | None = None, *, iterations: int | None = None,
                device: str | None = None, data: str = DEFAULT_DATA, seed: int = 0,
                store: Store | None = None) -> list[TableRun]:
    """Train each net of `table` (or of `nets`) once with the paper's recipe over `iterations` (default: the paper's
    64k), and start as many runs as the cap allows; what happened to each net, in the table's order.

    The command finishes a table rather than doubling it: a net whose latest run of the table with the same settings
    (recipe, data, seed, device) is waiting, training, finished or diverged is kept as it is; one that was cancelled,
    failed or interrupted is resumed from its last checkpoint; the others are queued (the new runs all or none).
    `device` defaults to CUDA when available. On a CPU a table estimated to take longer than CPU_LIMIT_S is
    refused with the estimate and a number of iterations that fits. Estimates use this server's measured speed
    (`speed`; the first one measures it, ~20 s).
    """
    nets = list(table_nets(table, nets))
    device = pick_device(device).type
    iterations = FULL_ITERATIONS if iterations is None else iterations
    store = store or Store()
    data = recorded_source(data)  # as submit_all records it, so earlier runs of a folder are found
    planned = dict(zip(nets, planned_runs(nets, data, iterations=iterations, recipe="paper")))
    dispatch(store)  # a run whose process died unseen (a reboot, an OOM kill) is marked interrupted: resumed below
    earlier = _latest_same_runs(table, planned, data, seed, device, store)
    to_train = [net for net in nets if net not in earlier or earlier[net].status in RESUMABLE]
    if device == "cpu" and to_train:
        _refuse_long_cpu_run([planned[net] for net in to_train], data, store)
    new = [net for net in to_train if net not in earlier]
    new_ids = dict(zip(new, submit_all(new, data, seed=seed, device=device, name=run_name(table), store=store,
                                       iterations=iterations, recipe="paper") if new else []))
    for net in to_train:
        if net in earlier:
            store.requeue_for_resume(earlier[net].id)
    dispatch(store)
    return [_table_run(net, new_ids, earlier, store) for net in nets]


def _latest_same_runs(table: str, planned: dict[str, tuple[NetSpec, Recipe]], data: str, seed: int, device: str,
                      store: Store) -> dict[str, Run]:
    """Per net, the latest run of `table` that trained (or trains) exactly what `planned` says."""
    latest = {}
    for run in store.runs():  # oldest first
        if run.name == run_name(table) and run.model in planned and (run.data, run.seed, run.device) == (
                data, seed, device):
            spec, recipe = planned[run.model]
            if run.spec == spec.to_dict() and Recipe.from_dict(run.recipe) == recipe:  # old rows lack newer fields
                latest[run.model] = run
    return latest


def _table_run(net: str, new_ids: dict[str, int], earlier: dict[str, Run], store: Store) -> TableRun:
    if net in new_ids:
        return TableRun(net, new_ids[net], "queued", store.run(new_ids[net]).status)
    run = earlier[net]
    return TableRun(net, run.id, "resumed" if run.status in RESUMABLE else "kept", store.run(run.id).status)


def table_estimate(planned: list[tuple[NetSpec, Recipe]], data: str, store: Store) -> Estimate:
    """How long `planned` runs (`admission.planned_runs`) take on this server, started together on its slots;
    measures the server first if it never was."""
    conditions = here()
    sizes = {"train_images": dataset_shape(data)[1], "test_images": test_images_of(data)}
    estimate = estimate_planned(planned, conditions, speed_book.measurements(store.home), **sizes)
    if estimate is None:
        calibrate(conditions, store.home)
        estimate = estimate_planned(planned, conditions, speed_book.measurements(store.home), **sizes)
    return estimate


def _refuse_long_cpu_run(planned: list[tuple[NetSpec, Recipe]], data: str, store: Store) -> None:
    estimate = table_estimate(planned, data, store)
    if estimate.seconds <= CPU_LIMIT_S:
        return
    iterations = planned[0][1].iterations
    fits = math.floor(iterations * CPU_LIMIT_S / estimate.seconds)  # the time is nearly proportional to the length
    suggested = max(1, fits // 100 * 100 if fits >= 100 else fits)
    shorter = table_estimate([(spec, recipe.shortened(iterations=suggested)) for spec, recipe in planned], data,
                             store)
    nets = f"{len(planned)} net{'s' * (len(planned) > 1)}"
    raise UserError(
        f"Training {nets} for {iterations:,} iterations would take {estimate.describe()} (speeds from "
        f"{estimate.basis}); train on a GPU (--device cuda), or pass --iterations {suggested} ("
        f"{shorter.describe()}, the paper's schedule scaled to that length).")


@dataclass(frozen=True)
class ReportRow:
    """One net of a table: the paper's number beside its latest run's. Errors are percentages, as the paper's."""

    net: str
    parameters: int
    paper_error_percent: float | None  # None: the paper prints none (plain nets appear only as Fig. 6's curves)
    our_error_percent: float | None  # the latest test error; the final one once `status` is finished
    iterations_done: int
    iterations_total: int | None
    wall_s: float | None  # from start to end, or to now while it runs
    left_s: float | None  # to its end: while it trains, its own estimate; while queued, this server's speed's
    status: str  # the run's, or "not run"
    run_id: int | None
    data: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def report(table: str, nets: Sequence[str] | None = None, store: Store | None = None) -> list[ReportRow]:
    """A row per net of `table` (or of `nets`), from the latest run that `queue_table` made for it. Only reads."""
    nets = table_nets(table, nets)
    store = store or Store()
    latest: dict[str, tuple[Run, dict]] = {}
    for run, summary in store.runs_and_summaries():  # oldest first: a later run of a net replaces an earlier one
        if run.name == run_name(table) and run.model in nets:
            latest[run.model] = (run, summary)
    now = time.time()
    found = speed_book.measurements(store.home)
    return [_row(net, *latest[net], now, found) if net in latest else _row_not_run(net) for net in nets]


def _paper_error(spec: NetSpec) -> float | None:
    return next((fact.value for fact in paper_facts(spec) if fact.quantity == PAPER_QUANTITY), None)


def _row_not_run(net: str) -> ReportRow:
    spec = get_spec(net)
    return ReportRow(net, count_parameters(ResNet(spec)), _paper_error(spec), None, 0, None, None, None, "not run",
                     None, None)


def _row(net: str, run: Run, summary: dict, now: float, found: list) -> ReportRow:
    spec = NetSpec.from_dict(run.spec)  # the run's own: e.g. 100 classes on CIFAR-100, which the paper has no row for
    error = summary["test_error"]
    wall_s = None if run.started is None else (run.ended or now) - run.started
    left_s = summary["eta_s"] if run.status != Status.QUEUED else seconds_once_started(run, found)
    return ReportRow(net, count_parameters(ResNet(spec)), _paper_error(spec), None if error is None else 100 * error,
                     summary["iterations_done"], summary["iterations_total"], wall_s, left_s, run.status, run.id,
                     run.data)


def seconds_once_started(run: Run, found: list) -> float | None:
    """A waiting run's wall time once it starts, at this server's speeds `found` (speed.book); None if unknown."""
    estimate = estimate_planned([(NetSpec.from_dict(run.spec), Recipe.from_dict(run.recipe))], here(), found,
                                train_images=dataset_shape(run.data)[1], test_images=test_images_of(run.data))
    return None if estimate is None else estimate.seconds


def format_report(table: str, rows: list[ReportRow]) -> str:
    """The report as an aligned text table, with what the paper's numbers are."""
    def percent(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}%"

    def duration(seconds: float | None) -> str:
        if seconds is None:
            return "-"
        minutes, secs = divmod(round(seconds), 60)
        return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"

    lines = [f"{'net':<10} {'params':>7} {'paper err':>9} {'our err':>8} {'iterations':>13} {'wall time':>9} "
             f"{'left':>9}  status (run, data)"]
    for row in rows:
        iterations = "-" if row.iterations_total is None else f"{row.iterations_done}/{row.iterations_total}"
        ran = "" if row.run_id is None else f" (#{row.run_id}, {row.data})"
        lines.append(f"{row.net:<10} {row.parameters / 1e6:>6.2f}M {percent(row.paper_error_percent):>9} "
                     f"{percent(row.our_error_percent):>8} {iterations:>13} {duration(row.wall_s):>9} "
                     f"{duration(row.left_s):>9}  "
                     f"{row.status}{ran}")
    lines.append(TABLES[table].note)
    lines.append("ours: the latest test error of one run per net (final once finished); left: the time to its end on "
                 "this server, from its own speed while it trains, from the server's measured speed while queued.")
    return "\n".join(lines)
