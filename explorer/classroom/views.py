"""Render helpers of the Class page: the room's table and pooled Fig. 6, and the teacher's panel."""
from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from explorer import plots, run_service
from explorer.classroom import charts, lesson
from resnet_core.runs.classroom import CELL_DEPTHS

YOURS_BACKGROUND = "background-color: #fff3c4"
LENGTH_KEY = "class_lesson_iterations"
SHOWN_LENGTH_KEY = "class_lesson_shown"  # the cells' length the field was last set to
OUTCOME_KEY = "class_teacher_outcome"  # (done, message) of the teacher's last action, for the panel to say
ERROR_COLUMNS = ("final test error, median (%)", "lowest (%)", "highest (%)", lesson.PAPER_COLUMN)


def _yours(row: pd.Series) -> list[str]:
    return [YOURS_BACKGROUND if row["you"] else ""] * len(row)


def room(hours: float, dataset: str | None, length: int | None, shown: tuple[list, list]) -> None:
    """The table of nets and the pooled curves of the runs the filters pick; a full rerun when a dataset or a
    length appears (or goes) that the filters do not offer yet."""
    recent = lesson.recent_runs(hours)
    if tuple(map(set, lesson.filter_choices(recent))) != tuple(map(set, shown)):
        st.rerun()
    if dataset is None or length is None:
        st.info(f"No runs started in the last {hours:g} hours yet. They appear here as people press Start on the "
                "Train page, and their curves grow while they train.", icon=":material/hourglass_empty:")
        return
    view = lesson.class_view(recent, dataset, length)
    if not view.nets:  # each filter offers what some run has, not every pair of them
        st.info(f"No run in the last {hours:g} hours is of {lesson.dataset_label(dataset)} and {length:,} "
                "iterations: pick another dataset or length.", icon=":material/filter_alt_off:")
        return
    table = lesson.summary_table(view.nets, dataset)
    # As text, so a missing number (a plain net has no Table 6 error) is blank: the grid shows a null as "None".
    errors = [column for column in ERROR_COLUMNS if column in table]
    table[errors] = table[errors].map(lambda value: "" if pd.isna(value) else f"{value:.2f}")
    helps = {"final test error, median (%)": "Each person's latest finished run, then the median across people.",
             lesson.PAPER_COLUMN: "CIFAR-10 test error of the paper's ResNet after 64k iterations (one run; "
                                "ResNet-110: best of 5); "
                                "Fig. 6 gives the plain nets' curves only."}
    st.dataframe(table.style.apply(_yours, axis=1), hide_index=True, width="stretch", key="class_table",
                 column_config={
                     **{column: st.column_config.TextColumn(alignment="right", help=helps.get(column))
                        for column in errors},
                     "people": st.column_config.NumberColumn(help="People with a run of this net."),
                     "running": st.column_config.NumberColumn(help="Training now, or starting."),
                     "stopped": st.column_config.NumberColumn(help="Cancelled, failed, diverged or interrupted."),
                     "you": st.column_config.TextColumn(help="Nets you have a run of, highlighted.")})
    plots.show(charts.fig6_figure(view.nets, view.yours, run_service.net_label), key="class_fig6",
               name=f"class-fig6-{dataset}-{length}-iterations")
    st.caption(":material/timeline: Each person counts once per net, with their latest finished or training run. "
               "Curves of runs still training end where they have got to; the median at each point is over the "
               "people who reached it (hover to see how many). Your own runs are black.")


def keep_valid(key: str, options) -> None:
    """Point a select box whose choice is no longer among its `options` (a run ended, a filter's window moved) at
    the first of them. A keyed box keeps its value when its options change, even None from when it had none, and
    only a value set through the session reaches the browser's copy of it."""
    options = list(options)
    if key in st.session_state and st.session_state[key] not in options:
        st.session_state[key] = options[0] if options else None


def _do(action: Callable[..., tuple[bool, str]], *args) -> None:
    # Said by the panel's rerun that follows: a callback of a fragment's button must not draw anything itself.
    st.session_state[OUTCOME_KEY] = action(*args)


def _hand_out() -> None:
    # The field's value when clicked, read here: arguments bound when the button was drawn may be a rerun old.
    _do(lesson.hand_out, int(st.session_state[LENGTH_KEY]))


@st.fragment(run_every=5)
def teacher_panel() -> None:
    """Hand out the cells (with their length), stop, reset them; cancel anyone's queued or running run. Live:
    people arrive and take cells, and runs come and end, while the page stays open."""
    if OUTCOME_KEY in st.session_state:
        done, message = st.session_state.pop(OUTCOME_KEY)
        st.toast(message, icon=":material/check:" if done else ":material/error:")
    handing_out, iterations, counts = lesson.cells_handed_out()
    length = lesson.cell_length(iterations)
    # The field shows the cells' length when it changes (here, or in another tab); its first value is put in the
    # session, not given as `value`: a widget given both warns in the server log.
    if LENGTH_KEY not in st.session_state or (handing_out and st.session_state.get(SHOWN_LENGTH_KEY) != iterations):
        st.session_state[SHOWN_LENGTH_KEY] = iterations
        st.session_state[LENGTH_KEY] = length
    with st.container(border=True):
        st.subheader(":material/school: Teacher")
        cells, cancel = st.columns(2, gap="large")
        with cells:
            st.number_input("Each cell's length (iterations)", 1, 64_000, key=LENGTH_KEY)
            given = ", ".join(f"{depth} layers: {counts[depth]}" for depth in CELL_DEPTHS)
            st.caption(f"Handing out cells of {length:,} iterations, in turn as "
                       f"people open Train. People per cell: {given}." if handing_out else
                       f"Not handing out cells: people pick their own nets. People per cell so far: {given}.")
            with st.container(horizontal=True):
                st.button("Change the length" if handing_out else "Hand out cells", key="class_hand_out",
                          on_click=_hand_out, type="primary")
                st.button("Stop handing out", key="class_stop", disabled=not handing_out,
                          on_click=_do, args=(lesson.stop_handing_out,))
                # A popover as the confirmation: one stray click must not undo a room's handing out.
                with st.popover("Reset assignments", help="Forget every cell handed out."):
                    st.write(f"Forget the {sum(counts.values())} cells handed out? The next person to open Train "
                             f"gets {CELL_DEPTHS[0]} layers again; runs are kept.")
                    st.button("Reset", key="class_reset", type="primary", on_click=_do,
                              args=(lesson.reset_assignments,))
        with cancel:
            cancel_run()


def cancel_run() -> None:
    """The teacher's cancel list."""
    choices = lesson.active_choices()
    keep_valid("class_cancel_run", choices)
    run_id = st.selectbox("Anyone's queued or running run", list(choices), format_func=choices.get,
                          key="class_cancel_run", placeholder="No run is queued or running")
    st.button("Cancel run", key="class_cancel", disabled=run_id is None, icon=":material/stop:",
              on_click=_do, args=(lesson.cancel, run_id),
              help="A running run stops after saving a checkpoint; its owner can resume it.")
