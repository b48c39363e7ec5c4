"""The Pixels page's widgets and sections: the task and model, the upload, the result, and the backbone beside it;
for a scene model of this server, its input (a test scene of its own or a photo), its pictures, its scores, which
pixels decided a pixel's class, and a form that trains one."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

import resnet_core as rc
from explorer import plots, run_service, url_state
from explorer.architecture import cache as architecture_cache
from explorer.architecture import views as architecture_views
from explorer.classify import inputs
from explorer.classify.predictions import METHOD_HELP, METHOD_LABELS
from explorer.pixels import figures, service
from explorer.training import charts, live_runs
from explorer.training import views as training_views
from explorer.url_state import IN_URL, index_of
from resnet_core.pixels import torchvision_models as tm
from resnet_core.pixels.jobs import DEFAULT_TRAIN_SCENES

TASK_LABELS = {"segmentation": "Segmentation", "detection": "Detection"}
TASK_HELP = ("Segmentation: a class for every pixel (PASCAL VOC's 20 classes and background). Detection: a box, a "
             "class and a score for each object found (COCO's 80 classes).")
THRESHOLD_HELP = ("Boxes scoring below this are hidden; the detector keeps every box scoring at least "
                  f"{tm.MIN_SCORE:g}, so moving the slider costs no new inference.")


MODELS_LABELS = {"torchvision": "torchvision's", "scenes": "This server's"}
MODELS_HELP = ("torchvision's: DeepLabV3 and FCN on ResNet-50/101, trained on COCO with PASCAL VOC's classes, for "
               "photos. This server's: its scene models, the segmentation runs of its data folder, each an FCN head "
               "on a CIFAR net of the paper trained on 64×64 scenes of CIFAR images (`python -m resnet_core segment "
               "train`, or the form on this page).")
INPUT_LABELS = {"scene": "A test scene of its own", "photo": "Your photo"}
PIXEL_METHOD_HELP = (METHOD_HELP + " Here the score is the net's logit for the class at the chosen pixel: Saliency "
                     "and Integrated Gradients reach only the pixels of its receptive field; Grad-CAM shows where the "
                     "channels that push that pixel's class fire anywhere in the input.")
SCENE_SOURCES = {"cifar10": "CIFAR-10 images", "synthetic": "synthetic patterns (no download)"}
# What the form starts with: a frozen shipped ResNet-20 learns a head in a few minutes on 2 CPU cores.
DEFAULT_BACKBONE, DEFAULT_ITERATIONS, DEFAULT_TEST_SCENES = "reference:resnet20", 200, 500


@dataclass(frozen=True)
class Choice:
    """What the sidebar chose: a torchvision model (`name`, with detection's `threshold`), or a scene model."""

    task: str
    name: str | None  # torchvision's model; None for the scene models
    threshold: float = 0.0
    scenes: bool = False  # the scene models of this server
    scene_run: int | None = None  # the one chosen; None while there is none


def sidebar() -> Choice:
    """The task, which models, the model and (detection) the score threshold, each in the URL."""
    task = st.segmented_control("Task", tm.TASKS, default="segmentation", key="pixels_task", required=True,
                                format_func=TASK_LABELS.get, bind=IN_URL, help=TASK_HELP)
    if task == "segmentation" and st.segmented_control(
            "Models", tuple(MODELS_LABELS), default="torchvision", key="pixels_models", required=True,
            format_func=MODELS_LABELS.get, bind=IN_URL, help=MODELS_HELP) == "scenes":
        return Choice(task, None, scenes=True, scene_run=_scene_run_picker())
    names = tm.models_for(task)
    name = st.selectbox("Model", names, index_of(names, tm.DEFAULT_MODEL[task]), key=f"pixels_{task}_model",
                        format_func=lambda option: tm.MODELS[option].label, bind=IN_URL,
                        help="torchvision's published weights, read from the torch cache.")
    threshold = 0.0
    if task == "detection":
        threshold = st.slider("Score threshold", tm.MIN_SCORE, 1.0, 0.5, 0.05, key="pixels_threshold", bind=IN_URL,
                              help=THRESHOLD_HELP)
    return Choice(task, name, threshold)


def _scene_run_picker() -> int | None:
    """The scene model, by run id (in the URL as its label); None, with a line saying why, while there is none."""
    runs = service.scene_runs()
    if not runs:
        st.caption("No scene model has finished training on this server yet.")
        return None
    _keep_valid("pixels_scene_run", runs)
    return st.selectbox("Scene model", list(runs), key="pixels_scene_run", format_func=runs.get, bind=IN_URL,
                        help="The finished segmentation runs of this server, newest first: the head and its backbone, "
                             "where the backbone came from, the scenes' source and the latest mIoU on the test "
                             "scenes.")


def _keep_valid(key: str, options) -> None:
    """Forget a kept choice that is no longer offered (a run deleted since), so the widget takes its default."""
    if key in st.session_state and st.session_state[key] not in options:
        del st.session_state[key]


def _clamp(key: str, largest: int) -> None:
    """Bring a kept number down to `largest` (another run's fewer scenes, a smaller picture)."""
    if (st.session_state.get(key) or 0) > largest:
        st.session_state[key] = largest


def upload(help: str = f"Resized to a {tm.SHORT_SIDE}-px shorter side before any model sees it.") -> bytes | None:
    """The uploaded photo's bytes once it decodes (the Classify page's loader and refusals), else None after a one-line
    error for a file that does not."""
    file = st.file_uploader("A photo: PNG, JPEG, WebP, GIF or BMP", type=inputs.UPLOAD_TYPES, key="pixels_upload",
                            help=help)
    if file is None:
        return None
    images, errors = inputs.decode_all([(file.name, file.getvalue())])
    for error in errors:
        st.error(error)
    return next(iter(images.values()), None)


def result(name: str, data: bytes | None, threshold: float) -> None:
    """The model's answer for the photo, or why there is none."""
    info = tm.model_info(name)
    st.subheader(info.label)
    if data is None:
        st.info("Upload a photo to see what the model makes of it.")
        return
    model = service.loaded(name)
    if model is None:
        return
    answer = service.answer(model, data)
    width, height = answer.image.size
    st.caption(f"Your photo resized to {width}×{height} px (a {tm.SHORT_SIDE}-px shorter side); "
               f"{answer.seconds:.1f} s on {answer.threads} core{'s' * (answer.threads != 1)} of this server's CPU "
               f"(those no training run was using).")
    if info.task == "segmentation":
        _segmentation(answer)
        _photo_pixel_explanation(model, data, answer)
    else:
        _detection(answer, threshold)


def _segmentation(answer: service.Answer) -> None:
    segmentation = answer.result
    # Two by two, so each picture gets half the column: input and class map, then the overlay and its legend.
    top, bottom = st.columns(2), st.columns(2)
    top[0].image(answer.image, caption="Input", width="stretch")
    top[1].image(figures.class_map_image(segmentation), caption="Class per pixel", width="stretch")
    bottom[0].image(figures.overlay_image(answer.image, segmentation), caption="Overlay", width="stretch")
    with bottom[1]:
        _legend(figures.legend_table(segmentation))


def _legend(legend: pd.DataFrame) -> None:
    st.markdown("**Classes present**")
    _colour_table(legend, {"pixels (%)": "{:.1f}", "mean confidence": "{:.2f}"})
    st.caption("Mean confidence: the mean softmax probability of the class over its pixels.")


def _colour_table(table: pd.DataFrame, formats: dict[str, str]) -> None:
    """A static table whose `colour` column is painted in each row's colour: it wraps to its column, where a
    dataframe would scroll its last columns out of sight."""
    st.table(table.style.hide(axis="index").format(formats, na_rep="–")
             .map(lambda colour: f"background-color: {colour}; color: {colour}", subset=["colour"]))


def _detection(answer: service.Answer, threshold: float) -> None:
    detection = answer.result
    shown = figures.detection_table(detection, threshold)
    st.image(figures.boxes_image(answer.image, detection, threshold), width="stretch",
             caption=f"{len(shown)} of {len(detection.scores)} boxes score at least {threshold:.2f}")
    if shown.empty:
        st.caption("No box reaches the threshold: lower it in the sidebar.")
        return
    st.dataframe(shown, hide_index=True, width="stretch", key="pixels_boxes",
                 column_config={"score": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="%.2f")})


