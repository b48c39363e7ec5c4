"""Runs: every training run in the store, from this app or the CLI; overlay curves, download, delete."""
import streamlit as st

from explorer import run_service
from explorer.training import live_runs, run_history, views
from explorer.setup import setup_page
from explorer.url_state import IN_URL

setup_page("Runs", ":material/history:")
st.title(":material/history: Runs")
st.caption("Every run in the data folder, whether started here or with `python -m resnet_core train` (or `segment "
           "train`: a net that labels pixels, with its mIoU). Errors are the latest recorded; the paper's error shows "
           "beside runs of its full recipe (Table 6 on CIFAR-10, top-1 and top-5 of Table 3 for ImageNet nets).")

for problem in run_service.reference_problems():  # the page goes on with the references that are there
    st.warning(problem, icon=":material/warning:")
for run_id, problem in run_history.damaged().items():  # reported, never fatal: the other runs still show
    warning, button = st.columns([5, 1], vertical_alignment="center")
    warning.warning(problem, icon=":material/warning:")
    button.button(f"Delete run {run_id}", key=f"runs_delete_damaged_{run_id}", on_click=views.delete_run,
                  args=(run_id,), icon=":material/delete:")
labels = run_history.choices()
if all(run_history.is_reference(run_id) for run_id in labels):
    st.info("No runs yet: start one on the Train page or with `python -m resnet_core train`. The shipped reference "
            "nets below (status *reference*: read-only) show what a longer run reaches.")
if not labels:
    st.stop()


@st.fragment(run_every=2)
def overview() -> None:
    # placeholder: a number that is missing (no paper number, no test yet) is an empty cell, not "None".
    st.dataframe(run_history.history(), hide_index=True, width="stretch", placeholder="", column_config={
        "id": st.column_config.NumberColumn("run", format="%d"),
        "name": st.column_config.TextColumn(help="The run's name: `--name` on the command line, else NET on DATA."),
        "train error (%)": st.column_config.NumberColumn(
            format="%.2f", help="Smoothed over about 50 iterations, as the thin curves."),
        "test error (%)": st.column_config.NumberColumn(
            format="%.2f", help="A segmentation run's (a net that labels every pixel of a scene): its pixel error."),
        "mIoU (%)": st.column_config.NumberColumn(
            format="%.2f", help="Segmentation runs: the mean intersection over union of the classes on the test "
                                "scenes, at the latest test point; the Pixels page shows each class's."),
        "paper top-1 (%)": st.column_config.NumberColumn(
            format="%.2f", help="The paper's error for runs of its full recipe: Table 6 on CIFAR-10 (one run; "
                                "ResNet-110: best of 5; 64k iterations of 128, lr 0.1), Table 3 (10-crop) for "
                                "ImageNet nets."),
        "paper top-5 (%)": st.column_config.NumberColumn(format="%.2f", help="Table 3 (10-crop), ImageNet nets."),
        # After the errors: a whole recipe line is wide, and the numbers are what a person compares first.
        "recipe": st.column_config.TextColumn(width="medium", help="The recipe the run trained with; select a "
                                                                   "cell to read all of it."),
        "machine": st.column_config.TextColumn(help="The machine it trains or last trained on: a cluster's worker, "
                                                    "else the host name; empty until it starts."),
        "reason": st.column_config.TextColumn("why it stopped", width="large")})
    # A default, not a value put in st.session_state: a fragment's rerun drops a widget value set that way.
    chosen = st.multiselect("Overlay the curves of", list(labels), default=list(labels)[:2], key="runs_overlay",
                            format_func=labels.get, bind=IN_URL)
    views.curves(live_runs.poll(chosen), key="runs")


overview()

st.subheader("One run")
run_id = st.selectbox("Run", list(labels), key="runs_selected", format_func=labels.get, bind=IN_URL)
csv, checkpoint, delete = st.columns(3, vertical_alignment="bottom")
csv.download_button("Metrics (CSV)", lambda: run_history.metrics_csv(run_id), file_name=f"run-{run_id}-metrics.csv",
                    mime="text/csv", key="runs_csv", on_click="ignore", icon=":material/download:")
path = run_history.checkpoint_path(run_id)
checkpoint.download_button("Checkpoint (.safetensors)", lambda: path.read_bytes(),
                           file_name=f"run-{run_id}.safetensors",
                           mime="application/octet-stream", key="runs_checkpoint", on_click="ignore",
                           icon=":material/download:", disabled=path is None,
                           help="The latest checkpoint: weights, optimizer state and the run's spec and recipe."
                           if path else "This run has saved no checkpoint yet.")
with delete:
    read_only = run_history.is_reference(run_id)
    confirmed = st.checkbox(f"Yes, delete run {run_id} and its checkpoints", key="runs_confirm_delete",
                            disabled=read_only)
    st.button("Delete run", key="runs_delete", disabled=read_only or not confirmed,
              on_click=views.delete_run, args=(run_id,), icon=":material/delete:", type="primary",
              help="A shipped reference run is read-only." if read_only else None)
