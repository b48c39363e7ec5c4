"""Lesion study (`explain.lesion`): what a deleted block computes, the fast path against deleting by hand, the seeded
random draws, and `python -m resnet_core lesion`'s contract. Tiny nets (8 layers, 3 blocks) on synthetic data."""
import copy
import json
import statistics

import pytest
import torch

from resnet_core.cli import main
from resnet_core.errors import UserError
from resnet_core.explain import trained
from resnet_core.explain.lesion import BlockLesion, IntactNet, RandomLesion, iter_lesions, lesion_sites, lesion_study
from resnet_core.nets.model import build_model
from resnet_core.training.checkpoint import save_model
from resnet_core.training.data import synthetic_data

BLOCKS = ["layer1.0", "layer2.0", "layer3.0"]  # resnet8 and plain8: one block a stage


def trained_looking(name: str, **options):
    """A net whose BN statistics and affine parameters are not the identity they start as, in eval mode; its
    weights seeded too, so no test depends on what ran before it."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(name, **options)
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            for tensor in (module.running_mean, module.weight, module.bias):
                tensor.data = 0.3 * torch.randn(tensor.shape, generator=generator)
            module.running_var.data = 0.5 + torch.rand(module.running_var.shape, generator=generator)
    return model.eval()


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """One torch thread: on the shared 2-core machine a second thread mostly waits at OpenMP barriers while other
    processes hold the cores (these tiny nets ran 30x slower on 2 threads than on 1 under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr("resnet_core.training.device.set_cpu_threads", lambda *_: 1)  # the CLI handler's would set 2
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return synthetic_data(16, 64)


def block_input(site) -> torch.Tensor:
    """What a block sees in the net: the output of a ReLU."""
    channels = next(site.block.children()).in_channels
    return torch.randn(4, channels, 8, 8, generator=torch.Generator().manual_seed(1)).relu()


def test_a_deleted_residual_block_outputs_exactly_its_shortcut():
    sites = lesion_sites(trained_looking("resnet8"))
    assert [site.name for site in sites] == BLOCKS
    assert [site.downsampling for site in sites] == [False, True, True]
    for site in sites:
        x = block_input(site)
        shortcut = site.block.downsample(x)
        assert torch.equal(site.skip(x), shortcut)
        assert site.skip(x).shape == site.block(x).shape
        assert not torch.equal(site.skip(x), site.block(x))  # the residual branch did contribute
    assert torch.equal(sites[0].skip(block_input(sites[0])), block_input(sites[0]))  # identity shortcut: y_i = y_{i-1}


def test_a_deleted_plain_block_is_the_identity_or_option_as_zero_pad():
    identity, wider, _ = lesion_sites(trained_looking("plain8"))
    x = block_input(identity)
    assert torch.equal(identity.skip(x), x)
    x = block_input(wider)
    padded = wider.skip(x)  # (4, 32, 4, 4): every other pixel, the new channels zero
    assert torch.equal(padded[:, :16], x[:, :, ::2, ::2]) and not padded[:, 16:].any()


def test_a_plain_net_without_a_parameter_free_shortcut_cannot_be_lesioned(data):
    model = trained_looking("plain8", shortcut="B")
    with pytest.raises(UserError, match="cannot lose block layer2.0.*option A"):
        iter_lesions(model, data, images=32)  # at the call, before the first record is asked for


def test_single_and_random_deletions_match_zeroing_each_residual_branch_by_hand(data):
    """The fast path (intact prefix walked forward, nothing copied) against deep copies with the residual branch's
    last BN zeroed: F(x) = 0, so the block computes relu(0 + shortcut(x)). All the test images: the same subset."""
    model = trained_looking("resnet8")
    images = data.test_images.shape[0]
    study = lesion_study(model, data, images=images, random_k=3, draws=2, batch_size=24)

    def error_without(blocks) -> float:
        lesioned = copy.deepcopy(model).to(memory_format=torch.channels_last)
        for name in blocks:
            torch.nn.init.zeros_(lesioned.get_submodule(name).bn2.weight)
            torch.nn.init.zeros_(lesioned.get_submodule(name).bn2.bias)
        inputs = trained.test_pipeline(model, data).test_batch(data.test_images)
        with torch.no_grad():
            predicted = lesioned(inputs.contiguous(memory_format=torch.channels_last)).argmax(-1)
        return int((predicted != data.test_labels).sum()) / images

    assert study.baseline_error == error_without([])
    assert [block.error for block in study.blocks] == [error_without([name]) for name in BLOCKS]
    draws = [record for record in iter_lesions(model, data, images=images, random_k=3, draws=2, batch_size=24)
             if isinstance(record, RandomLesion)]
    assert [record.error for record in draws] == [error_without(record.blocks) for record in draws]
    assert len({block.error for block in study.blocks} | {study.baseline_error}) > 1  # deletions changed something


def test_records_come_in_order_seeded_and_leave_the_model_alone(data):
    model = trained_looking("resnet8").train()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    records = list(iter_lesions(model, data, images=40, random_k=3, draws=4, seed=7))
    assert model.training and model.conv1.weight.is_contiguous()
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())
    assert isinstance(records[0], IntactNet) and records[0].images == 40
    assert [record.block for record in records[1:4]] == BLOCKS and all(isinstance(r, BlockLesion) for r in records[1:4])
    draws = records[4:]
    assert [(record.k, record.draw) for record in draws] == [(k, d) for k in (1, 2, 3) for d in range(4)]
    assert all(len(set(record.blocks)) == record.k for record in draws)
    single = {record.block: record.error for record in records[1:4]}
    assert all(record.error == single[record.blocks[0]] for record in draws if record.k == 1)
    assert list(iter_lesions(model, data, images=40, random_k=3, draws=4, seed=7)) == records
    fewer = list(iter_lesions(model, data, images=40, random_k=2, draws=4, seed=7))
    assert fewer == records[:len(fewer)]  # a smaller K keeps the same draws
    other = list(iter_lesions(model, data, images=40, random_k=3, draws=4, seed=8))
    assert other[0] != records[0] or other[4:] != draws  # another seed: other images or other draws