def backbone(name: str) -> None:
    """What the model's backbone is: its stages as the Architecture page draws them, the paper's numbers for the
    matching table, what differs, and what torchvision measured."""
    info = tm.model_info(name)
    spec = rc.get_spec(info.backbone, variant="torchvision")
    summary = architecture_cache.net_summary(spec)
    st.subheader(f"The backbone: {architecture_views.display_name(summary)}")
    st.caption(f"The ImageNet classifier the model starts from, as the Architecture page draws it (224×224 input). "
               f"Here the pool · fc head is replaced by {info.head}.")
    # Stages of more than three blocks start collapsed: the column is a third of the page.
    architecture_views.diagram(summary, "pixels", expand_up_to=3)
    st.markdown("**The paper's numbers: Faster R-CNN, VGG-16 against ResNet-101 (mAP, %)**")
    # A static table wraps its text to the column, where a dataframe would hide the numbers behind a scroll bar.
    st.table(paper_table(name).set_index("table").style.format(precision=1, na_rep=""))
    trained = {(row.table, row.test_set): row.training_data for row in tm.paper_rows(name)}
    st.caption("Trained on " + "; ".join(f"{data} for {test_set}" for (_, test_set), data in trained.items()) + ".")
    st.markdown("**What differs from the paper**")
    st.markdown("\n".join(f"- {line}" for line in tm.differences(name)))
    measured = "; ".join(f"{metric.metric} {metric.value:g} %" for metric in tm.published_metrics(name))
    datasets = sorted({metric.dataset for metric in tm.published_metrics(name)})
    params, gflops = tm.published_size(name)
    st.caption(f"torchvision measured {measured} ({', '.join(datasets)}); {params / 1e6:.1f} M parameters, "
               f"{gflops:.0f} GFLOPs per image at its own evaluation size.")


