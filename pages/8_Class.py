"""Class: every run on the server pooled into Fig. 6, live; the teacher hands out the cells and can cancel runs."""
import streamlit as st

from explorer import class_views, classroom, teacher
from explorer.setup import setup_page
from explorer.url_state import IN_URL

setup_page("Class", ":material/groups:")
st.title(":material/groups: Class")
st.caption("Everyone's runs on this server, pooled per net into the paper's Fig. 6: plain nets left, residual right, "
           "one colour per depth. No one person can train all eight nets on a shared CPU; a room can. Only counts "
           "are shown, and your own runs, marked *you*.")

if refusal := teacher.sign_in_from_url():
    st.error(refusal, icon=":material/lock:")
if cell := classroom.your_cell():
    st.info(f"{classroom.cell_line(cell.depth, cell.iterations)}: the Train page has it ready.",
            icon=":material/school:")

hours_column, dataset_column, length_column = st.columns(3)
hours = hours_column.number_input("Runs started in the last (hours)", 1, 24 * 14, 3, key="class_hours", bind=IN_URL)
recent = classroom.recent_runs(hours)
datasets, lengths = classroom.filter_choices(recent)
dataset = length = None  # no runs yet: the filters appear with the first (the live part below reruns the page)
if recent:
    class_views.keep_valid("class_dataset", datasets)
    class_views.keep_valid("class_length", lengths)
    dataset = dataset_column.selectbox("Dataset", datasets, key="class_dataset", bind=IN_URL,
                                       format_func=classroom.dataset_label)
    length = length_column.selectbox("Length", lengths, key="class_length", bind=IN_URL,
                                     format_func="{:,} iterations".format,
                                     help="Runs of other lengths follow other schedules: they are pooled apart.")


@st.fragment(run_every=2)
def room() -> None:
    class_views.room(hours, dataset, length, (datasets, lengths))


room()
if teacher.is_teacher():
    class_views.teacher_panel()