def test_progress_counts_every_measurement_with_its_error(data):
    calls = []
    study = lesion_study(trained_looking("resnet8"), data, images=20, random_k=2, draws=3,
                         progress=lambda done, total, error: calls.append((done, total, error)))
    assert [(done, total) for done, total, _ in calls] == [(done, 1 + 3 + 2 * 3) for done in range(1 + 3 + 2 * 3 + 1)]
    errors = [study.baseline_error, *(block.error for block in study.blocks),
              *(error for deletions in study.random for error in deletions.errors)]
    assert [error for _, _, error in calls] == [None, *errors]
    assert [(deletions.k, len(deletions.errors)) for deletions in study.random] == [(1, 3), (2, 3)]


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "resnet8.safetensors"
    save_model(path, trained_looking("resnet8"))
    return path


def test_cli_json_is_the_promised_contract(checkpoint, capsys):
    assert main(["lesion", str(checkpoint), "--data", "synthetic", "--images", "64", "--random-k", "2", "--draws", "3",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result) == ["baseline_error", "blocks", "random"]
    assert [list(block) for block in result["blocks"]] == [["block", "downsampling", "error"]] * 3
    assert [block["block"] for block in result["blocks"]] == BLOCKS
    assert [block["downsampling"] for block in result["blocks"]] == [False, True, True]
    assert [(draws["k"], len(draws["errors"])) for draws in result["random"]] == [(1, 3), (2, 3)]
    errors = [result["baseline_error"], *(b["error"] for b in result["blocks"]),
              *(e for draws in result["random"] for e in draws["errors"])]
    assert all(0 <= error <= 1 and (error * 64).is_integer() for error in errors)  # fractions of 64 images


def test_cli_table_names_every_block(checkpoint, capsys):
    argv = ["lesion", str(checkpoint), "--data", "synthetic", "--images", "32", "--random-k", "2", "--draws", "4"]
    assert main([*argv, "--json"]) == 0
    random = json.loads(capsys.readouterr().out)["random"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "32 test images of synthetic" in out and "layer2.0" in out and "(downsampling)" in out
    for draws, noun in zip(random, ["block", "blocks"]):  # an even number of draws: the mean of the middle two
        assert f"{draws['k']} random {noun} deleted: median {100 * statistics.median(draws['errors']):.2f}% over 4 " \
               "draws" in out


def test_a_ten_class_folder_other_than_the_nets_own_data_is_warned_of(tmp_path, caplog):
    """Ten classes pass the count check, but a net trained on CIFAR-10 probed with other classes measures nothing
    of what it learned: the run goes on (a deliberate probe is allowed) and a warning, on the CLI's stderr, says so."""
    from PIL import Image

    cifar = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    path = tmp_path / "resnet8.safetensors"
    save_model(path, trained_looking("resnet8"), classes=list(cifar))
    for folder, names in (("cifar-copy", cifar), ("digits", tuple(str(digit) for digit in range(10)))):
        for split in ("train", "test"):
            for name in names:
                (tmp_path / folder / split / name).mkdir(parents=True)
                Image.new("RGB", (32, 32), (len(name) * 20, 90, 30)).save(tmp_path / folder / split / name / "0.png")
    argv = ["lesion", str(path), "--images", "10", "--random-k", "0", "--home", str(tmp_path / "home")]
    assert main([*argv, "--data", str(tmp_path / "cifar-copy")]) == 0
    assert main([*argv, "--data", "synthetic"]) == 0
    assert not [record for record in caplog.records if record.levelname == "WARNING"]
    assert main([*argv, "--data", str(tmp_path / "digits")]) == 0
    (warning,) = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert warning.startswith(f"The classes of {tmp_path / 'digits'} (0, 1, 2, 3, 4, 5, 6, 7, 8, 9) are not those "
                              "resnet8 was trained on (airplane, automobile, ")


@pytest.mark.parametrize("argv, message", [
    (["--images", "0"], "between 1 and 512 test images of synthetic; got 0"),
    (["--images", "513"], "between 1 and 512 test images of synthetic; got 513"),
    (["--images", "32", "--random-k", "4"], "k from 1 to at most 3 (0: none); got 4"),
    (["--images", "32", "--random-k", "2", "--draws", "0"], "at least 1 draw per k; got 0"),
])
def test_cli_bad_input_is_one_line_and_exit_2(checkpoint, capsys, argv, message):
    assert main(["lesion", str(checkpoint), "--data", "synthetic", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_by_default_a_small_test_set_is_used_whole(checkpoint, capsys):
    """1,000 test images unless told, or all of a smaller set (synthetic's 512): the default was refused there."""
    assert main(["lesion", str(checkpoint), "--data", "synthetic"]) == 0
    assert "on 512 test images of synthetic" in capsys.readouterr().out


def test_cli_refuses_a_plain_net_whose_block_cannot_be_deleted(tmp_path, capsys):
    path = tmp_path / "plain8-b.safetensors"
    save_model(path, trained_looking("plain8", shortcut="B"))
    assert main(["lesion", str(path), "--data", "synthetic", "--images", "32"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "plain8" in err[0] and "cannot lose block layer2.0" in err[0]
