"""Architecture: build any net of the paper, see how it is made and what it costs."""
import streamlit as st

from explorer.architecture import cache, views, widgets
from explorer.setup import setup_page
from explorer.url_state import IN_URL

setup_page("Architecture", ":material/account_tree:")
st.title(":material/account_tree: Architecture")
st.caption("Pick a net from the paper or build your own; every number below is computed on the net itself.")

with st.sidebar:
    st.header("Network")
    spec = widgets.net_picker("arch", default=widgets.paper_net("resnet56"))
    batch_size = st.number_input("Training batch size (images)", 1, 4096, 128, key="arch_batch", bind=IN_URL,
                                 help=views.BATCH_HELP)
if spec is None:
    st.stop()

summary = cache.net_summary(spec)
st.subheader(views.display_name(summary))
st.caption(views.description(summary))
views.totals(summary, batch_size)
st.markdown("**What the paper reports for this net**")
views.paper_table(summary)

diagram_tab, table_tab = st.tabs(["Diagram", "Layer table"])
with diagram_tab:
    views.diagram(summary, "arch")
with table_tab:
    views.layer_table(summary, "arch")
