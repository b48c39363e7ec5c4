"""The Streamlit side of ResNet Explorer: the pages' helpers, and the only way the pages reach resnet_core.

One subpackage per page group holds what only those pages use (architecture: Architecture and Compare; training:
Train and Runs; classroom: Class; classify; inside; experiments). The modules here are shared by several groups:
page set-up, URL state, figure display, who is asking, the run service, and the models the pages can ask.
"""
import os

from explorer.setup import APP_TORCH_THREADS

# torch reads OMP_NUM_THREADS once, when it is first imported, and pages import explorer before anything that
# imports torch (through resnet_core); setup_page runs after the page's imports and caps a torch already loaded.
os.environ.setdefault("OMP_NUM_THREADS", str(APP_TORCH_THREADS))
