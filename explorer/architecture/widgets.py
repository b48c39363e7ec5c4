"""Net pickers: a named net of the paper, or a custom one built with sliders.

Every widget has a key `{prefix}_{field}`, so two pickers can share a page and tests find them, and is bound to
the URL parameter of that name (explorer.url_state): its declared default is the page's net.
"""
from __future__ import annotations

import streamlit as st

import resnet_core as rc
from explorer.url_state import IN_URL, index_of
from resnet_core.nets import specs

FAMILY_LABELS = {"cifar": "CIFAR-10 (32×32 images)", "imagenet": "ImageNet (224×224 images)"}
NAMED_DEPTHS = {"cifar": specs.CIFAR_PAPER_DEPTHS, "imagenet": tuple(specs.IMAGENET_STAGES)}
SHORTCUT_LABELS = {"A": "A · zero-pad", "B": "B · project when shape changes", "C": "C · project always"}
SHORTCUT_HELP = (
    "How a shortcut bridges a block whose output has more channels or a smaller map (§3.3). "
    "A: identity with zero-padded extra channels, no parameters. B: a 1×1 convolution (projection) where "
    "the shape changes, identity elsewhere. C: projections on every block."
)
VARIANT_LABELS = {"paper": "paper: stride in the first 1×1 conv", "torchvision": "torchvision v1.5: stride in the 3×3"}
WIDTH_OPTIONS = (4, 8, 16, 32, 64, 128, 256, 512)
MAX_STAGES = 6
MAX_BLOCKS_PER_STAGE = 200  # ResNet-1202 has 200 blocks per stage
# Larger custom nets would take minutes and gigabytes to summarise; ResNet-152 has 60 M and 11.3 G.
MAX_PARAMS, MAX_MULT_ADDS = 150e6, 40e9


def _key(prefix: str, field: str) -> str:
    return f"{prefix}_{field}"


def paper_net(name: str, **options) -> rc.NetSpec:
    """A net of the spec table by name, e.g. a page's default: `paper_net("resnet34", shortcut="A")`."""
    return rc.get_spec(name, **options)


def set_named_net(prefix: str, spec: rc.NetSpec) -> None:
    """Point a picker at a named net; use as an `on_click` callback or before the picker is drawn."""
    state = st.session_state
    state[_key(prefix, "mode")] = "named"
    state[_key(prefix, "family")] = spec.family
    state[_key(prefix, "depth")] = spec.depth
    state[_key(prefix, "residual")] = spec.residual
    state[_key(prefix, "shortcut")] = spec.shortcut
    state[_key(prefix, "variant")] = spec.variant


def set_named_nets(choices: dict[str, rc.NetSpec]) -> None:
    """Point several pickers (by prefix) at named nets at once: an `on_click` callback for preset buttons."""
    for prefix, spec in choices.items():
        set_named_net(prefix, spec)


def _custom_template(family: str) -> rc.NetSpec:
    """Custom sliders start from the family's smallest paper net: ResNet-20 or ResNet-18."""
    return rc.get_spec("resnet20" if family == "cifar" else "resnet18")


def _named_default(default: rc.NetSpec, family: str) -> rc.NetSpec:
    """What a named picker shows in `family` before anyone changes it: the page's net, or the family's first (plain
    or residual as the page's)."""
    if family == default.family:
        return default
    build = specs.cifar_spec if family == "cifar" else specs.imagenet_spec
    return build(NAMED_DEPTHS[family][0], residual=default.residual)


def _on_family_change(prefix: str, default: rc.NetSpec) -> None:
    # Depths, default shortcut and input size all belong to a family (§3.3 uses B on ImageNet, §4.2 A on CIFAR):
    # back to the family's defaults, which are also what the widgets declare, so the URL drops them.
    family = st.session_state[_key(prefix, "family")]
    named = _named_default(default, family)
    state = st.session_state
    for field in ("depth", "shortcut", "variant"):  # plain or residual stays as chosen
        state[_key(prefix, field)] = getattr(named, field)
    template = _custom_template(family)
    state[_key(prefix, "block")] = template.block
    state[_key(prefix, "stages")] = len(template.widths)
    for index in range(MAX_STAGES):
        state[_key(prefix, f"blocks{index}")] = _template_blocks(template, index)
        state[_key(prefix, f"width{index}")] = _template_width(template, index)
    state[_key(prefix, "input_size")] = template.input_size


def _template_blocks(template: rc.NetSpec, index: int) -> int:
    return template.blocks_per_stage[min(index, len(template.widths) - 1)]


def _template_width(template: rc.NetSpec, index: int) -> int:
    return min(template.widths[0] * 2**index, WIDTH_OPTIONS[-1])


