"""Class: every run on the server pooled into Fig. 6, live; the teacher hands out the cells and can cancel runs."""
import streamlit as st

from explorer import identity
from explorer.classroom import lesson, views
from explorer.setup import setup_page
from explorer.url_state import IN_URL

setup_page("Class", ":material/groups:")
st.title(":material/groups: Class")
st.caption("Everyone's runs on this server, pooled per net into the paper's Fig. 6: plain nets left, residual right, "
           "one colour per depth. No one person can train all eight nets on a shared CPU; a room can. Only counts "
           "are shown, and your own runs, marked *you*.")

if refusal := identity.sign_in_from_url():
    st.error(refusal, icon=":material/lock:")
if cell := lesson.your_cell():
    st.info(f"{lesson.cell_line(cell.depth, cell.iterations)}: the Train page has it ready.",
            icon=":material/school:")

hours_column, dataset_column, length_column = st.columns(3)
hours = hours_column.number_input("Runs started in the last (hours)", 1, 24 * 14, 3, key="class_hours", bind=IN_URL)
recent = lesson.recent_runs(hours)
datasets, lengths = lesson.filter_choices(recent)
dataset = length = None  # no runs yet: the filters appear with the first (the live part below reruns the page)
if recent:
    views.keep_valid("class_dataset", datasets)
    views.keep_valid("class_length", lengths)
    dataset = dataset_column.selectbox("Dataset", datasets, key="class_dataset", bind=IN_URL,
                                       format_func=lesson.dataset_label)
    length = length_column.selectbox("Length", lengths, key="class_length", bind=IN_URL,
                                     format_func="{:,} iterations".format,
                                     help="Runs of other lengths follow other schedules: they are pooled apart.")


@st.fragment(run_every=2)
def room() -> None:
    views.room(hours, dataset, length, (datasets, lengths))


room()
if identity.is_teacher():
    views.teacher_panel()
