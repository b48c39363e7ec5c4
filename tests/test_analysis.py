"""Fig. 7's layer responses and per-layer gradient norms on tiny plain and residual nets."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import resnet_core as rc
from resnet_core.explain.analysis import gradient_norms, layer_response_stds, response_layers

TINY_IMAGENET = rc.NetSpec(family="imagenet", block="bottleneck", blocks_per_stage=(1, 1, 1, 1),
                           widths=(4, 8, 16, 32), input_size=64, num_classes=10)


def net(name_or_spec, **options) -> rc.ResNet:
    torch.manual_seed(0)
    return rc.build_model(name_or_spec, **options)


def batch(model: rc.ResNet, count: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    size = model.spec.input_size
    return (torch.randn(count, 3, size, size, generator=generator),
            torch.randint(0, model.spec.num_classes, (count,), generator=generator))


def snapshot(model: nn.Module) -> tuple[dict, dict]:
    return ({name: module.training for name, module in model.named_modules()},
            {key: value.clone() for key, value in model.state_dict().items()})


def assert_untouched(model: nn.Module, before: tuple[dict, dict]) -> None:
    modes, state = before
    assert {name: module.training for name, module in model.named_modules()} == modes
    assert all(torch.equal(state[key], value) for key, value in model.state_dict().items())
    assert all(parameter.grad is None for parameter in model.parameters())


@pytest.mark.parametrize("name_or_spec, first", [("resnet8", "bn1"), ("plain8", "bn1"),
                                                  (TINY_IMAGENET, "layer1.0.bn2")], ids=["resnet8", "plain8", "tiny-imagenet"])
def test_one_response_per_3x3_conv_in_forward_order(name_or_spec, first):
    model = net(name_or_spec)
    convs_3x3 = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    stds = layer_response_stds(model, batch(model)[0])
    assert len(stds) == len(convs_3x3) == len(response_layers(model))
    assert stds["layer"].tolist() == list(range(1, len(stds) + 1))
    assert stds["name"].iloc[0] == first  # the 7x7 ImageNet stem is not a 3x3 layer
    assert all(isinstance(model.get_submodule(name), nn.BatchNorm2d) for name in stds["name"])


def test_residual_and_plain_at_init_give_finite_stds_for_the_same_layers():
    residual, plain = net("resnet14"), net("plain14")
    images = batch(residual)[0]
    residual_stds, plain_stds = layer_response_stds(residual, images), layer_response_stds(plain, images)
    assert residual_stds["name"].tolist() == plain_stds["name"].tolist()
    for stds in (residual_stds, plain_stds):
        assert all(math.isfinite(s) and s > 0 for s in stds["std"])


def test_std_is_over_every_element_of_the_bn_output_and_independent_of_batching():
    model = net("resnet8")
    images = batch(model, 10)[0]
    whole, in_pieces = layer_response_stds(model, images), layer_response_stds(model, images, batch_size=3)
    assert whole["std"].tolist() == pytest.approx(in_pieces["std"].tolist(), rel=1e-6)
    with torch.no_grad():
        stem_response = model.eval().bn1(model.conv1(images))  # (N, 16, 32, 32)
    assert whole["std"].iloc[0] == pytest.approx(float(stem_response.std()), rel=1e-5)


@pytest.mark.parametrize("name_or_spec, options", [("resnet8", {}), ("plain8", {}), ("resnet8", {"shortcut": "B"}),
                                                   (TINY_IMAGENET, {})],
                         ids=["resnet8", "plain8", "resnet8-projections", "tiny-imagenet"])
def test_gradient_norms_for_every_weighted_layer(name_or_spec, options):
    model = net(name_or_spec, **options)
    names = [name for name, module in model.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))]
    norms = gradient_norms(model, *batch(model))
    assert norms["name"].tolist() == names  # projection shortcuts included, in forward order
    assert norms["name"].iloc[-1] == "fc" and norms["kind"].iloc[-1] == "Linear"
    assert all(math.isfinite(n) and n > 0 for n in norms["grad_norm"])


def test_callers_model_is_untouched():
    model = net("resnet8").train()
    before = snapshot(model)
    images, labels = batch(model)
    layer_response_stds(model, images)
    gradient_norms(model, images, labels)  # train-mode BN would update the running statistics
    assert_untouched(model, before)
