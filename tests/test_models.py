"""The paper's facts about its networks, pinned (He et al., 2015, Tables 1 and 6, §3.3, §4.2)."""
import pickle
import re

import pytest
import torch
import torchvision
from torch import nn

import resnet_core as rc
from resnet_core.nets.blocks import ResidualAdd, ZeroPadShortcut

CIFAR_TABLE6_PARAMS = {20: 0.27e6, 32: 0.46e6, 44: 0.66e6, 56: 0.85e6, 110: 1.7e6, 1202: 19.4e6}
IMAGENET_TABLE1_MULT_ADDS = {18: 1.8e9, 34: 3.6e9, 50: 3.8e9, 101: 7.6e9, 152: 11.3e9}
TORCHVISION_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}


def count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize("depth", CIFAR_TABLE6_PARAMS)
def test_cifar_parameters_match_table6(depth):
    params = rc.count_parameters(rc.build_model(f"resnet{depth}"))
    # Table 6 rounds to two significant digits (0.27M, 1.7M, 19.4M).
    assert params == pytest.approx(CIFAR_TABLE6_PARAMS[depth], rel=0.03)


@pytest.mark.parametrize("depth", IMAGENET_TABLE1_MULT_ADDS)
def test_imagenet_mult_adds_match_table1(depth):
    table = rc.layer_table(rc.build_model(f"resnet{depth}"))
    assert table["mult_adds"].sum() == pytest.approx(IMAGENET_TABLE1_MULT_ADDS[depth], rel=0.03)


def test_plain34_costs_what_resnet34_costs():
    # §4.1: the 34-layer plain baseline has 3.6 billion FLOPs, like its residual twin with option A.
    plain = rc.layer_table(rc.build_model("plain34"))["mult_adds"].sum()
    residual = rc.layer_table(rc.build_model("resnet34", shortcut="A"))["mult_adds"].sum()
    assert plain == residual == pytest.approx(3.6e9, rel=0.03)


@pytest.mark.parametrize("depth", TORCHVISION_PARAMS)
def test_torchvision_variant_loads_torchvision_weights_and_agrees(depth):
    reference = getattr(torchvision.models, f"resnet{depth}")().eval()
    ours = rc.build_model(f"resnet{depth}", variant="torchvision").eval()
    assert rc.count_parameters(ours) == TORCHVISION_PARAMS[depth]
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


def test_paper_variant_strides_the_first_1x1_conv():
    paper = rc.build_model("resnet50").layer2[0]
    torchvision_like = rc.build_model("resnet50", variant="torchvision").layer2[0]
    assert (paper.conv1.stride, paper.conv2.stride) == ((2, 2), (1, 1))
    assert (torchvision_like.conv1.stride, torchvision_like.conv2.stride) == ((1, 1), (2, 2))


def test_option_a_adds_no_parameters_over_the_plain_net():
    for depth in (20, 56):
        residual = rc.build_model(f"resnet{depth}", shortcut="A")
        assert rc.count_parameters(residual) == rc.count_parameters(rc.build_model(f"plain{depth}"))
        assert count(residual, ZeroPadShortcut) == 2  # one per stage that changes dimensions
    assert rc.count_parameters(rc.build_model("resnet34", shortcut="A")) == rc.count_parameters(
        rc.build_model("plain34"))


def test_option_b_projects_only_where_dimensions_change_and_c_everywhere():
    def projections(model):
        return sum(isinstance(b.downsample, nn.Sequential) for s in model.stages for b in s)

    blocks = sum(rc.get_spec("resnet34").blocks_per_stage)
    assert projections(rc.build_model("resnet34", shortcut="B")) == 3
    assert projections(rc.build_model("resnet34", shortcut="C")) == blocks
    assert projections(rc.build_model("resnet50", shortcut="B")) == 4  # conv2_x widens 64 -> 256 too
    assert projections(rc.build_model("resnet20", shortcut="C")) == 9


def test_plain_nets_have_no_additions_and_residual_nets_one_per_block():
    for depth in (20, 34, 50):
        plain, residual = rc.build_model(f"plain{depth}"), rc.build_model(f"resnet{depth}")
        assert count(plain, ResidualAdd) == 0
        assert not any(hasattr(b, "downsample") for s in plain.stages for b in s)
        assert count(residual, ResidualAdd) == sum(residual.spec.blocks_per_stage)


