"""Train: a plain net and its residual twin side by side, live, until the degradation problem shows (Fig. 1, 6)."""
import streamlit as st

from explorer import run_service, speed, url_state
from explorer.classroom import lesson
from explorer.training import live_runs, presets, views
from explorer.setup import setup_page
from explorer.url_state import IN_URL

NETS = [f"{kind}{depth}" for depth in (8, 14, 20, 32, 44, 56, 110) for kind in ("plain", "resnet")]
DATASETS = {"cifar10": "CIFAR-10", "synthetic": "Synthetic (no download)", "folder": "Image folder"}

setup_page("Train", ":material/model_training:")
run_service.warm_up()
st.title(":material/model_training: Train")
st.caption("Train a plain net and its residual twin at once and watch the plain one's training error stay higher: "
           "the degradation problem (Fig. 1, Fig. 6). Runs are separate processes; closing this tab stops nothing.")

shown_runs = live_runs.shown_run_ids("train_runs")
views.restore_train_settings(shown_runs, NETS, list(DATASETS))
if assignment := lesson.apply_assignment():  # the teacher's cell for this person, preselected below
    st.info(assignment, icon=":material/school:")
with st.expander("Settings", expanded=True):
    st.write(f"Presets: the paper's comparisons, each as long as fits {speed.budget_text()} on this server (its "
             "runs at once), and never shorter than the length its effect was measured to need")
    for row in (presets.PRESETS[:3], presets.PRESETS[3:]):
        for column, preset in zip(st.columns(len(row)), row):
            column.button(preset.label, key=preset.key, width="stretch", on_click=views.apply_preset,
                          args=(preset,))
    # Its first value lives in the session, not in `default`: the presets set it there too, and a widget given
    # both warns in the server log.
    st.session_state.setdefault("train_nets", list(presets.DEFAULT.nets))
    nets = st.multiselect("Networks (one or two)", NETS, max_selections=2, key="train_nets", bind=IN_URL,
                          format_func=run_service.net_label)
    left, middle, right = st.columns(3)
    source = left.radio("Dataset", list(DATASETS), format_func=DATASETS.get, key="train_data", bind=IN_URL,
                        horizontal=True)
    folder = left.text_input("Image folder", key="train_folder", bind=IN_URL, disabled=source != "folder",
                             placeholder="/path/with/train/<class>/ and test/<class>/ images")
    if source == "cifar10" and (note := run_service.cifar10_note()):
        left.caption(note)
    unit = middle.segmented_control("Length in", ("iterations", "epochs"), key="train_unit", bind=IN_URL,
                                    default="iterations", required=True)
    first_length = presets.length(presets.DEFAULT) if unit == "iterations" else 1
    length = middle.number_input(f"Number of {unit}", 1, 64_000, first_length, key=f"train_length_{unit}",
                                 bind=IN_URL)
    eval_every = middle.number_input("Test every (iterations)", 1, 64_000, None, key="train_eval_every", bind=IN_URL,
                                     placeholder=run_service.AUTO_TEST_POINTS,
                                     help="Each test point saves a checkpoint and evaluates the test set: in a short run, "
                                          "2,000 of its images (an even stride) and all of them at the end.")
    batch_size = right.number_input("Batch (images)", 1, 1024, 128, key="train_batch", bind=IN_URL,
                                    help="The paper trains CIFAR nets with 128 (§4.2).")
    lr = right.number_input("Learning rate", 1e-5, 10.0, 0.1, format="%g", key="train_lr", bind=IN_URL,
                            help="The peak rate. §4.2 trains at 0.1 and divides it by 10 at 50% and 75% of 64k "
                                 "iterations; a shorter run ramps up to it, then down to 0 (the short-run recipe).")
    seed = right.number_input("Seed", 0, 2**31 - 1, 0, key="train_seed", bind=IN_URL)
    device = right.selectbox("Device", run_service.devices(), key="train_device", bind=IN_URL)
    st.caption(run_service.limits_text())

settings = dict(batch_size=int(batch_size), lr=float(lr), eval_every=eval_every and int(eval_every),
                **{unit: int(length)})
data = folder if source == "folder" else source
if nets and (recipe := run_service.recipe_line(nets, data, **settings)):
    st.caption(f":material/tune: {recipe}.")
    views.time_here(nets, data, settings)
if st.button("Start", type="primary", key="train_start", icon=":material/play_arrow:", disabled=not nets):
    try:
        run_ids = run_service.start(nets, data, seed=int(seed), device=device, **settings)
    except ValueError as error:
        st.error(str(error))
    else:
        url_state.remember_ids("train_runs", "runs", run_ids)


@st.fragment(run_every=1)
def live(run_ids: list[int]) -> None:
    states = live_runs.poll(run_ids)
    if not states:
        st.info("Pick the nets and press Start; the curves of the runs appear here.")
        return
    for state in states:
        views.run_card(state, key="train")
    views.curves(states, key="train")
    if preset := presets.matching([state.run.model for state in states]):
        st.caption(f":material/visibility: {preset.look_for}")


live(live_runs.shown_run_ids("train_runs"))
