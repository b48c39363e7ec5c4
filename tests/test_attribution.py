"""Captum attributions: right shape, finite, Grad-CAM on a map >= 8x8, and the caller's model untouched."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import resnet_core as rc
from resnet_core.explain.attribution import GRAD_CAM_MIN_MAP_SIZE, METHODS, attribute, grad_cam_layer

# An ImageNet-family net (7x7 stem, max-pool, bottlenecks) small enough for a test: 64 px input.
TINY_IMAGENET = rc.NetSpec(family="imagenet", block="bottleneck", blocks_per_stage=(1, 1, 1, 1),
                           widths=(4, 8, 16, 32), input_size=64, num_classes=10)


def net(name_or_spec) -> rc.ResNet:
    torch.manual_seed(0)
    return rc.build_model(name_or_spec)


def image_for(model: rc.ResNet) -> torch.Tensor:
    size = model.spec.input_size
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module", params=["resnet8", "plain8", TINY_IMAGENET], ids=["resnet8", "plain8", "tiny-imagenet"])
def model(request) -> rc.ResNet:
    return net(request.param)


@pytest.mark.parametrize("method", METHODS)
def test_map_has_the_input_size_and_is_finite(model, method):
    x = image_for(model)
    result = attribute(model, x, method)
    assert result.map.shape == x.shape[-2:]
    assert np.isfinite(result.map).all() and result.scale > 0
    assert result.map.min() >= (-1 if result.signed else 0) and result.map.max() <= 1
    assert result.method == method and 0 <= result.target < model.spec.num_classes
    assert 0 <= result.target_probability <= 1


def test_grad_cam_uses_the_last_block_with_a_map_of_at_least_8x8(model):
    x = image_for(model)
    result = attribute(model, x, "grad_cam", target=3)
    assert result.target == 3
    assert min(result.layer_map_size) >= GRAD_CAM_MIN_MAP_SIZE
    # CIFAR: 32/16/8 px stages -> the last block of stage 3; 64 px ImageNet: 16/8/4/2 -> stage 2.
    assert result.layer == {"cifar": "layer3.0", "imagenet": "layer2.0"}[model.spec.family]


@pytest.mark.parametrize("name, size, layer, map_size", [
    ("resnet20", 32, "layer3.2", (8, 8)),
    ("resnet18", 224, "layer3.1", (14, 14)),
    ("resnet18", 16, "layer1.1", (4, 4)),  # nothing reaches 8x8: the largest map is the best there is
])
def test_grad_cam_layer_follows_the_input_size(name, size, layer, map_size):
    assert grad_cam_layer(rc.build_model(name).eval(), torch.zeros(1, 3, size, size)) == (layer, map_size)


def test_integrated_gradients_evaluates_in_bounded_batches():
    model, x = net("resnet8"), image_for(net("resnet8"))
    batch_sizes = []
    model.conv1.register_forward_pre_hook(lambda _module, inputs: batch_sizes.append(inputs[0].shape[0]))
    small = attribute(model, x, "integrated_gradients", target=2, n_steps=20, internal_batch_size=6)
    assert max(batch_sizes) <= 6 and sum(batch_sizes) >= 20
    whole = attribute(model, x, "integrated_gradients", target=2, n_steps=20, internal_batch_size=20)
    np.testing.assert_allclose(small.map, whole.map, atol=1e-4)


def test_callers_model_modes_parameters_and_grads_are_unchanged():
    model = net("resnet8").train()
    model.layer2[0].bn1.eval()  # a caller's frozen BN must stay frozen
    modes = {name: module.training for name, module in model.named_modules()}
    state = {key: value.clone() for key, value in model.state_dict().items()}
    x = image_for(model)
    for method in METHODS:
        attribute(model, x, method)
    assert {name: module.training for name, module in model.named_modules()} == modes
    assert all(torch.equal(state[key], value) for key, value in model.state_dict().items())  # incl. BN statistics
    assert all(parameter.grad is None for parameter in model.parameters())
    assert not x.requires_grad


@pytest.mark.parametrize("private_copy", [True, False])
def test_private_copy_never_switches_the_callers_model(private_copy):
    model = net("resnet8").train()
    modes_seen_by_forward = []
    # Hooks travel with a deep copy, but this one reads the caller's model.
    model.fc.register_forward_hook(lambda *_: modes_seen_by_forward.append(model.training))
    attribute(model, image_for(model), "saliency", private_copy=private_copy)
    assert set(modes_seen_by_forward) == ({True} if private_copy else {False})


def test_one_image_and_a_known_method_and_class_are_required():
    model = net("resnet8")
    with pytest.raises(ValueError, match="allowed: integrated_gradients, saliency, grad_cam, occlusion"):
        attribute(model, image_for(model), "lime")
    with pytest.raises(ValueError, match=r"\(1, 3, H, W\)"):
        attribute(model, torch.zeros(2, 3, 32, 32), "saliency")
    with pytest.raises(ValueError, match="allowed: 0 to 9"):
        attribute(model, image_for(model), "saliency", target=10)
