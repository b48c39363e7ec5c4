"""Inside the network: layer responses (Fig. 7), gradients through depth, and where a model goes wrong."""
import streamlit as st

from explorer import explain_charts, model_widgets, models, plots
from explorer.inside import measurements
from explorer.setup import setup_page
from explorer.url_state import IN_URL

setup_page("Inside", ":material/biotech:")
st.title(":material/biotech: Inside the network")
st.caption("Do residual nets keep their layer responses small (§4.2, Fig. 7)? Do gradients still reach the first "
           "layers of a deep plain net? And which test images does a model get most confidently wrong?")

st.header("Layer responses (Fig. 7)")
trained_depths, problems = measurements.trained_depths()
for problem in problems:  # a reference file missing or damaged: named, and the others are shown
    st.warning(problem, icon=":material/warning:")
left, right = st.columns([1, 3], gap="large")
with left:
    state = st.radio("Networks", list(explain_charts.STATE_LABELS), index=1 if trained_depths else 0,
                     key="inside_state", bind=IN_URL,
                     format_func={"init": "at initialisation",
                                  "trained": "trained (the reference nets, 20 and 56 layers)"}.get)
    depth = st.selectbox("Depth", measurements.INIT_DEPTHS, key="inside_depth", disabled=state == "trained",
                         bind=IN_URL, help="The trained reference nets have 20 and 56 layers, shown side by side; "
                                           "at initialisation any of the paper's depths.")
depths = trained_depths if state == "trained" else (depth,)
probe = measurements.probe()
with right:
    if not depths:
        st.info("No trained reference net can be read here (see above); pick *at initialisation*.")
    for column, shown in zip(st.columns(max(len(depths), 1)), depths):
        with column:
            plots.show(explain_charts.layer_response_figure(measurements.layer_responses(state, shown), shown),
                       f"inside_fig7_{shown}", f"fig7-layer-responses-{state}-{shown}")
source = probe.source if probe.real or state == "init" else ("2,000 CIFAR-10 test images, recorded when the "
                                                             "reference nets were exported")
st.caption(f"Standard deviation of each 3×3 layer's output after BN, before the addition and ReLU, on {source}. "
           "In the paper's trained nets the residual responses are smaller than the plain ones, and shrink with "
           "depth: residual functions stay close to zero (§4.2). At initialisation BN is still the identity.")
if state == "trained" and (caveat := measurements.short_run_caveat()):
    st.caption(f":material/info: {caveat}")

st.header("Gradients through depth")
gradient_depth = trained_depths[-1] if state == "trained" and trained_depths else depth
plots.show(explain_charts.gradient_norm_figure(measurements.gradient_norms(gradient_depth), gradient_depth),
           "inside_gradients", f"gradient-norms-{gradient_depth}")
st.caption(f"Norm of the loss gradient for each weight layer, one batch of {measurements.GRADIENT_BATCH} images, "
           "log scale. BN keeps plain nets' gradients from vanishing (§4.1): their trouble is optimisation, not "
           f"signal. Trained curves exist for depths {' and '.join(map(str, trained_depths)) or 'none'}, the "
           "reference nets.")

st.header("Where a model goes wrong")
choices = {choice: label for choice, label in models.model_choices().items() if not choice.startswith("imagenet:")}
choice = model_widgets.model_picker("Model", "inside_model", models.default_pair(choices)[1], choices)
model = model_widgets.loaded(choice)
if model is None:
    st.stop()
has_data = models.local_dataset_source(model, choice) is not None
recorded = measurements.recorded_report(choice)
if recorded is None and not has_data:
    st.info("This model's dataset is not on this machine; train a run on a dataset here to evaluate it.")
    st.stop()
evaluation = measurements.report(choice) if recorded is None else None
per_class = recorded["per_class_accuracy"] if recorded else evaluation.per_class_accuracy
matrix = recorded["confusion_matrix"] if recorded else evaluation.confusion_matrix
accuracy_column, matrix_column = st.columns(2, gap="large")
with accuracy_column:
    plots.show(explain_charts.per_class_accuracy_figure(per_class, "Accuracy per class"), "inside_accuracy",
               "accuracy-per-class")
with matrix_column:
    plots.show(explain_charts.confusion_matrix_figure(matrix, list(per_class), "Confusion matrix"), "inside_confusion",
               "confusion-matrix")
st.subheader("Most confidently wrong test images")
if not has_data:
    st.info("The test images are not on this machine: `python -m resnet_core train --data cifar10 …` downloads "
            "CIFAR-10 into the data folder, after which they appear here.")
elif evaluation is not None or st.toggle("Classify the whole test set to find them", key="inside_mistakes"):
    mistakes = measurements.mistake_images(choice, evaluation or measurements.report(choice))
    for column, (image, caption) in zip(st.columns(8) * 2, mistakes):
        column.image(image, caption=caption, width="stretch")
