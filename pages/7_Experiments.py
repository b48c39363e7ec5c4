"""Experiments: why residual nets work. A lesion study, the loss landscape and shattered gradients, each plain
against residual, on the reference nets or any trained run."""
import json

import streamlit as st

from explorer import model_widgets, plots, run_service
from explorer.experiments import charts, studies
from explorer.setup import setup_page
from explorer.url_state import IN_URL

setup_page("Experiments", ":material/science:")
st.title(":material/science: Experiments")
st.caption("The paper shows *that* shortcuts help; three later results show *why*. Each runs here on a plain net "
           "and its residual twin (by default the 56-layer reference pair, trained with the same recipe).")

EXPLAIN = {
    "lesion": "Delete one block of a trained net at test time (a residual block keeps its shortcut; a plain block "
              "becomes the identity, or its shortcut where the width changes) and measure the test error; then "
              "delete k random blocks at once. Veit, Wilber & Belongie (2016) found that a ResNet degrades "
              "gracefully, as if it were an ensemble of shallower paths, while a plain net collapses to chance for "
              "almost any deletion. Look for the blue line staying near its intact error and the red one near 90 %.",
    "landscape": "Move the trained weights along one or two random directions, each filter scaled to the norm of "
                 "the weights' filter, and measure the training loss. Li et al. (2018, Fig. 5) found the ResNet-56 "
                 "surface smooth and nearly convex around its minimum and plain-56's chaotic. Look for the width "
                 "and the shape of the basin around α = 0.",
    "shattering": "At initialisation, take the gradient of an output with respect to the input at 256 points on a "
                  "line through image space. Balduzzi et al. (2017) found that in deep plain nets neighbouring "
                  "gradients become unrelated (white noise) while residual nets keep them correlated (brown noise). "
                  "Look for the red autocorrelation falling towards 0 with depth and the blue one staying high.",
}


def pickers(kind: str) -> tuple[list[str], str]:
    """The two models (plain and residual by default) and the dataset to probe them on."""
    choices = studies.model_choices()
    left, right, data_column = st.columns([2, 2, 2])
    with left:
        plain = model_widgets.model_picker("Plain net", f"{kind}_plain", studies.DEFAULT_PAIR[0], choices)
    with right:
        residual = model_widgets.model_picker("Residual net", f"{kind}_residual", studies.DEFAULT_PAIR[1], choices)
    with data_column:
        default = studies.default_data(residual)
        options = list(studies.DATASETS)
        source = st.radio("Dataset", options, format_func=studies.DATASETS.get, key=f"{kind}_data", bind=IN_URL,
                          index=options.index(default) if default in options else options.index("folder"))
        if source == "folder":
            source = st.text_input("Image folder", value=default if default not in options else "",
                                   key=f"{kind}_folder", bind=IN_URL)
    return [plain, residual], source


def cards_and_downloads(kind: str, states: list[studies.ExperimentState]) -> None:
    for state in states:
        text, button = st.columns([5, 1], vertical_alignment="center")
        text.markdown(f"**#{state.run.id} {state.label}** on {state.run.data} · {state.status} · "
                      f"{len(state.results)} steps measured")
        if state.can_cancel:
            button.button("Cancel", key=f"{kind}_cancel_{state.run.id}", icon=":material/stop:",
                          on_click=lambda run_id=state.run.id: st.toast(run_service.act("cancel", run_id)[1]))
        if state.run.error and state.status in ("failed", "interrupted"):
            st.error(state.run.error)
    if states:
        csv, raw = st.columns(2)
        csv.download_button("Results (CSV)", studies.results_csv(states), file_name=f"{kind}.csv",
                            mime="text/csv", key=f"{kind}_csv", icon=":material/download:", on_click="ignore")
        raw.download_button("Results (JSON)", studies.results_json(states), file_name=f"{kind}.json",
                            mime="application/json", key=f"{kind}_json", icon=":material/download:",
                            on_click="ignore")


def live_results(kind: str, caption: str) -> None:
    """This person's experiments of `kind`, their figures filled in as the jobs write steps (every 2 s)."""
    @st.fragment(run_every=2)
    def show() -> None:
        states = studies.states(studies.shown(kind))
        cards_and_downloads(kind, states)
        for key, figure in studies.figures(kind, states):
            plots.show(figure, key, key.removesuffix("_chart").replace("_", "-"))
        st.caption(caption)

    show()


def start_button(kind: str, models: list[str], data: str, **settings) -> None:
    if time_here := studies.time_here(kind, models, **settings):
        st.caption(f":material/timer: {time_here}")
    if st.button("Start", key=f"{kind}_start", type="primary", icon=":material/play_arrow:"):
        try:
            studies.remember(kind, studies.start(kind, models, data, **settings))
        except ValueError as error:  # UserError and its kin: one sentence each
            st.error(str(error))


