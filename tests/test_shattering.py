"""Shattered gradients (Balduzzi et al. 2017): the autocorrelation, the line gradient, the nets and the CLI."""
import copy
import json

import pytest
import torch
from torch import nn

from resnet_core.cli import main
from resnet_core.errors import UserError
from resnet_core.explain.shattering import (MAX_LAG, autocorrelation, init_model, line_gradient, line_statistics,
                                            make_line, shattering)
from resnet_core.nets.model import ResNet
from resnet_core.nets.specs import NetSpec


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One thread: on two cores shared with other work, a second thread that waits for a descheduled one made
    these small batches ~20x slower (seen here: 9 s against 0.3 s). The CLI's own setting (every core) is
    kept at one too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("resnet_core.training.device.set_cpu_threads", lambda: torch.set_num_threads(1))
        yield
    torch.set_num_threads(threads)


def one_block_net(residual: bool, seed: int) -> ResNet:
    """Stem, one basic block, fc: the shallowest net with a block."""
    torch.manual_seed(seed)
    spec = NetSpec(family="cifar", block="basic", blocks_per_stage=(1,), widths=(16,), residual=residual)
    return ResNet(spec).eval()


def gradient_along(model: nn.Module, points: int, seed: int) -> torch.Tensor:
    line = make_line(points, seed)
    with line_statistics(model, line.inputs()):
        return line_gradient(model, line)


def test_autocorrelation_tells_white_from_brown_noise():
    white = torch.randn(256, generator=torch.Generator().manual_seed(0))
    white_acf, brown_acf = autocorrelation(white), autocorrelation(white.cumsum(0))
    assert len(white_acf) == MAX_LAG + 1 and white_acf[0] == brown_acf[0] == 1.0
    assert max(abs(r) for r in white_acf[1:]) < 0.2  # ~1/sqrt(256) each
    assert brown_acf[1] > 0.95 and brown_acf[1] > brown_acf[10] > brown_acf[30]


@pytest.mark.parametrize("constant", [3.5, -1e-3, 0.0])
def test_a_constant_gradient_counts_as_perfectly_correlated(constant):
    # Zero variance leaves the normalised autocorrelation 0/0: a constant is the opposite of shattered.
    assert autocorrelation(torch.full((64,), constant)) == [1.0] * (MAX_LAG + 1)
    # Rounding noise far below the gradient's size does not turn a constant into white noise.
    noise = 1e-7 * torch.randn(64, generator=torch.Generator().manual_seed(0))
    assert autocorrelation(torch.full((64,), constant) * (1 + noise)) == [1.0] * (MAX_LAG + 1)


def test_a_linear_function_has_one_gradient_along_the_whole_line():
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)).eval()
    line = make_line(64, seed=0)
    gradients = line_gradient(linear, line)
    expected = float(linear[1].weight[0].detach().double() @ line.direction.flatten().double())
    torch.testing.assert_close(gradients, torch.full((64,), expected, dtype=torch.float64), rtol=1e-5, atol=0)
    assert autocorrelation(gradients) == [1.0] * (MAX_LAG + 1)


@pytest.mark.parametrize("residual", [False, True])
def test_a_one_block_net_changes_its_gradient_smoothly(residual):
    gradients = gradient_along(one_block_net(residual, seed=0), points=256, seed=0)
    lag1 = autocorrelation(gradients)[1]
    assert gradients.std() > 0.1 * gradients.abs().max()  # ReLUs switch along the line: not a linear function
    assert 0.9 < lag1 < 1.0  # but one block switches few at a time: brown noise (measured 0.98-0.99, 8 seeds)


def test_batched_gradients_equal_one_backward_pass_per_point():
    model, line = init_model(8, residual=True, seed=3), make_line(64, seed=3)
    with line_statistics(model, line.inputs()):
        batched = line_gradient(model, line, chunk=24)  # chunks that do not divide the line
        naive = []
        for position in line.positions:
            point = (line.origin + position * line.direction).requires_grad_()  # (1, 3, 32, 32)
            model(point)[0, 0].backward()
            naive.append(float((point.grad * line.direction).sum()))
    # Rounding differs between a batch and a single image, and a point within rounding of a ReLU's switch may
    # take either side: its gradient then differs by that one unit's share (seen: 3e-4 of the largest, 1 in 64).
    difference = (batched - torch.tensor(naive, dtype=torch.float64)).abs() / batched.abs().max()
    assert difference.median() < 1e-6 and difference.max() < 1e-2
    assert all(parameter.requires_grad for parameter in model.parameters())  # unfrozen again


