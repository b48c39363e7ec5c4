"""Pixels: segmentation and detection of a photo by torchvision's models on a ResNet backbone, beside the paper; and
this server's own scene models (segmentation runs) on their test scenes, with which pixels decided a pixel's class."""
import streamlit as st

from explorer.pixels import views
from explorer.setup import setup_page

setup_page("Pixels", ":material/grid_on:")
st.title(":material/grid_on: Pixels")
st.caption("Upload a photo: a ResNet-backed model from torchvision labels every pixel (segmentation) or boxes the "
           "objects it finds (detection). Beside it, the backbone and the paper's own detection numbers (§4.3). Or "
           "pick a scene model of this server: a CIFAR net of the paper that learned to label the pixels of scenes "
           "of CIFAR images.")

with st.sidebar:
    st.header("Model")
    choice = views.sidebar()

if choice.scenes:
    views.scene_models(choice.scene_run)
    st.stop()
data = views.upload()
answer_column, backbone_column = st.columns([3, 2], gap="large")
with answer_column:
    views.result(choice.name, data, choice.threshold)
with backbone_column:
    views.backbone(choice.name)
