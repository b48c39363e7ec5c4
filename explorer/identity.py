"""Who is asking: the person's owner id (one per browser) and whether they are the teacher.

The owner id is what the store records as a run's owner, so the per-person run limit and "your runs" hold across
the reloads, pages and tabs of one browser.

The teacher is whoever opened the Class page with the server's key as `?key=`, remembered in the session. The key
is taken out of the URL at once, so it is not in the address bar when the teacher shares their screen or a link.
One gate per server process checks it (resnet_core.runs.classroom.KeyGate), so a wrong key cannot be retried
faster than once a second from any number of tabs.
"""
from __future__ import annotations

import hashlib
import logging
import uuid

import streamlit as st

from resnet_core.errors import UserError
from resnet_core.runs.classroom import KeyGate
from resnet_core.runs.settings import teacher_key

logger = logging.getLogger(__name__)
XSRF_COOKIE = "_streamlit_xsrf"
TEACHER_STATE = "teacher"
_gate = KeyGate()  # module-level, not st.cache_resource: the menu's "Clear cache" must not lift the throttle


def user_id() -> str:
    """Who is asking, for the per-person run limit: a hash of this browser's XSRF token, else of this session.

    Streamlit sets the `_streamlit_xsrf` cookie on a browser's first page load and keeps it, so one id covers the
    reloads, pages and tabs of one browser, while each other browser (each person) gets its own. The cookie is
    `2|mask|masked token|time` (Tornado's format); the unmasked token is what stays fixed.
    """
    cookie = st.context.cookies.get(XSRF_COOKIE)
    if not isinstance(cookie, str) or not cookie:  # no XSRF protection, or an AppTest: one id per session
        return st.session_state.setdefault("user_id", f"session-{uuid.uuid4().hex[:16]}")
    parts = cookie.split("|")
    try:
        mask, masked = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
        secret = bytes(byte ^ mask[index % 4] for index, byte in enumerate(masked))
    except (IndexError, ValueError):
        secret = cookie.encode()
    return "browser-" + hashlib.sha256(secret).hexdigest()[:16]


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
