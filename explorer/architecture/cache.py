"""Cached summaries of nets, so the second look at a net is instant.

Caches hold tables and counts keyed on the spec's fields, never a model: a model someone trains
must never be the one another page reads.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

import resnet_core as rc
from explorer.architecture import tables
from resnet_core.nets import specs


@dataclass(frozen=True)
class NetSummary:
    """Everything the Architecture and Compare pages show about one net."""

    spec: rc.NetSpec
    layers: pd.DataFrame  # rc.layer_table: one row per leaf module
    stages: pd.DataFrame  # rc.stage_table: Table 1's rows
    blocks: pd.DataFrame  # tables.block_table: what the diagram draws
    params: int

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def depth(self) -> int:
        return self.spec.depth

    @property
    def mult_adds(self) -> int:
        """Multiply-accumulates for one image: what the paper's Table 1 calls FLOPs."""
        return int(self.layers["mult_adds"].sum())

    @property
    def flops(self) -> int:
        """FLOPs in today's sense: a multiply and an add are two operations."""
        return 2 * self.mult_adds

    def activation_bytes(self, batch_size: int) -> int:
        return rc.activation_bytes(self.layers, batch_size)


def net_summary(spec: rc.NetSpec) -> NetSummary:
    return _summarise(spec.to_dict())


@st.cache_data(max_entries=64, show_spinner="Building the net and counting its layers…")
def _summarise(spec_fields: dict) -> NetSummary:
    spec = rc.NetSpec.from_dict(spec_fields)
    model = rc.build_model(spec)
    layers = rc.layer_table(model)
    return NetSummary(spec, layers, rc.stage_table(model, layers), tables.block_table(layers),
                      rc.count_parameters(model))


@st.cache_data(show_spinner="Summarising the CIFAR nets of every depth…")
def depth_sweep(depths: tuple[int, ...] = specs.CIFAR_PAPER_DEPTHS) -> pd.DataFrame:
    """Parameters and mult-adds of the CIFAR nets (§4.2) against depth, plain and residual (option A)."""
    rows = []
    for depth in depths:
        for residual in (False, True):
            summary = net_summary(rc.cifar_spec(depth, residual=residual))
            rows.append((depth, "residual" if residual else "plain", summary.params, summary.mult_adds))
    return pd.DataFrame(rows, columns=["depth", "net", "params", "mult_adds"])


def paper_context(summary: NetSummary) -> pd.DataFrame:
    """The paper's numbers for this net beside the ones computed here (no rows for custom nets).

    Columns: source (table), quantity (with the paper's conditions), paper, paper top-5 (a top-1 error's top-5
    partner from the same table, Tables 3 and 4; only for nets the paper gives one), computed (empty where only
    training can tell).
    """
    computed = {"parameters": summary.params, "mult-adds (the paper's \"FLOPs\")": summary.mult_adds}
    facts = rc.paper_facts(summary.spec)
    top5 = {fact.table: fact for fact in facts if fact.quantity == TOP5}
    rows = []
    for fact in facts:
        if fact.quantity == TOP5:
            continue  # shown beside its top-1
        mine = computed.get(fact.quantity)
        quantity = f"{fact.quantity} ({fact.note})" if fact.note else fact.quantity
        partner = top5.get(fact.table) if fact.quantity == TOP1 else None
        rows.append((fact.table, quantity, _paper_value(fact), "" if partner is None else _paper_value(partner),
                     "" if mine is None else tables.count_text(mine)))
    frame = pd.DataFrame(rows, columns=["source", "quantity", "paper", "paper top-5", "computed"])
    return frame if frame["paper top-5"].any() else frame.drop(columns="paper top-5")


TOP1, TOP5 = "ImageNet top-1 error", "ImageNet top-5 error"  # paper_facts' names


def _paper_value(fact: rc.PaperFact) -> str:
    return f"{fact.value:g} %" if fact.unit == "%" else tables.count_text(fact.value)