def paper_table(name: str) -> pd.DataFrame:
    """The paper's rows for this model's task, and torchvision's box mAP beside the one row it matches."""
    rows = tm.paper_rows(name)
    table = pd.DataFrame([(row.table, row.test_set, row.metric, row.vgg16, row.resnet101) for row in rows],
                         columns=["table", "test set", "metric", "VGG-16", "ResNet-101"])
    box_map = [metric.value for metric in tm.published_metrics(name) if metric.metric == "box mAP@[.5, .95]"]
    if box_map:  # the same metric on a different split: COCO val2017 (5k images), not the paper's val (40k)
        table["this model, val2017"] = [box_map[0] if row.metric == "mAP@[.5, .95]" and row.table == "Table 8" else None
                                        for row in rows]
    return table


# ------------------------------------------------------------------------------------------- scene models
def scene_models(run_id: int | None) -> None:
    """A scene model of this server on an input of the page's choosing: pictures and scores, then which pixels
    decided a pixel's class; below, the form that trains one and the runs it started."""
    if run_id is None:
        st.info("No scene model on this server yet: train one below (or with `python -m resnet_core segment train "
                "…`); it is offered here once it has finished.")
    elif (model := _or_said(service.scene_model, run_id)) is not None:
        answer_column, score_column = st.columns([3, 2], gap="large")
        with answer_column:
            chosen = _scene_input(model)
            answer = None if chosen is None else _or_said(service.scene_answer, run_id, *chosen)
            if answer is not None:
                _scene_pictures(answer, chosen[0])
        with score_column:
            _scene_scores(model)
        if answer is not None:
            _scene_pixel_explanation(model, chosen, answer)
    _train_scene_model(open_form=run_id is None)