@pytest.mark.parametrize("name, stage_shapes", [
    ("resnet34", [(64, 56, 56), (64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]),
    ("resnet50", [(64, 56, 56), (256, 56, 56), (512, 28, 28), (1024, 14, 14), (2048, 7, 7)]),
    ("plain18", [(64, 56, 56), (64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]),
    ("resnet20", [(16, 32, 32), (16, 32, 32), (32, 16, 16), (64, 8, 8)]),
])
def test_stage_output_sizes_match_table1_and_section_4_2(name, stage_shapes):
    model = rc.build_model(name)
    stages = rc.stage_table(model)
    assert list(stages["output_shape"][:-1]) == stage_shapes
    assert stages["weighted_layers"].sum() == model.spec.depth


@pytest.mark.parametrize("depth", [20, 56, 110])
def test_cifar_nets_are_6n_plus_2_layers_with_16_32_64_filters(depth):
    model = rc.build_model(f"plain{depth}")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) + 1 == depth  # + the fc layer
    assert sorted({c.out_channels for c in convs}) == [16, 32, 64]


def test_he_initialisation():
    conv = rc.build_model("plain20").layer3[0].conv2  # 64 filters of 3x3x64: fan_out = 576
    assert conv.weight.std().item() == pytest.approx((2 / 576) ** 0.5, rel=0.05)


def test_every_operation_is_a_module_used_once():
    model = rc.build_model("resnet50")
    modules = [m for _, m in model.named_modules(remove_duplicate=False)]
    assert len(modules) == len({id(m) for m in modules})
    calls: dict[int, int] = {}
    hooks = [m.register_forward_hook(lambda m, i, o: calls.__setitem__(id(m), calls.get(id(m), 0) + 1))
             for m in modules if not list(m.children())]
    model(torch.randn(1, 3, 64, 64))
    for hook in hooks:
        hook.remove()
    assert set(calls.values()) == {1}


@pytest.mark.parametrize("name", rc.list_models())
def test_every_named_net_trains_a_step_without_nan_and_pickles(name):
    torch.manual_seed(0)
    model = rc.build_model(name)
    # ImageNet nets at a small resolution: the forward/backward path is the same, 100x cheaper.
    size = 64 if model.spec.family == "imagenet" else 32
    if name.endswith("1202"):  # the only net whose full backward takes seconds; two images suffice
        x = torch.randn(2, 3, size, size)
    else:
        x = torch.randn(4, 3, size, size)
    logits = model(x)
    assert logits.shape == (x.shape[0], model.spec.num_classes)
    assert torch.isfinite(logits).all()
    logits.logsumexp(1).mean().backward()
    if name != "plain1202":  # see test_plain1202_gradients_overflow_where_resnet1202s_do_not
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    clone = pickle.loads(pickle.dumps(model))
    assert clone.spec == model.spec
    model.eval(), clone.eval()
    with torch.no_grad():
        torch.testing.assert_close(clone(x), model(x))


def test_plain1202_gradients_overflow_where_resnet1202s_do_not():
    # Gradients of a deep plain net with BN grow geometrically towards the input (plain-110's first
    # conv already sees ~1e6); 1,200 layers overflow fp32. Shortcuts keep ResNet-1202's finite, which
    # is why the paper trains it (Table 6) and never its plain twin.
    def first_conv_gradient(name: str) -> torch.Tensor:
        torch.manual_seed(0)
        model = rc.build_model(name)
        model(torch.randn(4, 3, 32, 32)).logsumexp(1).mean().backward()
        return model.conv1.weight.grad

    assert not torch.isfinite(first_conv_gradient("plain1202")).all()
    assert torch.isfinite(first_conv_gradient("resnet1202")).all()


def test_custom_spec_builds_what_it_says_and_reports_it_back():
    spec = rc.NetSpec(family="cifar", block="bottleneck", blocks_per_stage=(1, 2), widths=(8, 16),
                      residual=True, shortcut="B", input_size=16, num_classes=3)
    model = rc.build_model(spec)
    assert model.spec == spec and spec.depth == 1 + 3 * 3 + 1
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 3)
    assert rc.stage_table(model)["output_shape"].tolist()[1:3] == [(32, 16, 16), (64, 8, 8)]
    assert rc.NetSpec.from_dict(spec.to_dict()) == spec


def test_plain_twin_is_the_same_spec_with_residual_off():
    spec = rc.get_spec("resnet56")
    assert spec.twin() == rc.get_spec("plain56")
    assert spec.twin().twin() == spec
    assert rc.build_model("resnet20", num_classes=100).spec.name == "resnet20"
    assert rc.cifar_spec(50).family == "cifar" and rc.get_spec("resnet50").family == "imagenet"


@pytest.mark.parametrize("name, allowed", [
    ("resnet21", "6n+2"), ("plain0", "6n+2"), ("resnet-5", "allowed"), ("vgg16", "allowed"),
    ("resnet2", "6n+2"), ("", "allowed"), (None, "allowed"),
])
def test_unknown_names_say_what_is_allowed(name, allowed):
    with pytest.raises(ValueError, match=re.escape(allowed)) as error:
        rc.build_model(name)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("options, allowed", [
    (dict(shortcut="D"), "allowed: A, B, C"),
    (dict(variant="timm"), "allowed: paper, torchvision"),
    (dict(num_classes=0), "at least 1"),
])
def test_bad_options_say_what_is_allowed(options, allowed):
    with pytest.raises(ValueError, match=re.escape(allowed)):
        rc.build_model("resnet20", **options)


@pytest.mark.parametrize("fields, allowed", [
    (dict(widths=(16, 0, 64)), "at least 1"),
    (dict(widths=(16, -32, 64)), "at least 1"),
    (dict(blocks_per_stage=(3, 0, 3)), "at least 1"),
    (dict(widths=(16, 32)), "same number of stages"),
    (dict(block="wide"), "allowed: basic, bottleneck"),
    (dict(family="mnist"), "allowed: cifar, imagenet"),
    (dict(input_size=2), "at least 4 pixels"),
])
def test_bad_custom_specs_say_what_is_allowed(fields, allowed):
    base = dict(family="cifar", block="basic", blocks_per_stage=(3, 3, 3), widths=(16, 32, 64))
    with pytest.raises(ValueError, match=re.escape(allowed)):
        rc.build_model(rc.NetSpec(**{**base, **fields}))