lesion_tab, landscape_tab, shattering_tab = st.tabs(["Lesion study", "Loss landscape", "Shattered gradients"],
                                                    key="experiments_tab", bind=IN_URL)

with lesion_tab:
    st.markdown(EXPLAIN["lesion"])
    models, data = pickers("lesion")
    images, random_k, draws, seed = st.columns(4)
    settings = dict(images=images.number_input("Test images", 100, 10_000, 1000, step=100, key="lesion_images",
                                               bind=IN_URL),
                    random_k=random_k.number_input("Random deletions up to k", 0, 20, 10, key="lesion_k", bind=IN_URL),
                    draws=draws.number_input("Draws per k", 1, 50, 5, key="lesion_draws", bind=IN_URL),
                    seed=seed.number_input("Seed", 0, 2**31 - 1, 0, key="lesion_seed", bind=IN_URL))
    start_button("lesion", models, data, **settings)

    live_results("lesion",
                 "Veit et al. (ResNet-110 and a plain net on the original CIFAR-10): deleting any single "
                 "non-downsampling block of the ResNet barely changes its error, a downsampling block costs more, "
                 "and error rises smoothly with k; the plain net is at chance after any deletion. The reference "
                 "nets (12 epochs, JPEG copy, 1,000 test images, three seeds): ResNet-56's median error goes from "
                 "22–24 % to 28–30 % for one deleted block, plain-56's from 54–56 % to 88–89 % "
                 "(docs/EXPERIMENTS.md).")

with landscape_tab:
    st.markdown(EXPLAIN["landscape"])
    models, data = pickers("landscape")
    dims, points, span, images, seed = st.columns(5)
    surface = dims.radio("Shape", (1, 2), format_func={1: "1-D slice", 2: "2-D surface"}.get, key="landscape_dims",
                         bind=IN_URL)
    settings = dict(dims=surface,
                    points=points.number_input("Points per axis", 3, 101, 41 if surface == 1 else 15,
                                               key=f"landscape_points_{surface}", bind=IN_URL),
                    span=span.number_input("Span", 0.05, 5.0, 1.0, step=0.25, key="landscape_span", bind=IN_URL),
                    images=images.number_input("Training images", 100, 10_000, 1000 if surface == 1 else 500,
                                               step=100, key=f"landscape_images_{surface}", bind=IN_URL),
                    seed=seed.number_input("Seed", 0, 2**31 - 1, 0, key="landscape_seed", bind=IN_URL))
    start_button("landscape", models, data, **settings)

    live_results("landscape",
                 "Li et al. (Fig. 5; ResNet-56 and plain-56 trained 300 epochs on the original CIFAR-10): the "
                 "ResNet's surface is a wide convex bowl, plain-56's is chaotic with sharp walls. The reference nets "
                 "trained 12 epochs on a JPEG copy; their measured numbers are in docs/EXPERIMENTS.md.")

with shattering_tab:
    st.markdown(EXPLAIN["shattering"])
    depths_column, seed_column = st.columns([3, 1])
    depths = depths_column.multiselect("Depths", [8, 14, 20, 32, 44, 56, 110], default=[8, 20, 56, 110],
                                       key="shattering_depths", bind=IN_URL)
    seed = seed_column.number_input("Seed", 0, 2**31 - 1, 0, key="shattering_seed", bind=IN_URL)
    if depths and st.toggle("Measure (a few seconds per net)", key="shattering_measure"):
        points = studies.shattering_points(tuple(sorted(depths)), 256, int(seed))
        plots.show(charts.shattering_depth_figure(points), "shattering_depth", "shattering-depth")
        deepest = max(depths)
        plots.show(charts.shattering_gradient_figure(
            {f"{point['model']}": point["gradients"] for point in points if point["depth"] in (min(depths), deepest)}),
            "shattering_lines", "shattering-gradients")
        table = studies.shattering_table(points)
        st.dataframe(table, hide_index=True)
        csv, raw = st.columns(2)
        csv.download_button("Results (CSV)", table.to_csv(index=False).encode(), file_name="shattering.csv",
                            mime="text/csv", key="shattering_csv", icon=":material/download:", on_click="ignore")
        raw.download_button("Results (JSON, with the gradients)", json.dumps(points, indent=2).encode(),
                            file_name="shattering.json", mime="application/json", key="shattering_json",
                            icon=":material/download:", on_click="ignore")
        st.caption("Balduzzi et al.: the gradients of feedforward nets look like white noise as depth grows "
                   "(autocorrelation decaying exponentially with depth), residual nets' like brown noise (decaying "
                   "as about 1/√depth). Measured numbers per seed: docs/EXPERIMENTS.md.")