def _or_said(compute, *args):
    """`compute(*args)`, or None after its one-line message: a run's segmenter or its scenes' dataset may be gone
    from the data folder (UserError, InvalidCheckpointError, DatasetError: one sentence each)."""
    try:
        return compute(*args)
    except ValueError as error:
        st.error(str(error))
        return None


def _scene_input(model: service.SceneModel) -> tuple[int | None, bytes | None] | None:
    """(test scene index, None) or (None, photo bytes); None, after saying what is missing, while there is none."""
    kind = st.segmented_control("Input", tuple(INPUT_LABELS), default="scene", key="pixels_scene_input",
                                required=True, format_func=INPUT_LABELS.get, bind=IN_URL,
                                help=f"Its own test scenes are what it learned to label: {model.canvas}×"
                                     f"{model.canvas} scenes of images it never saw in training. A photo is far from "
                                     f"those: it is shrunk to a {model.canvas}-px shorter side first.")
    if kind == "photo":
        photo = upload(help=f"Shrunk to a {model.canvas}-px shorter side, the size of the scenes it learned on.")
        if photo is None:
            st.info("Upload a photo to see what the scene model makes of it.")
            return None
        return None, photo
    count = model.settings.test_scenes
    _clamp("pixels_scene_index", count - 1)
    index = st.number_input(f"Test scene (0 to {count - 1:,})", 0, count - 1, 0, key="pixels_scene_index",
                            bind=IN_URL, help="Its test scenes, composed again as its run composed them: one to "
                                              "three test images of its dataset pasted on a noisy background.")
    return int(index), None


def _scene_pictures(answer: service.SceneAnswer, index: int | None) -> None:
    segmentation, big = answer.segmentation, figures.enlarged
    height, width = segmentation.classes.shape
    seen = f"test scene {index}" if index is not None else "your photo"
    st.caption(f"The net sees {seen} at {width}×{height} px (shown enlarged, each pixel a square); "
               f"{1000 * answer.seconds:.0f} ms on this server's CPU.")
    top, bottom = st.columns(2), st.columns(2)
    top[0].image(big(answer.picture), caption="Input", width="stretch")
    top[1].image(big(figures.class_map_image(segmentation)), caption="Class per pixel", width="stretch")
    bottom[0].image(big(figures.overlay_image(Image.fromarray(answer.picture), segmentation)), caption="Overlay",
                    width="stretch")
    with bottom[1]:
        _legend(figures.legend_table(segmentation))
    if answer.truth is not None:
        truth, note = st.columns(2)
        truth.image(big(figures.labels_image(answer.truth, len(segmentation.categories))), caption="True classes",
                    width="stretch")
        right = (segmentation.classes == answer.truth).mean()
        background = (answer.truth == 0).mean()
        note.caption(f"On this scene {100 * right:.1f} % of the pixels get their true class; answering "
                     f"*background* everywhere would get {100 * background:.1f} %.")


def _scene_scores(model: service.SceneModel) -> None:
    """What the scene model is, its scores on its test scenes (every class's IoU), and its curve."""
    run, settings = model.run, model.settings
    st.subheader(f"Run #{run.id}: {run_service.model_label(run)}")
    learned = "frozen: only the head learned" if settings.freeze else "fine-tuned with the head"
    st.caption(f"Backbone {settings.backbone} ({learned}); {run.recipe['iterations']:,} iterations of "
               f"{run.recipe['batch_size']} scenes out of {settings.train_scenes:,} of {run.data}; scored on "
               f"{settings.test_scenes:,} test scenes of {settings.layout.canvas}×{settings.layout.canvas} px.")
    report = _or_said(service.scores, run.id)
    if report is None:
        return
    scores = report.scores
    miou, accuracy = st.columns(2)
    miou.metric("mIoU", f"{100 * scores.miou:.1f} %",
                help="The mean over the classes of their intersection over union, the pixels of all the test scenes "
                     "pooled (PASCAL VOC's count), over the classes present in the targets or the predictions.")
    accuracy.metric("Pixel accuracy", f"{100 * scores.pixel_accuracy:.1f} %")
    st.caption(f"Answering *background* everywhere would get a pixel accuracy of {100 * scores.background_share:.1f} "
               "%: the bar to clear.")
    st.markdown("**Each class's IoU on the test scenes**")
    _colour_table(figures.iou_table(scores), {"IoU (%)": "{:.1f}", "test pixels (%)": "{:.1f}"})
    states = live_runs.poll([run.id])
    if states:
        plots.show(charts.miou_figure([states[0].curves]), "pixels_scene_miou", f"miou-run-{run.id}")


