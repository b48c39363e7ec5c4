"""A page's state in its URL, so a link pasted into the chat reproduces what its sender saw.

The one mechanism: every widget that makes up a page's state is keyed and bound to a query parameter named by its
key, `bind=IN_URL` (Streamlit's own binding: the browser writes a changed value into the URL, a URL's value seeds
the widget when a session opens it, the back button restores it, and a value the page cannot take, such as a run
deleted since, is dropped from the URL and the widget keeps its default).

Streamlit leaves a widget at its *declared* default out of the URL. So a bound widget declares the page's own
default (`index=`, `value=`, `default=`), and code sets it through `st.session_state` only to change it (a preset,
a callback), never to give it its first value: else choosing the declared default would drop the parameter, and
the link would open on the value code gives it instead.

Selections travel as the option's label (`?arch_depth=56&arch_family=CIFAR-10+(32×32+images)`).

State that no widget holds, the runs or experiments a page follows, travels as ids (`?runs=3,4`): `remember_ids`
puts them in the session and the URL, `remembered_ids` reads them back, the URL first.
"""
from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

IN_URL = "query-params"


def index_of(options: Sequence, value, fallback: int = 0) -> int:
    """The position of `value` in `options` as a selectbox's or radio's `index=`; `fallback` when it is not there."""
    return list(options).index(value) if value in options else fallback


def parse_ids(text: str | None) -> list[int]:
    """`3,4` from a query parameter; anything that is not an id is ignored."""
    return [int(part) for part in (text or "").split(",") if part.strip().isdigit()]


def remember_ids(state_key: str, param: str, ids: list[int]) -> None:
    """Keep the ids in the session and in the URL (?param=3,4), so a reload or a shared link shows the same."""
    st.session_state[state_key] = ids
    st.query_params[param] = ",".join(map(str, ids))


def remembered_ids(state_key: str, param: str) -> list[int]:
    """The ids named in the URL, else the ones this session showed last (put back in the URL)."""
    if param in st.query_params:
        st.session_state[state_key] = parse_ids(st.query_params[param])
    ids = st.session_state.get(state_key, [])
    if ids:
        remember_ids(state_key, param, ids)
    return ids