def _too_big(spec: rc.NetSpec) -> str | None:
    """A one-sentence refusal for nets too large to summarise here, from a closed-form estimate."""
    size = spec.input_size // (4 if spec.family == "imagenet" else 1)
    params = mult_adds = 0.0
    for index, (count, width) in enumerate(zip(spec.blocks_per_stage, spec.widths)):
        size = size if index == 0 else max(size // 2, 1)
        # Weights of a block that keeps its shape: two 3x3 convs, or 1x1 reduce + 3x3 + 1x1 restore.
        if spec.block == "basic":
            per_block = 2 * 9 * width * width
        else:
            per_block = 2 * width * width * specs.EXPANSION["bottleneck"] + 9 * width * width
        params += count * per_block
        mult_adds += count * per_block * size * size
    if params > MAX_PARAMS or mult_adds > MAX_MULT_ADDS:
        return (f"This net would have about {params / 1e6:,.0f} M parameters and {mult_adds / 1e9:,.0f} G "
                f"mult-adds; the explorer summarises nets up to {MAX_PARAMS / 1e6:.0f} M and "
                f"{MAX_MULT_ADDS / 1e9:.0f} G, so use fewer blocks, narrower stages or smaller images.")
    return None


def _shortcut_widgets(prefix: str, default: rc.NetSpec) -> tuple[bool, str]:
    residual = st.toggle("Residual (shortcut connections)", default.residual, key=_key(prefix, "residual"),
                         bind=IN_URL,
                         help="Off gives the plain twin: the same layers without shortcuts and additions (§4.1).")
    shortcut = st.radio("Shortcut option", list(SHORTCUT_LABELS), index_of(SHORTCUT_LABELS, default.shortcut),
                        format_func=SHORTCUT_LABELS.get, key=_key(prefix, "shortcut"), disabled=not residual,
                        help=SHORTCUT_HELP, bind=IN_URL)
    return residual, shortcut


def _named_spec(prefix: str, family: str, default: rc.NetSpec) -> rc.NetSpec:
    default = _named_default(default, family)
    depth = st.selectbox("Depth (weighted layers)", NAMED_DEPTHS[family], index_of(NAMED_DEPTHS[family], default.depth),
                         key=_key(prefix, "depth"), bind=IN_URL,
                         help="Convolutional and fully connected layers, counted as in the paper's names.")
    residual, shortcut = _shortcut_widgets(prefix, default)
    variant = "paper"
    if family == "imagenet":  # CIFAR nets have no bottlenecks, so no variants
        bottleneck = specs.IMAGENET_STAGES[depth][0] == "bottleneck"
        chosen = st.selectbox(
            "Bottleneck stride", list(VARIANT_LABELS), index_of(VARIANT_LABELS, default.variant),
            format_func=VARIANT_LABELS.get, key=_key(prefix, "variant"), disabled=not bottleneck, bind=IN_URL,
            help="Where a downsampling bottleneck strides; only ResNet-50/101/152 have bottlenecks. Table 1's FLOPs "
                 "are the paper's; torchvision's pretrained weights need v1.5.")
        variant = chosen if bottleneck else "paper"  # basic blocks are identical in both variants
    build = specs.cifar_spec if family == "cifar" else specs.imagenet_spec
    return build(depth, residual=residual, shortcut=shortcut, variant=variant)


def _custom_spec(prefix: str, family: str, default: rc.NetSpec) -> rc.NetSpec:
    template = _custom_template(family)
    block = st.segmented_control("Block", specs.BLOCK_KINDS, default=template.block, key=_key(prefix, "block"),
                                 required=True, bind=IN_URL,
                                 help="basic: two 3×3 convs (Fig. 5 left). bottleneck: 1×1, 3×3, 1×1 with "
                                      "4× wider output (Fig. 5 right).")
    stages = st.slider("Stages", 1, MAX_STAGES, len(template.widths), key=_key(prefix, "stages"), bind=IN_URL,
                       help="Each stage after the first halves the feature map and usually doubles the width.")
    blocks_per_stage, widths = [], []
    for index in range(stages):
        name = f"conv{index + 2}_x"
        left, right = st.columns(2)
        blocks_per_stage.append(left.slider(f"{name} blocks", 1, MAX_BLOCKS_PER_STAGE,
                                            _template_blocks(template, index), key=_key(prefix, f"blocks{index}"),
                                            bind=IN_URL))
        widths.append(right.select_slider(f"{name} width (channels)", WIDTH_OPTIONS,
                                          _template_width(template, index), key=_key(prefix, f"width{index}"),
                                          bind=IN_URL))
    residual, shortcut = _shortcut_widgets(prefix, _named_default(default, family))
    input_size = st.number_input("Input size (pixels, square)", 1, 1024, template.input_size,
                                 key=_key(prefix, "input_size"), bind=IN_URL,
                                 help="Every stage after the first halves the map; the last stage needs at "
                                      "least one pixel.")
    return rc.NetSpec(family=family, block=block, blocks_per_stage=tuple(blocks_per_stage), widths=tuple(widths),
                      residual=residual, shortcut=shortcut, input_size=int(input_size),
                      num_classes=specs.NUM_CLASSES[family])


def net_picker(prefix: str, default: rc.NetSpec) -> rc.NetSpec | None:
    """Draw a picker in the current container; return its net, or None after a one-line st.error."""
    mode = st.segmented_control("Network", ("named", "custom"), default="named", key=_key(prefix, "mode"),
                                required=True, format_func={"named": "Paper's nets", "custom": "Custom"}.get,
                                bind=IN_URL,
                                help="A net from the paper's tables, or your own stages, blocks and widths.")
    family = st.selectbox("Dataset family", list(FAMILY_LABELS), index_of(FAMILY_LABELS, default.family),
                          format_func=FAMILY_LABELS.get, key=_key(prefix, "family"), on_change=_on_family_change,
                          args=(prefix, default), bind=IN_URL,
                          help="Sets the stem (3×3 conv on CIFAR; 7×7 conv and max pool on ImageNet), the "
                               "image size and the number of classes.")
    try:
        spec = _named_spec(prefix, family, default) if mode == "named" else _custom_spec(prefix, family, default)
    except ValueError as error:
        st.error(str(error))
        return None
    refusal = _too_big(spec)
    if refusal:
        st.error(refusal)
        return None
    return spec