def _scene_pixel_explanation(model: service.SceneModel, chosen: tuple[int | None, bytes | None],
                             answer: service.SceneAnswer) -> None:
    """Pick a pixel of a scene model's input: which input pixels decided its class, by any of the Classify page's
    attribution methods (a scene is small)."""
    st.subheader("Which pixels decided a pixel's class")
    _pixel_explanation(answer.picture, answer.segmentation, list(METHOD_LABELS), "integrated_gradients",
                       lambda x, y, method, target: _or_said(service.explain_pixel, model.run.id, *chosen, x, y,
                                                             method, target),
                       key="pixels", target_key=f"pixels_target_{model.run.id}", truth=answer.truth,
                       sees="the net sees")


def _photo_pixel_explanation(model: tm.PixelNet, data: bytes, answer: service.Answer) -> None:
    """Pick a pixel of the photo: which pixels decided the class a published model gives it, on demand (one forward
    and one backward pass: seconds on a CPU)."""
    st.subheader("Which pixels decided a pixel's class")
    if not st.toggle("Explain a pixel", key="pixels_photo_explain", bind=IN_URL,
                     help="Grad-CAM or Saliency of the model's score for a class at the pixel you pick; each pixel "
                          "costs a forward and a backward pass of the whole model (seconds on this CPU)."):
        return
    _pixel_explanation(np.asarray(answer.image.convert("RGB")), answer.result, list(tm.EXPLAIN_METHODS), "grad_cam",
                       lambda x, y, method, target: service.explain_photo_pixel(model, data, x, y, method, target),
                       key="pixels_photo", target_key="pixels_photo_target", truth=None,
                       sees=f"{model.info.label} sees",
                       note="Integrated Gradients and Occlusion would take minutes on this model; Saliency and "
                            "Grad-CAM take one backward pass.")


def _pixel_explanation(picture: np.ndarray, segmentation: tm.Segmentation, methods: list[str], default: str,
                       explain, *, key: str, target_key: str, truth: np.ndarray | None, sees: str,
                       note: str = "") -> None:
    """The pixel picker (x, y, method, class; all but the class kept in the URL under `key`) and `explain(x, y,
    method, target)`'s map over the `picture` the net saw, with the pixel marked and what was explained. `truth`:
    the (H, W) true labels of an input that has them."""
    height, width = segmentation.classes.shape
    _clamp(f"{key}_x", width - 1)
    _clamp(f"{key}_y", height - 1)
    _keep_valid(f"{key}_method", methods)
    column_x, column_y, column_method, column_class = st.columns(4)
    x = int(column_x.number_input(f"x: column (0 to {width - 1})", 0, width - 1, width // 2, key=f"{key}_x",
                                  bind=IN_URL, help="Pixels from the left edge of the input."))
    y = int(column_y.number_input(f"y: row (0 to {height - 1})", 0, height - 1, height // 2, key=f"{key}_y",
                                  bind=IN_URL, help="Pixels from the top edge of the input."))
    method = column_method.selectbox("Method", methods, index_of(methods, default), key=f"{key}_method",
                                     format_func=METHOD_LABELS.get, bind=IN_URL, help=PIXEL_METHOD_HELP)
    classes = segmentation.categories
    target = column_class.selectbox("Explain the class", [None, *range(len(classes))], key=target_key,
                                    format_func=lambda index: "the pixel's own" if index is None else classes[index])
    attribution = explain(x, y, method, target)
    if attribution is None:
        return
    figure_column, caption = st.columns([3, 2])
    with figure_column:
        plots.show(figures.pixel_attribution_figure(picture, attribution.map, signed=attribution.signed, x=x, y=y),
                   f"{key}_attribution", f"{method}-pixel-{x}-{y}")
    own = classes[int(segmentation.classes[y, x])]
    where = f" on {attribution.layer}'s {attribution.layer_map_size[0]}×{attribution.layer_map_size[1]} map" \
        if attribution.layer else ""
    true = "" if truth is None else f" (truly *{classes[int(truth[y, x])]}*)"
    caption.caption(f"Pixel ({x}, {y}), marked ✕, is labelled **{own}**{true}. {METHOD_LABELS[method]}{where} for "
                    f"**{classes[attribution.target]}** there (p = {attribution.target_probability:.2f}), over the "
                    f"{width}×{height} input {sees}. {note}".rstrip())


