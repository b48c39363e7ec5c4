"""resnet_core.load_checkpoint: real checkpoints load; anything else is refused in one line and runs no code."""
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import resnet_core as rc
from resnet_core.runs.store import Store
from resnet_core.training.checkpoint import load_training_checkpoint

REPO = Path(__file__).resolve().parents[1]


class _CreatesFile:
    """Unpickling this calls `open(path, "w")`: the classic pickle payload, harmless but visible."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def assert_refused(path: Path) -> str:
    with pytest.raises(rc.InvalidCheckpointError) as caught:
        rc.load_checkpoint(path)
    message = str(caught.value)
    assert isinstance(caught.value, ValueError) and "\n" not in message and message.endswith(".")
    return message


@pytest.fixture(scope="module")
def run_checkpoint(tmp_path_factory) -> Path:
    """The checkpoint of a real (tiny) run made with the project's CLI."""
    home = tmp_path_factory.mktemp("home")
    subprocess.run([sys.executable, "-m", "resnet_core", "train", "--model", "resnet8", "--data", "synthetic",
                    "--iterations", "2", "--batch-size", "16", "--device", "cpu", "--precision", "fp32",
                    "--home", str(home)], cwd=REPO, check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    store = Store(home)
    (run,) = store.runs()
    return store.latest_checkpoint(run.id)[1]


def test_a_real_runs_checkpoint_round_trips(run_checkpoint, tmp_path):
    model, metadata = rc.load_checkpoint(run_checkpoint)
    assert metadata["spec"]["name"] == "resnet8" and metadata["iteration"] == 2
    assert not model.training
    saved = load_training_checkpoint(run_checkpoint).model_state
    assert all(torch.equal(model.state_dict()[key], value) for key, value in saved.items())
    # Exported without the optimizer, with extra metadata, and back: the same net and predictions.
    exported = tmp_path / "resnet8.safetensors"
    rc.save_model(exported, model, classes=["a"] * 10)
    again, again_metadata = rc.load_checkpoint(exported)
    assert again_metadata["classes"] == ["a"] * 10
    assert exported.stat().st_size < run_checkpoint.stat().st_size
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


def test_a_pt_file_with_spec_and_state_loads(tmp_path):
    model = rc.build_model("plain8")
    path = tmp_path / "plain8.pt"
    torch.save({"spec": model.spec.to_dict(), "model_state": model.state_dict(), "note": "hi"}, path)
    loaded, metadata = rc.load_checkpoint(path)
    assert loaded.spec == model.spec and metadata == {"spec": model.spec.to_dict(), "note": "hi"}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_malicious_pickle_is_refused_without_running_it(tmp_path):
    witness = tmp_path / "pwned"
    for name in ("evil.pt", "evil.pth"):
        path = tmp_path / name
        path.write_bytes(pickle.dumps(_CreatesFile(witness)))
        assert_refused(path)
        # torch.save's zip format too: the payload sits in data.pkl.
        torch.save({"spec": {}, "model_state": _CreatesFile(witness)}, path, pickle_module=pickle)
        assert_refused(path)
    assert not witness.exists()


def test_a_pt_holding_other_objects_is_refused(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(3)], path)
    assert "must hold a dict with 'spec' and 'model_state'" in assert_refused(path)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_random_bytes_are_refused(tmp_path, suffix):
    path = tmp_path / f"noise{suffix}"
    path.write_bytes(os.urandom(4096))
    assert_refused(path)


def test_truncated_checkpoints_are_refused(run_checkpoint, tmp_path):
    data = run_checkpoint.read_bytes()
    for length in (0, 7, 100, len(data) // 2, len(data) - 1):
        path = tmp_path / f"cut{length}.safetensors"
        path.write_bytes(data[:length])
        assert_refused(path)
    model = rc.build_model("resnet8")
    whole = tmp_path / "whole.pt"
    torch.save({"spec": model.spec.to_dict(), "model_state": model.state_dict()}, whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert_refused(cut)


def test_a_foreign_safetensors_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(2)}, str(path))
    assert "not a ResNet Explorer checkpoint" in assert_refused(path)


def test_a_net_of_another_depth_than_its_metadata_is_refused(tmp_path):
    resnet20 = rc.build_model("resnet20")
    path = tmp_path / "liar.safetensors"
    rc.save_model(path, resnet20)
    # Claim ResNet-32: the file's weights are ResNet-20's.
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        metadata = json.loads(handle.metadata()["resnet_explorer"])
    metadata["spec"] = rc.get_spec("resnet32").to_dict()
    save_file(tensors, str(path), metadata={"resnet_explorer": json.dumps(metadata)})
    assert assert_refused(path).startswith("liar.safetensors does not hold the resnet32 its metadata names")


def test_a_missing_file_and_a_bad_spec_are_refused(tmp_path):
    assert "no checkpoint file" in assert_refused(tmp_path / "absent.safetensors")
    path = tmp_path / "badspec.pt"
    torch.save({"spec": {"family": "mars"}, "model_state": {}}, path)
    assert "names no valid network" in assert_refused(path)


@pytest.mark.parametrize("classes", [5, "airplane", ["airplane", 7]])
def test_class_names_that_are_not_a_list_of_names_are_refused(tmp_path, classes):
    """A hand-edited or foreign file's `classes` is refused in one line, by load_checkpoint and by Classify's upload."""
    from resnet_core.explain.classifier import uploaded_classifier

    path = tmp_path / "odd.safetensors"
    rc.save_model(path, rc.build_model("resnet8"), classes=classes)
    assert assert_refused(path) == "odd.safetensors records class names that are not a list of names."
    with pytest.raises(rc.InvalidCheckpointError, match="not a list of names"):
        uploaded_classifier(path.read_bytes(), "odd.safetensors")
