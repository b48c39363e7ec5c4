"""The Class page's reads and the teacher's actions, and the Train page's assigned cell (resnet_core.runs.classroom).

Everything is read from the store on each poll, so every session (and a restarted server) sees the same room.
What a person sees of others is counts only: no run names (the CLI's `--name` may hold one), no owner ids.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

import resnet_core as rc
from explorer import identity, run_service
from explorer.training import live_runs, presets, run_history
from explorer.training.charts import RunCurves
from resnet_core.runs.classroom import CELL_DEPTHS, Assignment
from resnet_core.runs.pooling import POOLED, NetPool, RunRows, pool_nets
from resnet_core.runs.schema import ACTIVE, Run

ASSIGNED_STATE = "train_assigned"  # the cell last put into this session's Train widgets
PAPER_COLUMN = "paper, Table 6 (%)"
HOUR_S = 3600


@dataclass(frozen=True)
class ClassView:
    """The room's runs that pass the filters, pooled per net, and the asking person's own curves among them."""

    nets: list[NetPool]
    yours: list[tuple[bool, RunCurves]]  # (residual, curves) of the asking person's pooled runs


def recent_runs(hours: float) -> list[Run]:
    """Training runs created in the last `hours`, oldest first (the shipped references are not the room's)."""
    since = time.time() - hours * HOUR_S
    return [run for run in run_service.store().runs() if run.created >= since]


def by_frequency(values: list) -> list:
    """Distinct values, the most common first: a filter's choices, its default the room's usual one."""
    return [value for value, _ in Counter(values).most_common()]


def filter_choices(recent: list[Run]) -> tuple[list[str], list[int]]:
    """The datasets and the lengths (iterations) of `recent`, each most common first."""
    return by_frequency([run.data for run in recent]), by_frequency([run.recipe["iterations"] for run in recent])


def dataset_label(source: str) -> str:
    return Path(source).name if "/" in source else source


def class_view(recent: list[Run], dataset: str, iterations: int) -> ClassView:
    """The runs of `recent` on `dataset` of `iterations`, pooled per net; this person's pooled runs as curves of
    their own, labelled "you"."""
    chosen = [run.id for run in recent if run.data == dataset and run.recipe["iterations"] == iterations]
    states = live_runs.poll(chosen)
    me = identity.user_id()
    yours = [(state.run.spec["residual"], RunCurves(state.run.id, f"you: {run_service.net_label(state.run.model)}",
                                                    state.curves.train, state.curves.test))
             for state in states if state.run.owner == me and state.run.status in POOLED]
    rows = [RunRows(state.run, state.curves.train, state.curves.test) for state in states]
    return ClassView(pool_nets(rows, me), yours)


def paper_error(model: str) -> float | None:
    """Table 6's CIFAR-10 test error (%) of a paper net; None for plain and custom nets."""
    try:
        return run_history.table6_error(rc.get_spec(model))
    except ValueError:  # a custom net's name
        return None


def summary_table(nets: list[NetPool], dataset: str | None) -> pd.DataFrame:
    """One line per net: people, runs by status, the pooled final test error (beside Table 6's where the runs are on
    CIFAR-10's own images, run_history.beside_table6), and "you"."""
    paper = run_history.beside_table6(dataset)
    rows = [{"net": run_service.net_label(net.model), "people": net.people, "runs": net.runs, **net.counts,
             "final test error, median (%)": run_history.percent(pd.Series(net.final).median() if net.final else None),
             "lowest (%)": run_history.percent(min(net.final, default=None)),
             "highest (%)": run_history.percent(max(net.final, default=None)),
             **({PAPER_COLUMN: paper_error(net.model)} if paper else {}),
             "you": "you" if net.yours else ""} for net in nets]
    return pd.DataFrame(rows).astype({PAPER_COLUMN: float} if paper else {})


# ------------------------------------------------------------------------------------------- assignments
def your_cell() -> Assignment | None:
    """This person's Fig. 6 cell, if the teacher handed one out to them (the teacher has none): a read."""
    return None if identity.is_teacher() else run_service.store().assignment(identity.user_id())


def cell_length(iterations: int | None) -> int:
    """A cell's length: the teacher's, else the Train page's default."""
    return iterations or presets.length(presets.DEFAULT)


def cell_line(depth: int, iterations: int | None) -> str:
    return f"Your part of Fig. 6: plain-{depth} and ResNet-{depth}, {cell_length(iterations):,} iterations"


def apply_assignment() -> str | None:
    """On the Train page: give this person a cell if the teacher is handing them out, preselect its pair and
    length once per cell (their own changes then stay), and return the line that says so; None without one. The
    teacher gets no cell."""
    if identity.is_teacher():
        return None
    assignment = run_service.store().assign(identity.user_id())
    if assignment is None:
        return None
    iterations = cell_length(assignment.iterations)
    state = st.session_state
    if state.get(ASSIGNED_STATE) != [assignment.depth, iterations]:
        state[ASSIGNED_STATE] = [assignment.depth, iterations]
        state.update(train_nets=list(assignment.nets), train_length_iterations=iterations)
        if state.get("train_unit", "iterations") != "iterations":  # unset, the widget starts there by itself
            state["train_unit"] = "iterations"
    return cell_line(assignment.depth, iterations)


def cells_handed_out() -> tuple[bool, int | None, dict[int, int]]:
    """(whether cells are handed out, their length or None for the default, depth -> people given it)."""
    handing_out, iterations = run_service.store().lesson_iterations()
    return handing_out, iterations, run_service.store().assigned_depths()


def _teacher_only(action: str) -> tuple[bool, str] | None:
    if not identity.is_teacher():
        return False, f"Only the teacher can {action}."
    return None


def hand_out(iterations: int | None) -> tuple[bool, str]:
    """Start handing out cells (or change their length); (done, one line for the teacher)."""
    if refused := _teacher_only("hand out cells"):
        return refused
    run_service.store().hand_out(iterations)
    return True, (f"Handing out cells of {cell_length(iterations):,} iterations, in turn over depths "
                  f"{', '.join(map(str, CELL_DEPTHS))}.")


def stop_handing_out() -> tuple[bool, str]:
    if refused := _teacher_only("stop handing out cells"):
        return refused
    run_service.store().stop_handing_out()
    return True, "No more cells are handed out; those given are kept until you reset them."


def reset_assignments() -> tuple[bool, str]:
    if refused := _teacher_only("reset the assignments"):
        return refused
    forgotten = run_service.store().reset_assignments()
    return True, f"{forgotten} assignments forgotten; the next person gets depth {CELL_DEPTHS[0]} again."


def active_choices() -> dict[int, str]:
    """Queued and running runs for the teacher's cancel list: `#12 plain-44 (running)`, oldest first."""
    return {run.id: f"#{run.id} {run_service.net_label(run.model)} on {dataset_label(run.data)} ({run.status})"
            for run in run_service.store().runs() if run.status in ACTIVE}


def cancel(run_id: int) -> tuple[bool, str]:
    """The teacher cancels anyone's run (explorer.run_service.act lets only the teacher past other people's)."""
    if refused := _teacher_only("cancel other people's runs"):
        return refused
    return run_service.act("cancel", run_id)
