"""Experiments page helpers: start a lesion study or a loss landscape as queued jobs for this person, read their
results so far from the store, and run the (seconds-long) shattering measurement in the page, cached.

A job's results are the store's steps of its run (`resnet_core.explain.jobs`):
lesion: {"type": "baseline", "images", "error"}, {"type": "block", "block", "downsampling", "error"}, {"type":
"random", "k", "draw", "blocks", "error"}; landscape: {"type": "axes", "alphas", "betas"}, {"type": "row", "row",
"loss", "error"}.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from explorer import identity, models, run_service, speed, url_state
from explorer.experiments import charts
from resnet_core.explain import jobs
from resnet_core.explain.shattering import shattering
from resnet_core.runs.schema import ACTIVE, Run

DEFAULT_PAIR = ("reference:plain56", "reference:resnet56")  # the degradation pair, same recipe and parameters
DATASETS = {"cifar10": "CIFAR-10 (downloaded once)", "synthetic": "Synthetic (instant; trained nets are only "
            "guessing on it)", "folder": "Image folder"}


def model_choices() -> dict[str, str]:
    """The CIFAR nets that can be probed: the reference and demo nets, finished runs (ImageNet nets cannot)."""
    return {choice: label for choice, label in models.model_choices().items() if not choice.startswith("imagenet:")}


def default_data(choice: str) -> str:
    """Where `choice`'s dataset can be read here without a download, else CIFAR-10 (downloaded once by the job)."""
    try:
        return models.local_dataset_source(models.classifier(choice), choice) or "cifar10"
    except ValueError:  # a damaged file: the page says so where it loads it
        return "cifar10"


def start(kind: str, choices: list[str], data: str, **settings) -> list[int]:
    """Queue one `kind` experiment per model for this person (their run limit applies); their run ids."""
    return jobs.submit_experiments(kind, choices, data, owner=identity.user_id(), store=run_service.store(),
                                   limits=run_service.server_limits(), **settings)


def time_here(kind: str, choices: list[str], **settings) -> str | None:
    """How long Start would take on this server, in one line; or why that is not known yet; None for a model that
    cannot be loaded (the page says so where it loads it)."""
    try:
        specs = [models.classifier(choice).model.spec for choice in choices]
    except ValueError:
        return None
    estimate = speed.experiments(kind, specs, **settings)
    if estimate is None:
        return speed.waiting_for(speed.experiment_conditions())
    return f"Start: {estimate.describe()} (from {estimate.basis})."


@dataclass(frozen=True)
class ExperimentState:
    run: Run
    label: str  # the model choice's label
    status: str  # as the Train page says it: "queued #2", "running", "finished", …
    results: list[dict]

    @property
    def can_cancel(self) -> bool:
        return self.run.status in ACTIVE and self.status != "stopping"


def shown(kind: str) -> list[int]:
    """The experiments of `kind` this page shows: those its URL names (?lesion=5,6), else the ones this session
    started, else this person's latest pair (a tab opened again finds them)."""
    key = f"experiments_{kind}"
    if key not in st.session_state and kind not in st.query_params:
        owner = identity.user_id()
        mine = [run.id for run in run_service.store().experiments()
                if run.owner == owner and run.experiment["kind"] == kind]
        st.session_state[key] = mine[-2:]
    return url_state.remembered_ids(key, kind)


def remember(kind: str, run_ids: list[int]) -> None:
    url_state.remember_ids(f"experiments_{kind}", kind, run_ids)


def states(run_ids: list[int]) -> list[ExperimentState]:
    """The experiments that still exist, with their results so far: reads only."""
    db = run_service.store()
    existing = {run.id: run for run in db.experiments()}
    positions = {run_id: place for place, run_id in enumerate(db.queued_ids(), start=1)}
    return [ExperimentState(existing[run_id], short_label(existing[run_id].experiment["model"]),
                            run_service.status_text(db, existing[run_id], positions), db.results(run_id))
            for run_id in run_ids if run_id in existing]


def short_label(model: str) -> str:
    """A legend's name for an experiment's model: `ResNet-56 reference`, `ResNet-20 demo`, `run 3`, a file name."""
    kind, _, name = model.partition(":")
    if kind == "reference":
        return f"{run_service.net_label(name)} reference"
    if kind == "demo":
        return f"{run_service.net_label(name)} demo"
    return f"run {model}" if model.isdigit() else Path(model).name


