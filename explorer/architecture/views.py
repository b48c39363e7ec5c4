"""Render helpers shared by the Architecture and Compare pages: totals, paper context, diagram, layer table."""
from __future__ import annotations

import streamlit as st

from explorer import plots
from explorer.architecture import charts, tables
from explorer.architecture.cache import NetSummary, paper_context
from resnet_core import paper_facts

BATCH_HELP = "Images per training step; the paper uses 128 on CIFAR (§4.2) and 256 on ImageNet (§3.4)."
# One height for every card, with or without a delta line, so rows and side-by-side columns line up.
_METRIC_HEIGHT_PX = 130
_PAPER_METRIC = {"parameters": "Parameters", "mult-adds (the paper's \"FLOPs\")": "Mult-adds per image"}


def display_name(summary: NetSummary) -> str:
    """`ResNet-56`, `plain-34`, or the descriptive name of a custom net."""
    spec = summary.spec
    if spec.name == f"resnet{spec.depth}":
        return f"ResNet-{spec.depth}"
    return f"plain-{spec.depth}" if spec.name == f"plain{spec.depth}" else spec.name


def description(summary: NetSummary) -> str:
    spec = summary.spec
    stages = " · ".join(f"{count}×{width}" for count, width in zip(spec.blocks_per_stage, spec.widths))
    shortcuts = f"shortcut option {spec.shortcut}" if spec.residual else "no shortcuts (plain)"
    data = "CIFAR-10" if spec.family == "cifar" else "ImageNet"
    return (f"{data} · {spec.input_size}×{spec.input_size} input · {spec.block} blocks × width per stage: "
            f"{stages} · {shortcuts}")


def totals(summary: NetSummary, batch_size: int, *, per_row: int = 3, baseline: NetSummary | None = None,
           paper: bool = True) -> None:
    """The net's totals as metrics; deltas show the paper's figure (`paper`), or the difference from `baseline`."""
    spec, layers = summary.spec, summary.layers
    size = f"{spec.input_size}×{spec.input_size}"
    final = tables.final_feature_shape(layers)
    published = {_PAPER_METRIC[fact.quantity]: fact for fact in paper_facts(spec)
                 if paper and fact.quantity in _PAPER_METRIC}
    metrics = [
        ("Depth", spec.depth, baseline and baseline.depth, None,
         f"Weighted layers (convolutions and the fully connected layer), counted as in the paper's names; "
         f"projection shortcuts are not counted. The layer table lists all {len(layers):,} modules."),
        ("Parameters", summary.params, baseline and baseline.params, "compact",
         f"Learned weights, including BatchNorm scales and shifts: exactly {summary.params:,}."),
        ("Mult-adds per image", summary.mult_adds, baseline and baseline.mult_adds, "compact",
         f"Multiply-accumulate operations for one {size} image: exactly {summary.mult_adds:,}. "
         "The paper's Table 1 calls these FLOPs."),
        ("FLOPs (2 × mult-adds)", summary.flops, baseline and baseline.flops, "compact",
         "Floating-point operations in today's usual sense, a multiply and an add counting as two: "
         f"2 × mult-adds = {summary.flops:,}."),
        ("Output size (C×H×W)", tables.shape_text(final), None, None,
         f"The last stage's feature map (channels × height × width), which global average pooling turns into "
         f"a {final[0]}-d vector for the {spec.num_classes}-way fully connected layer."),
        (f"Activations (batch {batch_size})", summary.activation_bytes(batch_size),
         baseline and baseline.activation_bytes(batch_size), "bytes",
         f"Memory of the layer outputs that one training batch of {batch_size} images keeps for the backward "
         "pass, in fp32 (an upper-bound estimate: every module's output counted once)."),
    ]
    columns = st.columns(per_row)
    for index, (label, value, other, number_format, help_text) in enumerate(metrics):
        with columns[index % per_row]:
            if label in published:
                fact = published[label]
                st.metric(label, value, delta=f"paper: {tables.count_text(fact.value)} ({fact.table})",
                          delta_color="gray", delta_arrow="off", format=number_format, help=help_text, border=True,
                          height=_METRIC_HEIGHT_PX)
            else:
                delta = None if other is None or other == value else value - other
                st.metric(label, value, delta=delta, delta_color="off", format=number_format, help=help_text,
                          border=True, height=_METRIC_HEIGHT_PX)


def paper_table(summary: NetSummary) -> None:
    """What the paper reports for this net, beside what is computed here."""
    context = paper_context(summary)
    if context.empty:
        st.caption("The paper reports no numbers for this exact net (custom nets, other shortcut options or "
                   "variants); the totals above are computed here.")
        return
    st.dataframe(context, hide_index=True, width="stretch",
                 column_config={"computed": st.column_config.TextColumn(
                     "computed here", help="Counted on the net built here; errors need training.")})


def diagram(summary: NetSummary, key: str, *, expand_up_to: int = charts.MAX_BOXES_PER_ROW) -> None:
    """The network diagram with a per-stage expand control; stages of up to `expand_up_to` blocks start expanded."""
    blocks = summary.blocks
    stage_sizes = blocks.iloc[1:-1].groupby("stage", sort=False).size()
    expanded = st.pills(
        # Keyed by the stage sizes, so a net of another shape starts from its own default.
        "Expanded stages", list(stage_sizes.index), selection_mode="multi",
        key=f"{key}_expanded_{'-'.join(map(str, stage_sizes))}",
        default=[stage for stage, size in stage_sizes.items() if size <= expand_up_to],
        help=f"An expanded stage shows every block (up to {charts.MAX_BOXES_PER_ROW}); a collapsed one shows its "
             "first block, where the shape changes, and one box for the identical rest.",
    )
    spec = summary.spec
    figure = charts.network_diagram(blocks, (3, spec.input_size, spec.input_size), expanded or ())
    # A PNG through the camera; its data are the layer table's, downloaded there as CSV.
    st.plotly_chart(figure, key=f"{key}_diagram", config=plots.png_config(f"{spec.name}-diagram"))


def layer_table(summary: NetSummary, key: str) -> None:
    """Table 1's stage rows or every layer, filtered by text, with a CSV download of what is shown."""
    left, right = st.columns([1, 2])
    view = left.segmented_control("Rows", ("stages", "layers"), key=f"{key}_view", default="stages", required=True,
                                  format_func={"stages": "Stages (Table 1)", "layers": "Every layer"}.get)
    text = right.text_input("Filter rows", key=f"{key}_filter", placeholder="e.g. conv3_x, downsample, ReLU",
                            help="Keeps rows whose name, kind, stage or shape contains this text (any case).")
    full = tables.for_display(summary.stages if view == "stages" else summary.layers)
    shown = tables.filter_rows(full, text)
    numbers = {column: st.column_config.NumberColumn(label, format="localized", help=help_text)
               for column, label, help_text in (
                   ("params", "parameters", "Learned weights in this row."),
                   ("mult_adds", "mult-adds", "Multiply-accumulates for one image."),
                   ("activations", "activations", "Output values for one image."),
                   ("weighted_layers", "weighted layers", "Convolutions and fc layers, as in the paper's depth."))}
    st.dataframe(shown, hide_index=True, width="stretch", column_config={
        **numbers, "output_shape": st.column_config.TextColumn("output (C×H×W)")})
    st.caption(f"{len(shown):,} of {len(full):,} rows.")
    st.download_button("Download CSV", shown.to_csv(index=False), file_name=f"{summary.name}_{view}.csv",
                       mime="text/csv", key=f"{key}_csv", on_click="ignore", icon=":material/download:")
