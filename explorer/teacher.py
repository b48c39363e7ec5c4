"""Who is the teacher: whoever opened the Class page with the server's key as `?key=`, remembered in the session.

The key is taken out of the URL at once, so it is not in the address bar when the teacher shares their screen or
a link. One gate per server process checks it (resnet_core.runs.classroom.KeyGate), so a wrong key cannot be
retried faster than once a second from any number of tabs.
"""
from __future__ import annotations

import logging

import streamlit as st

from resnet_core.errors import UserError
from resnet_core.runs.classroom import KeyGate
from resnet_core.runs.settings import teacher_key

logger = logging.getLogger(__name__)
TEACHER_STATE = "teacher"
_gate = KeyGate()  # module-level, not st.cache_resource: the menu's "Clear cache" must not lift the throttle


def sign_in_from_url() -> str | None:
    """Check a `?key=` in the URL once and take it out; the one-line refusal for a wrong key, else None."""
    if "key" not in st.query_params:
        return None
    given = st.query_params.pop("key")
    if is_teacher():
        return None
    try:
        _gate.check(given, teacher_key())
    except UserError as error:
        logger.warning("A teacher key was refused: %s", error)  # a guesser shows in the server log
        return str(error)
    st.session_state[TEACHER_STATE] = True
    return None


def is_teacher() -> bool:
    return bool(st.session_state.get(TEACHER_STATE))
