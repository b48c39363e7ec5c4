"""Pixels: segmentation and detection of a photo by torchvision's models on a ResNet backbone, beside the paper."""
import streamlit as st

from explorer.pixels import views
from explorer.setup import setup_page

setup_page("Pixels", ":material/grid_on:")
st.title(":material/grid_on: Pixels")
st.caption("Upload a photo: a ResNet-backed model from torchvision labels every pixel (segmentation) or boxes the "
           "objects it finds (detection). Beside it, the backbone and the paper's own detection numbers (§4.3).")

with st.sidebar:
    st.header("Model")
    task, name, threshold = views.sidebar()

data = views.upload()
answer_column, backbone_column = st.columns([3, 2], gap="large")
with answer_column:
    views.result(name, data, threshold)
with backbone_column:
    views.backbone(name)
