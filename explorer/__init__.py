"""The Streamlit side of ResNet Explorer: page set-up, widgets, cached summaries and pure figure builders."""
import os

from explorer.setup import APP_TORCH_THREADS

# torch reads OMP_NUM_THREADS once, when it is first imported, and pages import explorer before anything that
# imports torch (through resnet_core); setup_page runs after the page's imports and caps a torch already loaded.
os.environ.setdefault("OMP_NUM_THREADS", str(APP_TORCH_THREADS))
