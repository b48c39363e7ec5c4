"""Render helpers shared by the Train and Runs pages: a card per run with its controls, and the live curves."""
from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from explorer import plots, run_service, speed
from explorer.training import charts, live_runs, presets
from resnet_core.pixels.jobs import KIND as SEGMENTATION
from resnet_core.runs import settings
from resnet_core.speed.estimate import describe_seconds

STATUS_ICONS = {"running": ":material/play_circle:", "finished": ":material/check_circle:",
                "cancelled": ":material/cancel:", "failed": ":material/error:", "diverged": ":material/trending_up:",
                "interrupted": ":material/pause_circle:", "stopping": ":material/hourglass_top:",
                "queued": ":material/schedule:"}


def _act(action: str, run_id: int) -> None:
    done, message = run_service.act(action, run_id)
    st.toast(message, icon=":material/check:" if done else ":material/error:")


def run_card(state: live_runs.RunState, key: str) -> None:
    """Status, progress with speed and ETA, the failure reason, and cancel/resume buttons of one run."""
    run = state.run
    with st.container(border=True):
        title, cancel, resume = st.columns([4, 1, 1], vertical_alignment="center")
        icon = STATUS_ICONS.get(state.status.split()[0], "")
        title.markdown(f"**{state.label}** on {run.data} · {icon} {state.status}")
        cancel.button("Cancel", key=f"{key}_cancel_{run.id}", disabled=not state.can_cancel, on_click=_act,
                      args=("cancel", run.id), icon=":material/stop:", width="stretch",
                      help="Stops after saving a checkpoint; resume continues from it.")
        resume.button("Resume", key=f"{key}_resume_{run.id}", disabled=not state.can_resume, on_click=_act,
                      args=("resume", run.id), icon=":material/play_arrow:", width="stretch",
                      help="Continues a cancelled or interrupted run from its last checkpoint.")
        st.progress(state.progress, text=live_runs.progress_text(state))
        if state.status.startswith("queued"):
            takes = speed.queued(run)
            st.caption(f"Waiting for a free slot: at most {settings.max_concurrent_runs()} run(s) train at a time"
                       + ("." if takes is None else f"; once started, about {describe_seconds(takes)} here."))
        if run.error and run.status in ("failed", "diverged", "interrupted"):
            st.error(run.error)


def curves(states: Sequence[live_runs.RunState], key: str) -> None:
    """Error in the paper's style, then loss and learning rate.

    Drawn empty before the first point: the browser loads Plotly (megabytes of script) while the runs start,
    instead of after their first point, which then shows a second or two sooner.
    """
    curves = [state.curves for state in states]
    if not any(len(curve.train) for curve in curves):
        st.caption("The curves appear with the first training iteration.")
    # A segmentation run's test points are its mIoU, in a figure of their own; a classifier's, its error.
    scenes = [state.curves for state in states if state.run.kind == SEGMENTATION]
    classifiers = [state.curves for state in states if state.run.kind != SEGMENTATION]
    if classifiers or not scenes:
        behind = live_runs.references_behind(list(states))
        plots.show(charts.error_figure(classifiers + behind), f"{key}_error", "training-error")
        if behind:
            st.caption(":material/timeline: Faint dotted lines: the shipped reference run of the same net on "
                       "CIFAR-10 (12 epochs on 2 CPU cores, docs/REFERENCE_NETS.md), drawn up to this run's length.")
    if scenes:
        plots.show(charts.miou_figure(scenes), f"{key}_miou", "segmentation-miou")
    plots.show(charts.loss_lr_figure(curves), f"{key}_loss", "training-loss-and-lr")


def time_here(nets: list[str], data: str, settings: dict) -> None:
    """How long Start would take on this server, and why a preset's length is what it is."""
    estimate = speed.planned(nets, data, **settings)
    if estimate is None:
        if (reason := speed.waiting_for()) == speed.MEASURING:
            _until_measured()
        elif reason:
            st.caption(f":material/timer: {reason}")
        return  # else settings that Start refuses, and says why
    line = f":material/timer: Start: {estimate.describe()} (from {estimate.basis})."
    preset = presets.matching(nets)
    if preset and settings.get("iterations") == presets.length(preset) and (reason := presets.why(preset)):
        line += f" {preset.label}: {reason}"
    st.caption(line)


@st.fragment(run_every=2)
def _until_measured() -> None:
    """Says that the speed is being measured, and reruns the page once it is (the presets' lengths change too)."""
    if speed.waiting_for() != speed.MEASURING:
        st.rerun(scope="app")
    st.caption(f":material/timer: {speed.MEASURING}")


def delete_run(run_id: int) -> None:
    """The Runs page's delete button: delete, say so, and take the confirmation back."""
    _act("delete", run_id)
    st.session_state["runs_confirm_delete"] = False


def apply_preset(preset: presets.Preset) -> None:
    """A preset button's callback: its nets and its length, in iterations."""
    state = st.session_state
    state["train_nets"] = list(preset.nets)
    state["train_unit"] = "iterations"
    state["train_length_iterations"] = presets.length(preset)


def restore_train_settings(run_ids: list[int], nets: list[str], datasets: list[str]) -> None:
    """A new session of the Train page opened on runs (a reload, a shared link) shows the settings they were
    started with, so pressing Start again repeats them instead of starting the defaults."""
    if not run_ids or "train_nets" in st.session_state:
        return
    existing = {run.id: run for run in run_service.store().runs()}
    shown = [existing[run_id] for run_id in run_ids if run_id in existing]
    if not shown:
        return
    first = shown[0]
    state = st.session_state
    state["train_nets"] = [run.model for run in shown if run.model in nets][:2] or state.get("train_nets", [])
    state["train_data"] = first.data if first.data in datasets else "folder"
    if state["train_data"] == "folder":
        state["train_folder"] = first.data
    state["train_length_iterations"] = first.recipe["iterations"]
    state["train_batch"] = first.recipe["batch_size"]
    if first.recipe["eval_interval"]:  # None: once per epoch, which the page's field cannot say
        state["train_eval_every"] = first.recipe["eval_interval"]
    state["train_lr"] = first.recipe["lr"]
    state["train_seed"] = first.seed

