"""The one set-up every page calls first: page config, sidebar, torch threads.

Imports neither torch nor resnet_core, so the home page stays fast.
"""
from __future__ import annotations

import sys

import streamlit as st

APP_NAME = "ResNet Explorer"
APP_ICON = ":material/stacks:"
PAPER_URL = "https://arxiv.org/abs/1512.03385"
# The app's own torch work is small (model summaries); training runs are separate processes that need
# the cores. Measured here: with another process busy, a 16-channel 3x3 conv took 24 ms on 2 threads
# and 0.12 ms on 1, because idle intra-op threads spin against the busy process.
APP_TORCH_THREADS = 1


def limit_torch_threads() -> None:
    """Cap this process's torch threads without importing torch, if it is loaded (before that, explorer's
    OMP_NUM_THREADS does)."""
    torch = sys.modules.get("torch")
    # Another session's thread may be importing torch right now: a half-initialised module has no functions yet.
    if getattr(torch, "get_num_threads", None) is not None and torch.get_num_threads() != APP_TORCH_THREADS:
        torch.set_num_threads(APP_TORCH_THREADS)


def setup_page(title: str, icon: str = APP_ICON) -> None:
    """Configure the page and the shared sidebar; safe to call on every run of every page."""
    st.set_page_config(page_title=f"{title} · {APP_NAME}" if title != APP_NAME else APP_NAME, page_icon=icon,
                       layout="wide")
    limit_torch_threads()
    st.sidebar.caption(
        f"{APP_NAME} — the networks of He, Zhang, Ren & Sun, "
        f"[*Deep Residual Learning for Image Recognition*]({PAPER_URL}) (CVPR 2016)."
    )
