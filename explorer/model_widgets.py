"""The model widgets the Classify, Inside and Experiments pages share: pick a model by its choice id
(explorer.models), and load it or say in one line why it cannot be.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import streamlit as st

import resnet_core as rc
from explorer import models
from explorer.url_state import IN_URL, index_of

T = TypeVar("T")


def model_picker(label: str, key: str, default: str, choices: dict[str, str]) -> str:
    """A model selectbox whose state is only the choice id, in the URL as its label (explorer.url_state)."""
    ids = list(choices)
    if key in st.session_state and st.session_state[key] not in choices:  # a run deleted since
        st.session_state[key] = default if default in choices else ids[0]
    return st.selectbox(label, ids, index_of(ids, default), format_func=choices.get, key=key, bind=IN_URL)


def loaded(choice: str) -> rc.Classifier | None:
    """The model, or None after a one-line message (and, for missing ImageNet weights, a download button)."""
    return loaded_or_said(lambda download: models.classifier(choice, download=download), key=f"download_{choice}")


def loaded_or_said(load: Callable[[bool], T], key: str) -> T | None:
    """`load(download=False)`'s result, or None after its one-line message; for missing published weights, a button
    that tries `load(download=True)`."""
    try:
        return load(False)
    except rc.WeightsUnavailableError as error:
        st.error(str(error))
        if st.button("Try to download them", key=key):
            try:
                return load(True)
            except ValueError as retry_error:
                st.error(str(retry_error))
    except ValueError as error:  # InvalidCheckpointError, DatasetError, StoreError: one sentence each
        st.error(str(error))
    return None