def _train_scene_model(open_form: bool) -> None:
    """A small form that queues a segmentation run within the server's limits, and the runs it started, live."""
    with st.expander("Train a scene model on this server", expanded=open_form, icon=":material/model_training:"):
        backbones = service.backbone_choices()
        with st.form("pixels_train", border=False):
            left, right = st.columns(2)
            backbone = left.selectbox("Backbone", list(backbones), index_of(list(backbones), DEFAULT_BACKBONE),
                                      format_func=backbones.get, key="pixels_train_backbone",
                                      help="Its stem and stages become the segmenter's backbone; an FCN head (a 1×1 "
                                           "convolution scoring every class, upsampled bilinearly) goes on top.")
            source = left.radio("Scenes of", tuple(SCENE_SOURCES), format_func=SCENE_SOURCES.get,
                                key="pixels_train_data", horizontal=True)
            freeze = left.toggle("Freeze the backbone (train the head alone)", value=True, key="pixels_train_freeze")
            iterations = right.number_input("Iterations", 1, 64_000, DEFAULT_ITERATIONS, key="pixels_train_iterations")
            train_scenes = right.number_input("Training scenes", 64, 50_000, DEFAULT_TRAIN_SCENES, 1000,
                                              key="pixels_train_scenes")
            test_scenes = right.number_input("Test scenes", 16, 10_000, DEFAULT_TEST_SCENES, 100,
                                             key="pixels_train_test_scenes",
                                             help="Scored at every test point: fewer make a short run shorter.")
            started = st.form_submit_button("Start", type="primary", icon=":material/play_arrow:")
        if note := run_service.cifar10_note():
            st.caption(note)
        st.caption(run_service.limits_text())
        followed = url_state.remembered_ids("pixels_runs", "scene_runs")
        if started:
            try:
                run_id = service.start_scene_run(backbone, source, iterations=int(iterations), freeze=freeze,
                                                 train_scenes=int(train_scenes), test_scenes=int(test_scenes))
            except ValueError as error:
                st.error(str(error))
            else:
                followed = [run_id, *followed]
                url_state.remember_ids("pixels_runs", "scene_runs", followed)
        if followed:
            _live_scene_runs(followed, set(service.scene_runs()))


@st.fragment(run_every=2)
def _live_scene_runs(run_ids: list[int], offered: set[int]) -> None:
    """The runs this form started: their cards and curves; the page reruns once one of them can be picked."""
    states = live_runs.poll(run_ids)
    for state in states:
        training_views.run_card(state, key="pixels")
    if states:
        training_views.curves(states, key="pixels")
    if any(state.run.id not in offered and state.run.status == "finished" for state in states) \
            and set(service.scene_runs()) - offered:
        st.rerun(scope="app")
