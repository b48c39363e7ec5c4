"""Compare: two nets side by side, typically a plain net and its residual twin."""
import streamlit as st

from explorer import plots
from explorer.architecture import cache, charts, tables, views, widgets
from explorer.setup import setup_page
from explorer.url_state import IN_URL

# Table 2 and Fig. 4 compare the twins with option A, so the residual net adds no parameters.
PAIRS = {
    "plain-34 vs ResNet-34": (widgets.paper_net("plain34"), widgets.paper_net("resnet34", shortcut="A")),
    "plain-56 vs ResNet-56": (widgets.paper_net("plain56"), widgets.paper_net("resnet56")),
}
SIDES = ("left", "right")

setup_page("Compare", ":material/compare_arrows:")
st.title(":material/compare_arrows: Compare")
st.caption("Two nets side by side: what a shortcut costs, and what depth costs.")

switch, batch = st.columns([3, 1], vertical_alignment="bottom")
with switch:
    st.write("Quick pairs:")
    for column, (label, (left, right)) in zip(st.columns(len(PAIRS)), PAIRS.items()):
        column.button(label, key=f"compare_pair_{left.depth}", on_click=widgets.set_named_nets,
                      args=({"left": left, "right": right},), width="stretch")
batch_size = batch.number_input("Training batch size (images)", 1, 4096, 128, key="compare_batch", bind=IN_URL,
                                help=views.BATCH_HELP)

specs = []
for column, side, default in zip(st.columns(2, gap="large"), SIDES, PAIRS["plain-34 vs ResNet-34"]):
    with column.expander(f"{side.title()} net", expanded=True):
        specs.append(widgets.net_picker(side, default=default))
if None in specs:
    st.stop()

left, right = (cache.net_summary(spec) for spec in specs)
for column, side, summary, baseline in zip(st.columns(2, gap="large"), SIDES, (left, right), (None, left)):
    with column:
        st.subheader(views.display_name(summary))
        st.caption(views.description(summary))
        views.totals(summary, batch_size, per_row=2, baseline=baseline, paper=False)
        # Collapsed stages keep two diagrams readable at half width.
        views.diagram(summary, f"compare_{side}", expand_up_to=0)

st.subheader("What changes")
differences = tables.difference_table(left, right)
st.dataframe(differences, hide_index=True, width="content",
             column_config={column: st.column_config.NumberColumn(format="localized")
                            for column in differences.columns[1:]})
st.caption("Identity and zero-pad shortcuts (option A) add no parameters and no mult-adds, only one addition per "
           "output value of a block (§3.1); projections (options B, C) add 1×1 convolutions.")

st.subheader("Depth sweep: CIFAR nets")
plots.show(charts.depth_sweep_figure(cache.depth_sweep()), "compare_sweep", "depth-sweep")
st.caption("Plain and residual (option A) nets of the same depth have exactly the same parameters and mult-adds, "
           "so their lines coincide: the shortcuts are free. Both grow linearly with depth (log-log axes).")
