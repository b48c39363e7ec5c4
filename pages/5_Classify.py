"""Classify: ask trained networks about an image, and see which pixels their answer rests on."""
import streamlit as st

from explorer import model_widgets, models
from explorer.classify import inputs, predictions
from explorer.setup import setup_page
from explorer.url_state import IN_URL

setup_page("Classify", ":material/image_search:")
st.title(":material/image_search: Classify")
st.caption("Upload images or pick an example; two networks answer side by side, and an attribution shows which "
           "pixels each answer rests on.")

choices = models.model_choices()
default_left, default_right = models.default_pair(choices)
with st.sidebar:
    st.header("Networks")
    choices |= inputs.checkpoint_uploader("classify_checkpoints", "classify_left")
    left = model_widgets.model_picker("Left network", "classify_left", default_left, choices)
    compare = st.toggle("Compare with a second network", value=True, key="classify_compare", bind=IN_URL)
    right = model_widgets.model_picker("Right network", "classify_right", default_right, choices) \
        if compare else None
    st.header("Attribution")
    method = st.selectbox("Method", [None, *predictions.METHOD_LABELS], index=1, key="classify_method", bind=IN_URL,
                          format_func=lambda name: "none" if name is None else predictions.METHOD_LABELS[name],
                          help=predictions.METHOD_HELP)

upload_tab, example_tab = st.tabs(["Your images", "Examples"])
with upload_tab:
    files = st.file_uploader("PNG, JPEG, WebP, GIF or BMP images", type=inputs.UPLOAD_TYPES,
                             accept_multiple_files=True, key="classify_upload")
    images, errors = inputs.decode_all([(file.name, file.getvalue()) for file in files or []])
    for error in errors:
        st.error(error)
with example_tab:
    examples = {**inputs.synthetic_examples(), **inputs.dataset_examples(left)}
    if len(examples) == len(inputs.synthetic_examples()):
        st.caption("Test images appear here too once the left network's dataset is on this machine (train a run "
                   "on it, or `python -m resnet_core train --data cifar10 …` downloads CIFAR-10).")
    example = st.selectbox("Example image", [None, *examples], key="classify_example", bind=IN_URL,
                           format_func=lambda name: "none" if name is None else name)
if example is not None:
    images[f"example: {example}"] = examples[example]
if not images:
    st.info("Upload an image or pick an example to see what the networks answer.")
    st.stop()

chosen = st.selectbox("Image", list(images), key="classify_image") if len(images) > 1 else next(iter(images))
data = images[chosen]
original, *answers = st.columns([1, 2, 2] if right else [1, 2], gap="large")
with original:
    st.subheader("Your image")
    st.image(inputs.decode(data), caption=chosen, width="stretch")
for column, choice, side in zip(answers, (left, right), ("left", "right")):
    with column:
        predictions.model_column(choice, data, method, f"classify_{side}")
