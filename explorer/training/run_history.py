"""The Runs page's reads: every run of the store as one table (one snapshot), run labels, a run's files."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from explorer.run_service import model_label, status_text, store
from explorer.training.live_runs import duration_text, metric_frame
from resnet_core import NetSpec, Recipe, paper_facts, paper_recipe
from resnet_core.explain import catalog
from resnet_core.runs import dispatch
from resnet_core.runs.schema import ACTIVE, TRAINING_KINDS, Run


def beside_table6(source: str) -> bool:
    """Whether Table 6's errors belong beside runs on `source`: CIFAR-10's own images only. The JPEG copy costs the
    same weights about ten points (docs/REFERENCE_NETS.md), so runs on a copy are compared within the copy."""
    return source == "cifar10"


def _paper_errors(run: Run) -> tuple[float | None, float | None]:
    """The paper's (top-1, top-5) error (%) for a paper net trained with its full recipe: Table 6 on CIFAR-10 (no
    top-5), Table 3 (10-crop) for an ImageNet net of 1,000 classes; (None, None) for any other run (a segmentation
    run's included: its backbone's spec is no classifier's result)."""
    if run.kind != "train":
        return None, None
    spec = NetSpec.from_dict(run.spec)
    # How often it was tested changes nothing it learns.
    if Recipe.from_dict({**run.recipe, "eval_interval": None}) != paper_recipe(spec):
        return None, None
    if spec.family == "cifar":
        return (table6_error(spec) if beside_table6(run.data) else None), None
    facts = {fact.quantity: fact.value for fact in paper_facts(spec) if fact.table == "Table 3"}
    return facts.get("ImageNet top-1 error"), facts.get("ImageNet top-5 error")


def table6_error(spec: NetSpec) -> float | None:
    """Table 6's CIFAR-10 test error (%) of a paper net; None for the others (plain nets have only Fig. 6's curves)."""
    return next((fact.value for fact in paper_facts(spec) if fact.quantity == "CIFAR-10 test error"), None)


def history() -> pd.DataFrame:
    """Every run in the store that trained a net, newest first: the columns of the Runs page (errors in %). A
    segmentation run's errors are its pixel errors, and its mIoU has a column of its own (empty for a classifier)."""
    db = store()
    positions = dispatch.queue_positions(db)
    rows = []
    for run, summary in reversed(db.runs_and_summaries(references=True, kinds=TRAINING_KINDS)):
        end = run.ended if run.status not in ACTIVE else time.time()
        # The smoothed value, as the curves show it: one batch's error of a short run is often exactly 0.
        last_train = db.metrics(run.id, "train", after_iteration=summary["iterations_done"] - 1)
        rows.append({
            "id": run.id, "name": run.name, "status": status_text(db, run, positions), "net": model_label(run),
            "dataset": run.data,
            "iterations": summary["iterations_done"],
            "train error (%)": percent(last_train[-1]["smoothed_error"] if last_train else None),
            "test error (%)": percent(summary["test_error"]),
            "mIoU (%)": percent(summary["test_miou"]),
            **dict(zip(("paper top-1 (%)", "paper top-5 (%)"), _paper_errors(run))),
            "recipe": Recipe.from_dict(run.recipe).describe(),
            "duration": duration_text(end - run.started if run.started else None),
            "device": f"{run.device} · {run.precision}",
            # Which of a cluster's workers it trained on (or last did); empty for a run no executor has taken yet.
            "machine": run.node or "", "reason": run.error or ""})
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).astype({"train error (%)": float, "test error (%)": float, "mIoU (%)": float,
                                      "paper top-1 (%)": float, "paper top-5 (%)": float})


def choices() -> dict[int, str]:
    """Run id -> `#3 ResNet-8 on synthetic` (`#4 FCN · ResNet-8 on synthetic` for a segmentation run), newest first.
    No status: a link carries the label (url_state), and a run's label must still match once it has finished; the
    table above gives the status."""
    return {run.id: f"{run.name} (read-only)" if run.reference else f"#{run.id} {model_label(run)} on {run.data}"
            for run in reversed(store().runs(references=True, kinds=TRAINING_KINDS))}


def damaged() -> dict[int, str]:
    """Run id -> why its record in the store cannot be read."""
    return store().damaged_runs()


def percent(value: float | None) -> float:
    """A fraction as a percentage for a table; NaN (an empty cell) for None."""
    return float("nan") if value is None else 100 * float(value)


def metrics_csv(run_id: int) -> bytes:
    """Every metric row of a run, as CSV (fractions for errors, nats for losses)."""
    return metric_frame(store().metrics(run_id)).to_csv(index=False).encode()


def is_reference(run_id: int) -> bool:
    return bool(store().reference_of(run_id))


def checkpoint_path(run_id: int) -> Path | None:
    """The run's latest checkpoint; for a reference run, its shipped model file."""
    run = store().run(run_id)
    if run.reference:
        try:
            return catalog.reference(run.reference).path
        except catalog.ReferenceError:  # reported at the top of the page
            return None
    latest = store().latest_checkpoint(run_id)
    return latest[1] if latest and latest[1].is_file() else None
