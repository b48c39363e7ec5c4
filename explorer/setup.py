"""The one set-up every page calls first: page config, sidebar, torch threads.

Imports neither torch nor resnet_core, so the home page stays fast.
"""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

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


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run one heavy forward pass of this page's thread (the Pixels page's ResNet-50 on a photo) on `threads` torch
    threads, then go back to APP_TORCH_THREADS. Each Streamlit script runs on a thread of its own, whose torch thread
    count it sets; pick `threads` among the cores no training run uses (run_service.idle_cores), or the spinning
    threads cost more than they give (APP_TORCH_THREADS's measurement)."""
    import torch  # here: importing this module must not load torch

    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(APP_TORCH_THREADS)


def use_app_navigation() -> None:
    """Make a page opened by its URL on a fresh server run inside streamlit_app.py's navigation.

    Until some session has run st.navigation, Streamlit serves a `pages/` folder the old way: a deep link such as
    /Train runs that file alone and the sidebar calls the home page "streamlit app". Streamlit has no public switch
    for this (its docs: the folder is ignored "as soon as any session of your app executes the st.navigation
    command"), so turn the folder mode off and rerun, which runs the entry point and routes to the same page: both
    modes name a page by its URL path.
    """
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def setup_page(title: str, icon: str = APP_ICON) -> None:
    """Configure the page and the shared sidebar; safe to call on every run of every page."""
    use_app_navigation()
    st.set_page_config(page_title=f"{title} · {APP_NAME}" if title != APP_NAME else APP_NAME, page_icon=icon,
                       layout="wide")
    limit_torch_threads()
    st.sidebar.caption(
        f"{APP_NAME} — the networks of He, Zhang, Ren & Sun, "
        f"[*Deep Residual Learning for Image Recognition*]({PAPER_URL}) (CVPR 2016)."
    )