def lesion_series(states_: list[ExperimentState]) -> tuple[dict, dict]:
    """(label -> {"baseline", "blocks"}, label -> random draws) for the figures."""
    blocks, random = {}, {}
    for state in states_:
        baseline = next((step["error"] for step in state.results if step["type"] == "baseline"), None)
        blocks[state.label] = {"baseline": baseline,
                               "blocks": [step for step in state.results if step["type"] == "block"]}
        by_k: dict[int, list[float]] = {}
        for step in state.results:
            if step["type"] == "random":
                by_k.setdefault(step["k"], []).append(step["error"])
        random[state.label] = [{"k": k, "errors": errors} for k, errors in by_k.items()]
    return blocks, {label: draws for label, draws in random.items() if draws}


def landscape_series(states_: list[ExperimentState]) -> tuple[dict, dict]:
    """(label -> 1-D {"alphas", "loss"}, label -> 2-D {"alphas", "betas", "rows"}) for the figures."""
    slices, surfaces = {}, {}
    for state in states_:
        axes = next((step for step in state.results if step["type"] == "axes"), None)
        if axes is None:
            continue
        rows = {step["row"]: step["loss"] for step in state.results if step["type"] == "row"}
        if axes["betas"] is None:
            slices[state.label] = {"alphas": axes["alphas"], "loss": rows.get(0, [])}
        else:
            surfaces[state.label] = {"alphas": axes["alphas"], "betas": axes["betas"], "rows": rows}
    return slices, surfaces


def figures(kind: str, states_: list[ExperimentState]) -> list[tuple[str, object]]:
    """(widget key, Plotly figure) of what `kind`'s experiments have measured so far."""
    if kind == "lesion":
        blocks, random = lesion_series(states_)
        return ([("lesion_blocks_chart", charts.lesion_blocks_figure(blocks))]
                if any(series["blocks"] for series in blocks.values()) else []) + \
            ([("lesion_k_chart", charts.lesion_k_figure(random))] if random else [])
    slices, surfaces = landscape_series(states_)
    return ([("landscape_1d_chart", charts.landscape_1d_figure(slices))]
            if any(series["loss"] for series in slices.values()) else []) + \
        ([("landscape_2d_chart", charts.landscape_2d_figure(surfaces))] if surfaces else [])


def results_json(states_: list[ExperimentState]) -> bytes:
    """Every step of every shown experiment, with its model and settings, for download."""
    return json.dumps([{"run": state.run.id, "model": state.run.experiment["model"], "data": state.run.data,
                        "settings": state.run.experiment, "status": state.status, "results": state.results}
                       for state in states_], indent=2).encode()


def results_csv(states_: list[ExperimentState]) -> bytes:
    """One row per measured value (lesion: block or k; landscape: point), for download."""
    rows = []
    for state in states_:
        for step in state.results:
            base = {"run": state.run.id, "model": state.run.experiment["model"], "type": step["type"]}
            if step["type"] == "row":
                rows += [{**base, "row": step["row"], "point": index, "loss": loss, "error": error}
                         for index, (loss, error) in enumerate(zip(step["loss"], step["error"]))]
            elif step["type"] == "random":
                rows.append({**base, "k": step["k"], "draw": step["draw"], "blocks": " ".join(step["blocks"]),
                             "error": step["error"]})
            elif step["type"] != "axes":
                rows.append({**base, **{key: value for key, value in step.items() if key != "type"}})
    return pd.DataFrame(rows).to_csv(index=False).encode()


@st.cache_data(max_entries=8, show_spinner="Measuring gradients at initialisation…")
def shattering_points(depths: tuple[int, ...], points: int, seed: int) -> list[dict]:
    """Each net's lag-1 autocorrelation, its gradient along the line and its autocorrelation by lag."""
    return [{**point.to_dict(), "gradients": point.gradients, "autocorrelation": point.autocorrelation}
            for point in shattering(list(depths), points=points, seed=seed)]


def shattering_table(points: list[dict]) -> pd.DataFrame:
    """Model, depth and lag-1 autocorrelation per net: what `python -m resnet_core shattering --json` prints."""
    return pd.DataFrame([{key: point[key] for key in ("model", "depth", "lag1_autocorrelation")} for point in points])
