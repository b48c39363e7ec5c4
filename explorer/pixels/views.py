"""The Pixels page's widgets and sections: the task and model, the upload, the result, and the backbone beside it."""
from __future__ import annotations

import pandas as pd
import streamlit as st

import resnet_core as rc
from explorer.architecture import cache as architecture_cache
from explorer.architecture import views as architecture_views
from explorer.classify import inputs
from explorer.pixels import figures, service
from explorer.url_state import IN_URL, index_of
from resnet_core.pixels import torchvision_models as tm

TASK_LABELS = {"segmentation": "Segmentation", "detection": "Detection"}
TASK_HELP = ("Segmentation: a class for every pixel (PASCAL VOC's 20 classes and background). Detection: a box, a "
             "class and a score for each object found (COCO's 80 classes).")
THRESHOLD_HELP = ("Boxes scoring below this are hidden; the detector keeps every box scoring at least "
                  f"{tm.MIN_SCORE:g}, so moving the slider costs no new inference.")


def sidebar() -> tuple[str, str, float]:
    """The task, the model and (detection) the score threshold, each in the URL."""
    task = st.segmented_control("Task", tm.TASKS, default="segmentation", key="pixels_task", required=True,
                                format_func=TASK_LABELS.get, bind=IN_URL, help=TASK_HELP)
    names = tm.models_for(task)
    name = st.selectbox("Model", names, index_of(names, tm.DEFAULT_MODEL[task]), key=f"pixels_{task}_model",
                        format_func=lambda option: tm.MODELS[option].label, bind=IN_URL,
                        help="torchvision's published weights, read from the torch cache.")
    threshold = 0.0
    if task == "detection":
        threshold = st.slider("Score threshold", tm.MIN_SCORE, 1.0, 0.5, 0.05, key="pixels_threshold", bind=IN_URL,
                              help=THRESHOLD_HELP)
    return task, name, threshold


def upload() -> bytes | None:
    """The uploaded photo's bytes once it decodes (the Classify page's loader and refusals), else None after a one-line
    error for a file that does not."""
    file = st.file_uploader("A photo: PNG, JPEG, WebP, GIF or BMP", type=inputs.UPLOAD_TYPES, key="pixels_upload",
                            help=f"Resized to a {tm.SHORT_SIDE}-px shorter side before any model sees it.")
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
               f"{answer.seconds:.1f} s on this server's CPU.")
    if info.task == "segmentation":
        _segmentation(answer)
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
    # A static table: it wraps to its half column, where a dataframe would scroll its last columns out of sight.
    st.table(legend.style.hide(axis="index").format({"pixels (%)": "{:.1f}", "mean confidence": "{:.2f}"})
             .map(lambda colour: f"background-color: {colour}; color: {colour}", subset=["colour"]))
    st.caption("Mean confidence: the mean softmax probability of the class over its pixels.")


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
