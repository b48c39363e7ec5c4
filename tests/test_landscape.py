"""The loss landscape (Li et al. 2018) on tiny nets and synthetic data: filter-normalised directions with biases and
BN at 0, the centre is the model's own loss, a seed reproduces its directions and its numbers, the caller's model is
untouched, and the CLI's contract."""
import copy
import json
import math

import pytest
import torch
from helpers import app_one_torch_thread
from torch import nn

from resnet_core.cli import main
from resnet_core.errors import UserError
from resnet_core.explain.landscape import (MAX_POINTS, axis, iter_landscape_rows, loss_landscape,
                                           random_directions, slice_shape, surface_shape)
from resnet_core.explain import trained  # its test_pipeline, imported bare, would be collected as a test
from resnet_core.nets.model import build_model
from resnet_core.training.checkpoint import save_model
from resnet_core.training.data import synthetic_data
from resnet_core.training.evaluate import loss_and_error

NETS = {"resnet8": {}, "resnet8 option B": {"shortcut": "B"}, "plain8": {}}  # B: a projection conv with its BN


def trained_like(name: str) -> nn.Module:
    """A tiny net whose BN layers hold statistics and affine parameters far from their initial 0s and 1s, one γ
    negative per layer, as a trained net's may: folding them into the convs is then really tested."""
    torch.manual_seed(0)
    model = build_model(name.split()[0], **NETS[name])
    generator = torch.Generator().manual_seed(1)
    for bn in (module for module in model.modules() if isinstance(module, nn.BatchNorm2d)):
        bn.running_mean.normal_(0, 0.3, generator=generator)
        bn.running_var.uniform_(0.5, 2.0, generator=generator)
        bn.weight.data.uniform_(0.5, 1.5, generator=generator)
        bn.weight.data[0] *= -1
        bn.bias.data.normal_(0, 0.2, generator=generator)
    return model.eval()


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny nets run ~10x faster on one thread than on two when another process holds a core (shared machine)."""
    with app_one_torch_thread():
        yield


@pytest.fixture(scope="module")
def data():
    return synthetic_data(96, 8)


def own_loss(model, data, perturbation=None) -> tuple[float, float]:
    """The model's loss and error on every training image, as evaluate computes them, optionally at weights moved by
    `perturbation` (name -> tensor) in a deep copy: what a user would write by hand."""
    if perturbation is not None:
        model = copy.deepcopy(model)
        with torch.no_grad():
            for name, weight in model.named_parameters():
                weight.add_(perturbation[name])
    return loss_and_error(model, data.train_images, data.train_labels, trained.test_pipeline(model, data))


def test_the_axis_is_symmetric_with_the_trained_weights_exactly_in_the_middle():
    assert axis(5, 1.0) == [-1.0, -0.5, 0.0, 0.5, 1.0]
    steps = axis(41, 0.7)
    assert steps[20] == 0.0 and steps == [-step for step in reversed(steps)] and steps[-1] == 0.7


@pytest.mark.parametrize("name", NETS)
def test_each_filter_of_a_direction_has_the_norm_of_the_weights_filter_and_bn_and_biases_stay_at_zero(name):
    model = trained_like(name)
    for direction in random_directions(model, 2, seed=3):
        assert direction.keys() == dict(model.named_parameters()).keys()
        for param_name, weight in model.named_parameters():
            moved = direction[param_name]
            if weight.dim() == 1:  # BN's γ and β, fc's bias
                assert not moved.any(), param_name
            else:  # conv filters (output channels), fc rows (output neurons)
                torch.testing.assert_close(moved.flatten(1).norm(dim=1), weight.detach().flatten(1).norm(dim=1))
                assert not torch.allclose(moved, weight), param_name
    assert "fc.weight" in direction and direction["fc.weight"].any()


def test_the_same_seed_gives_the_same_directions_and_numbers_and_another_seed_does_not(data):
    model = trained_like("resnet8")
    first, again, other = (random_directions(model, 2, seed) for seed in (3, 3, 4))
    for name in first[0]:
        for direction, repeated in zip(first, again):
            assert torch.equal(direction[name], repeated[name])
    assert not torch.equal(first[0]["fc.weight"], other[0]["fc.weight"])
    assert not torch.equal(first[0]["fc.weight"], first[1]["fc.weight"])  # the second direction is a new draw
    options = dict(dims=2, points=3, images=64)
    result, repeated = (loss_landscape(model, data, seed=3, **options).to_dict() for _ in range(2))
    for key in ("loss", "error"):
        torch.testing.assert_close(torch.tensor(result[key]), torch.tensor(repeated[key]), rtol=0, atol=1e-5)
    assert loss_landscape(model, data, seed=4, **options).loss != result["loss"]


@pytest.mark.parametrize("name", NETS)
def test_the_centre_is_the_models_own_loss_and_a_corner_is_the_loss_of_the_moved_weights(name, data):
    model = trained_like(name)
    everything = len(data.train_labels)
    result = loss_landscape(model, data, dims=2, points=3, span=0.5, images=everything, seed=5)
    loss, error = own_loss(model, data)
    assert result.loss[1][1] == pytest.approx(loss, rel=1e-5) and result.error[1][1] == pytest.approx(error)
    first, second = random_directions(model, 2, seed=5)
    alpha, beta = result.alphas[0], result.betas[2]
    corner = own_loss(model, data, {key: alpha * first[key] + beta * second[key] for key in first})
    assert result.loss[2][0] == pytest.approx(corner[0], rel=1e-4) and result.error[2][0] == pytest.approx(corner[1])
    assert result.loss[2][0] > result.loss[1][1]  # a random step of half the weights' norm costs loss


def test_a_surface_row_at_beta_zero_is_the_slice_of_the_same_seed(data):
    model = trained_like("plain8")
    surface = loss_landscape(model, data, dims=2, points=5, images=64, seed=2)
    line = loss_landscape(model, data, dims=1, points=5, images=64, seed=2)
    assert line.betas is None and surface.betas == surface.alphas == line.alphas
    assert surface.loss[2] == pytest.approx(line.loss, rel=1e-6) and surface.error[2] == line.error


def test_the_callers_model_is_untouched_bit_for_bit(data):
    model = trained_like("resnet8 option B").train()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    loss_landscape(model, data, dims=2, points=3, images=32)
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[key], before[key]) for key in before)
    assert model.training and all(weight.requires_grad for weight in model.parameters())
    assert all(isinstance(module, nn.BatchNorm2d) for name, module in model.named_modules() if "bn" in name)


def test_rows_arrive_one_at_a_time_with_progress_per_point(data):
    done = []
    rows = iter_landscape_rows(trained_like("resnet8"), data, dims=2, points=3, images=16,
                               progress=lambda count, total, error: done.append((count, total, error)))
    first = next(rows)
    assert first.index == 0 and len(first.loss) == len(first.error) == 3 and done[-1] == (3, 9, first.error[-1])
    rest = list(rows)
    assert [row.index for row in rest] == [1, 2] and [(count, total) for count, total, _ in done] == [
        (count, 9) for count in range(1, 10)]
    assert [error for _, _, error in done] == [error for row in (first, *rest) for error in row.error]


def test_a_parabola_is_one_smooth_convex_basin_and_a_wiggle_is_not():
    alphas = axis(41, 1.0)
    bowl = slice_shape(alphas, [1 + 3 * alpha ** 2 for alpha in alphas])
    assert bowl.centre_loss == 1 and bowl.halfway_ratio == (1.75, 1.75) and bowl.end_ratio == (4, 4)
    assert bowl.basin_width == bowl.basin_width_1nat == pytest.approx(1.1)  # 3α² < 1 to |α| = 0.577: grid's 0.55
    assert (bowl.local_minima, bowl.concave_points, bowl.curvature_sign_changes) == (1, 0, 0)
    high = slice_shape(alphas, [3 + 3 * alpha ** 2 for alpha in alphas])  # the same bowl, 2 nats higher
    assert high.basin_width == pytest.approx(1.9) and high.basin_width_1nat == pytest.approx(1.1)
    wiggle = slice_shape(alphas, [1 + alpha ** 2 + 0.3 * math.sin(20 * alpha) ** 2 for alpha in alphas])
    assert wiggle.local_minima > 1 and wiggle.concave_points > 0 and wiggle.curvature_sign_changes > 1
    assert slice_shape(alphas, [1.0] * 41).basin_width == 2.0  # never leaves: the whole slice


def test_a_bowl_surface_is_convex_and_a_saddle_is_not():
    alphas = axis(21, 1.0)
    bowl = surface_shape(alphas, [[1 + alpha ** 2 + 2 * beta ** 2 for alpha in alphas] for beta in alphas])
    inside = sum(alpha ** 2 + 2 * beta ** 2 < 1 for alpha in alphas for beta in alphas) / 21 ** 2
    assert bowl.centre_loss == 1 and bowl.basin_fraction == pytest.approx(inside)
    assert bowl.local_minima == 1 and bowl.nonconvex_fraction == bowl.nonconvex_fraction_centre == 0
    saddle = surface_shape(alphas, [[3 + alpha ** 2 - beta ** 2 for alpha in alphas] for beta in alphas])
    assert saddle.local_minima == 0 and saddle.nonconvex_fraction == saddle.nonconvex_fraction_centre == 1
    plateau = surface_shape(alphas, [[min(1 + alpha ** 2 + beta ** 2, 2.0) for alpha in alphas] for beta in alphas])
    assert plateau.nonconvex_fraction_centre == 0 < plateau.nonconvex_fraction  # bent only where it levels off
    twisted = surface_shape(alphas, [[3 + alpha ** 2 + beta ** 2 + 4 * alpha * beta for alpha in alphas]
                                     for beta in alphas])  # convex along both axes, a saddle along the diagonals
    assert twisted.nonconvex_fraction == 1
    with pytest.raises(UserError, match="use an odd number"):
        slice_shape(axis(4, 1.0), [1.0] * 4)


@pytest.mark.parametrize("option, value, message", [
    ("points", 1, "points must be a whole number from 2"),
    ("points", MAX_POINTS + 1, f"to {MAX_POINTS} per axis"),
    ("points", 2.5, "points must be a whole number"),
    ("images", 0, "images must be a whole number from 1 to 96, the training images of synthetic"),
    ("images", 97, "got 97"),
    ("span", 0.0, "span must be a positive number"),
    ("span", math.nan, "span must be a positive number"),
    ("span", 1e300, "at most 100; got 1e+300"),  # overflowed the float32 weights with a traceback
    ("dims", 3, "dims must be 1 (a slice) or 2 (a surface)"),
])
def test_bad_arguments_are_one_line_user_errors_before_any_work(data, option, value, message):
    with pytest.raises(UserError) as raised:
        iter_landscape_rows(trained_like("resnet8"), data, **{"images": 16, option: value})  # not iterated
    assert message in str(raised.value) and "\n" not in str(raised.value)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("landscape") / "tiny.safetensors"
    save_model(path, trained_like("resnet8"))
    return str(path)


def run_cli(capsys, monkeypatch, *args) -> tuple[int, str, str]:
    # The handler's two threads would fight the other processes of a shared 2-core machine over tiny convs.
    monkeypatch.setattr("resnet_core.training.device.set_cpu_threads", lambda: 1)
    capsys.readouterr()
    code = main(["landscape", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_cli_prints_the_promised_json_and_repeats_it_for_a_seed(checkpoint, capsys, monkeypatch):
    common = ["--data", "synthetic", "--images", "48", "--seed", "7", "--json"]
    code, out, _ = run_cli(capsys, monkeypatch, checkpoint, *common, "--points", "5", "--span", "0.5")
    line = json.loads(out)
    assert code == 0 and set(line) == {"alphas", "betas", "loss", "error"}
    assert line["alphas"] == [-0.5, -0.25, 0.0, 0.25, 0.5] and line["betas"] is None
    assert len(line["loss"]) == len(line["error"]) == 5 and all(0 <= error <= 1 for error in line["error"])
    code, out, _ = run_cli(capsys, monkeypatch, checkpoint, *common, "--points", "3", "--dims", "2")
    surface = json.loads(out)
    assert code == 0 and surface["betas"] == surface["alphas"] == [-1.0, 0.0, 1.0]
    assert [len(row) for row in surface["loss"]] == [len(row) for row in surface["error"]] == [3, 3, 3]
    assert json.loads(run_cli(capsys, monkeypatch, checkpoint, *common, "--points", "3", "--dims", "2")[1]) == surface


@pytest.mark.parametrize("args, message", [
    (["--points", "0"], "error: points must be a whole number from 2 to"),
    (["--points", "100000"], "error: points must be a whole number from 2 to"),
    (["--images", "0"], "error: images must be a whole number from 1 to 2048"),
    (["--images", "100000"], "error: images must be a whole number from 1 to 2048"),
])
def test_cli_points_or_images_out_of_range_are_one_line_and_exit_2(checkpoint, capsys, monkeypatch, args, message):
    code, out, err = run_cli(capsys, monkeypatch, checkpoint, "--data", "synthetic", *args)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and err.startswith(message)