def test_line_statistics_give_a_training_mode_pass_and_are_restored():
    model, line = init_model(20, residual=False, seed=0), make_line(64, seed=0)
    inputs = line.inputs()
    with torch.no_grad():
        training = copy.deepcopy(model).train()(inputs)
        with line_statistics(model, inputs):
            frozen = model(inputs)
        initial = model(inputs)
    torch.testing.assert_close(frozen, training, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(initial, training, rtol=1e-2)  # outside: BN's initial statistics, the identity
    assert all(float(bn.running_var.min()) == 1.0 for bn in model.modules() if isinstance(bn, nn.BatchNorm2d))


def test_a_plain_net_and_its_residual_twin_start_from_the_same_weights():
    plain = init_model(20, residual=False, seed=4).state_dict()
    residual = init_model(20, residual=True, seed=4).state_dict()
    assert plain.keys() == residual.keys()
    assert all(torch.equal(plain[name], residual[name]) for name in plain)
    assert not torch.equal(init_model(20, residual=False, seed=5).conv1.weight, plain["conv1.weight"])


def test_line_gradient_refuses_a_model_in_training_mode():
    with pytest.raises(ValueError, match="eval mode"):
        line_gradient(one_block_net(True, seed=0).train(), make_line(64, seed=0))


def test_shattering_gives_each_depth_plain_then_residual_seeded():
    state = torch.random.get_rng_state()
    calls = []
    points = shattering([20, 8], points=64, seed=1, progress=lambda done, total: calls.append((done, total)))
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random stream is untouched
    assert [(point.model, point.depth, point.residual) for point in points] == [
        ("plain8", 8, False), ("resnet8", 8, True), ("plain20", 20, False), ("resnet20", 20, True)]
    assert calls == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    for point in points:
        assert point.to_dict() == {"model": point.model, "depth": point.depth,
                                   "lag1_autocorrelation": point.lag1_autocorrelation}
        assert len(point.gradients) == len(point.positions) == 64 and len(point.autocorrelation) == MAX_LAG + 1
        assert point.positions[0] == -1.0 and point.positions[-1] == 1.0
        assert point.lag1_autocorrelation == point.autocorrelation[1] and -1 <= point.lag1_autocorrelation <= 1
    again = shattering([8], points=64, seed=1)
    other = shattering([8], points=64, seed=2)
    assert again[0].gradients == points[0].gradients
    assert other[0].gradients != points[0].gradients


@pytest.mark.parametrize("depths", [[9], [2], [116], [8, 1202], [], [8.0], [True]])
def test_depths_other_than_6n_plus_2_up_to_110_are_refused_in_one_line(depths):
    with pytest.raises(UserError) as error:
        shattering(depths, points=64)
    message = str(error.value)
    assert "\n" not in message and "8, 14, 20" in message and "110" in message


@pytest.mark.parametrize("options, allowed", [({"points": 10}, "64 to 1024"), ({"points": 4096}, "64 to 1024"),
                                              ({"seed": -1}, "at least 0")])
def test_points_and_seed_out_of_range_are_refused(options, allowed):
    with pytest.raises(UserError, match=allowed):
        shattering([8], **options)


def test_cli_json_is_one_record_per_net(capsys):
    assert main(["shattering", "--depths", "8,20", "--points", "64", "--seed", "1", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [record["model"] for record in records] == ["plain8", "resnet8", "plain20", "resnet20"]
    assert all(set(record) == {"model", "depth", "lag1_autocorrelation"} for record in records)
    assert [record["depth"] for record in records] == [8, 8, 20, 20]
    expected = [point.lag1_autocorrelation for point in shattering([8, 20], points=64, seed=1)]
    assert [record["lag1_autocorrelation"] for record in records] == expected


def test_cli_table_names_every_net(capsys):
    assert main(["shattering", "--depths", "8", "--points", "64"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "lag-1 autocorrelation" in lines[0]
    assert [line.split()[:2] for line in lines[1:]] == [["plain8", "8"], ["resnet8", "8"]]


@pytest.mark.parametrize("depths", ["8,9", "8,x", ""])
def test_cli_bad_depths_exit_2_with_one_line(capsys, depths):
    assert main(["shattering", "--depths", depths]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ") and captured.err.count("\n") == 1
