"""`python -m resnet_core`: the scripted interface, SIGKILL + resume, SIGTERM, and every bad input."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from resnet_core.cli import main
from resnet_core.errors import UserError
from resnet_core.nets.specs import get_spec
from resnet_core.runs.store import Store
from resnet_core.training.recipe import Recipe

REPO = Path(__file__).resolve().parents[1]
TINY = ["--model", "resnet8", "--data", "synthetic", "--batch-size", "32", "--precision", "fp32"]


def start_training(home, *args):
    return subprocess.Popen([sys.executable, "-m", "resnet_core", "train", "--home", str(home), *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, process, seconds=120):
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, f"training ended early: {process.communicate()}"
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(0.05)


def check_contiguous(store, run_id):
    """What a reader sees mid-run: iterations 1..n with no hole, tests only at evaluation points."""
    trains = [row["iteration"] for row in store.metrics(run_id, "train")]
    assert trains == list(range(1, len(trains) + 1))
    assert all(row["iteration"] % 10 == 0 for row in store.metrics(run_id, "test"))
    return len(trains)


def test_sigkill_mid_epoch_then_resume_gives_one_continuous_history(tmp_path):
    process = start_training(tmp_path, *TINY, "--iterations", "60", "--eval-every", "10")
    store = Store(tmp_path)
    wait_for(lambda: store.runs(), process)
    run_id = store.runs()[0].id
    wait_for(lambda: check_contiguous(store, run_id) and store.latest_checkpoint(run_id), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    checkpoint = store.latest_checkpoint(run_id)[0]
    assert checkpoint < 60 and checkpoint % 64  # an epoch is 2048 / 32 = 64 iterations: this is mid-epoch
    assert store.run(run_id).status == "running"  # nobody was left to say otherwise

    resumed = start_training(tmp_path, "--resume", str(run_id))
    polls = 0
    while resumed.poll() is None:
        check_contiguous(store, run_id)
        polls += 1
        time.sleep(0.05)  # a busy poller would steal a core from the run
    out, err = resumed.communicate()
    assert resumed.returncode == 0, err
    assert out.strip().splitlines()[-1] == str(run_id)
    assert polls > 0 and check_contiguous(store, run_id) == 60
    assert [row["iteration"] for row in store.metrics(run_id, "test")] == list(range(10, 61, 10))
    summary = store.summaries()[0]
    assert summary["status"] == "finished" and summary["iterations_done"] == 60


def test_sigterm_cancels_cleanly_with_a_final_checkpoint(tmp_path):
    process = start_training(tmp_path, *TINY, "--iterations", "5000", "--eval-every", "1000")
    store = Store(tmp_path)
    wait_for(lambda: store.runs() and store.metrics(store.runs()[0].id), process)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    run_id = store.runs()[0].id
    assert process.returncode == 0, err
    assert out.strip().splitlines()[-1] == str(run_id)
    assert store.run(run_id).status == "cancelled"
    done = store.summaries()[0]["iterations_done"]
    assert store.latest_checkpoint(run_id)[0] == done and 0 < done < 5000


@pytest.fixture(scope="module")
def train_home(tmp_path_factory):
    """A data folder holding one finished run, shared by the tests that must not damage it."""
    home = tmp_path_factory.mktemp("home")
    assert main(["train", *TINY, "--iterations", "4", "--eval-every", "2", "--name", "kept", "--home", str(home)]) == 0
    return home


def test_runs_and_evaluate_print_the_promised_json(train_home, capsys):
    capsys.readouterr()
    assert main(["runs", "--json", "--home", str(train_home)]) == 0
    runs = strict_json(capsys.readouterr().out)
    assert {"id", "name", "model", "data", "status", "iterations_done", "train_error", "test_error"} <= set(runs[0])
    assert (runs[0]["name"], runs[0]["model"], runs[0]["data"], runs[0]["status"]) == (
        "kept", "resnet8", "synthetic", "finished")
    assert runs[0]["iterations_done"] == 4 and 0 <= runs[0]["test_error"] <= 1
    assert main(["evaluate", str(runs[0]["id"]), "--json", "--home", str(train_home)]) == 0
    report = strict_json(capsys.readouterr().out)
    assert report["test_error"] == pytest.approx(runs[0]["test_error"])
    assert len(report["per_class_accuracy"]) == 10 and len(report["confusion_matrix"]) == 10


def strict_json(text: str):
    """Parse as RFC 8259 JSON: Python's json.loads takes NaN and Infinity, which jq and JSON.parse refuse."""
    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_diverged_runs_nan_loss_is_null_in_standard_json(tmp_path, capsys):
    store = Store(tmp_path)
    spec = get_spec("resnet8")
    run_id = store.create_run(name="blown up", spec=spec.to_dict(), recipe=Recipe(iterations=4).to_dict(),
                              data="synthetic", device="cpu", precision="fp32", seed=0)
    store.add_metrics(run_id, [{"iteration": 2, "kind": "train", "epoch": 0, "loss": float("nan"), "error": 0.9},
                               {"iteration": 2, "kind": "test", "epoch": 0, "loss": float("inf"), "error": 0.9}])
    capsys.readouterr()
    assert main(["runs", "--json", "--home", str(tmp_path)]) == 0
    [run] = strict_json(capsys.readouterr().out)
    assert (run["train_loss"], run["test_loss"], run["test_error"]) == (None, None, 0.9)


@pytest.mark.parametrize("command", [["train", *TINY, "--iterations", "2"],
                                     ["lesion", "reference:resnet20", "--data", "synthetic"],
                                     ["landscape", "reference:resnet20", "--data", "synthetic"],
                                     ["shattering"], ["reproduce", "table6"]])
@pytest.mark.parametrize("seed", ["-1", "99999999999999999999", "1.5"])
def test_every_seed_is_checked_alike_in_one_line(command, seed, tmp_path, capsys):
    """A huge seed overflowed SQLite or torch with a traceback; -1 was taken by some commands, refused by others."""
    with pytest.raises(SystemExit) as exited:
        main([*command, "--seed", seed, "--home", str(tmp_path)] if command[0] != "shattering" else
             [*command, "--seed", seed])
    [line] = capsys.readouterr().err.splitlines()
    assert exited.value.code == 2 and "a seed is a whole number from 0 to 4,294,967,295" in line
    assert not (tmp_path / "runs.sqlite").exists()


def test_summary_prints_the_stage_table(capsys):
    assert main(["summary", "resnet20"]) == 0
    out = capsys.readouterr().out
    assert "conv2_x" in out and "conv4_x" in out
    assert main(["summary", "resnet152", "--num-classes", "21841"]) == 0  # ImageNet-21k's fc: 45 M weights, fine
    assert "21841" in capsys.readouterr().out


def test_a_summary_whose_weights_outgrow_memory_is_refused_before_allocating(capsys):
    """10^8 classes make an 800 GB fc layer: one line saying so, not an allocator traceback (or the OOM killer)."""
    assert main(["summary", "resnet152", "--num-classes", "100000000"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: resnet152 with 100,000,000 classes has 204,958,143,808 weights, 819.8 GB, but "
                           "this machine has ") and line.endswith("free; use fewer classes.")


def image_folder(root, problem):
    from PIL import Image

    for split, name in (("train", "cat"), ("test", "cat"), ("test", "zebra")):
        if name == "zebra" and problem != "unknown class":
            continue
        (root / split / name).mkdir(parents=True)
        if problem != "empty":
            Image.new("RGB", (32, 32), "white").save(root / split / name / "a.png")
    if problem == "unreadable":
        (root / "train" / "cat" / "b.jpg").write_bytes(b"\xff\xd8 truncated")
    return str(root)


def damage_checkpoint(home, damage):
    store = Store(home)
    run_id = store.runs()[0].id
    path = store.latest_checkpoint(run_id)[1]
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    else:
        from safetensors.torch import save_file
        import torch

        save_file({"weight": torch.zeros(1)}, path)
    store.finish(run_id, "cancelled")  # so that resuming is allowed and only the checkpoint is at fault
    return run_id


@pytest.mark.parametrize("case, message", [
    ("unknown model", "Unknown model"),
    ("unknown data", "Unknown dataset"),
    ("empty folder", "holds no images"),
    ("class only in test", "appear in"),
    ("unreadable image", "Cannot read image"),
    ("resume finished", "has finished"),
    ("resume with settings", "drop --model"),
    ("no length", "--epochs or --iterations"),
    ("unwritable home", "Cannot write to the data folder"),
    ("empty home", "The data folder given is empty"),
    ("no such run", "No run 42"),
    ("nan loss", "lower --lr"),
    ("batch of 0", "batch_size must be a whole number of at least 1; got 0"),  # never silently 128
    ("batch over the images", "The batch size (4096) must not exceed the 2048 training images"),
    ("validation split too large", "The validation split must hold between 1 and 2047 images; got 2048"),
    ("negative validation split", "The validation split must hold between 1 and 2047 images; got -1"),
])
def test_bad_input_is_one_line_and_loses_nothing(train_home, tmp_path, capsys, case, message):
    store = Store(train_home)
    kept_id = store.runs()[0].id
    before = store.metrics(kept_id), store.latest_checkpoint(kept_id)
    run_count = len(store.runs())
    home = ["--home", str(train_home)]
    argv = {
        "unknown model": ["train", *TINY[2:], "--model", "resnet9", "--iterations", "2", *home],
        "unknown data": ["train", "--model", "resnet8", "--data", "imagenet-on-mars", "--iterations", "2", *home],
        "empty folder": ["train", "--model", "resnet8", "--data", image_folder(tmp_path / "empty", "empty"),
                         "--iterations", "2", *home],
        "class only in test": ["train", "--model", "resnet8", "--data", image_folder(tmp_path / "unknown class", "unknown class"),
                               "--iterations", "2", *home],
        "unreadable image": ["train", "--model", "resnet8", "--data", image_folder(tmp_path / "unreadable", "unreadable"),
                             "--iterations", "2", *home],
        "resume finished": ["train", "--resume", str(kept_id), *home],
        "resume with settings": ["train", "--resume", str(kept_id), "--model", "resnet8", *home],
        "no length": ["train", "--model", "resnet8", "--data", "synthetic", *home],
        "unwritable home": ["runs", "--home", str(Path(__file__))],
        "empty home": ["runs", "--home", ""],
        "no such run": ["evaluate", "42", *home],
        "nan loss": ["train", *TINY, "--iterations", "6", "--lr", "1e30", *home],
        "batch of 0": ["train", "--model", "resnet8", "--data", "synthetic", "--iterations", "2", "--batch-size", "0",
                       *home],
        # With a test interval given, nothing counted epochs: these were refused only after the run was recorded.
        "batch over the images": ["train", "--model", "resnet8", "--data", "synthetic", "--iterations", "2",
                                  "--batch-size", "4096", "--eval-every", "2", *home],
        "validation split too large": ["train", *TINY, "--iterations", "2", "--validation-images", "2048",
                                       "--eval-every", "2", *home],
        "negative validation split": ["train", *TINY, "--iterations", "2", "--validation-images", "-1", *home],
    }[case]
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert (store.metrics(kept_id), store.latest_checkpoint(kept_id)) == before
    if case == "nan loss":
        diverged = store.runs()[-1]
        assert diverged.status == "diverged" and captured.out.strip().splitlines()[-1] == str(diverged.id)
        assert len(store.metrics(diverged.id, "train")) >= 1  # its history is kept
    else:
        assert len(store.runs()) == run_count


def pets_folder(root: Path) -> None:
    """Two classes of four flat 32x32 images each, in train/ and test/: enough for a batch of 4."""
    from PIL import Image

    for split in ("train", "test"):
        for index, name in enumerate(("cat", "dog")):
            (root / split / name).mkdir(parents=True)
            for shade in range(4):
                Image.new("RGB", (32, 32), (60 * shade, 200 * index, 90)).save(root / split / name / f"{shade}.png")


def test_relative_data_and_home_paths_are_recorded_absolute(tmp_path, monkeypatch, capsys):
    """A run's worker starts in the package's folder, and later commands run from anywhere: the paths typed
    relative to where `train` ran must still name the same folders."""
    monkeypatch.chdir(tmp_path)
    pets_folder(tmp_path / "pets")
    assert main(["train", "--model", "resnet8", "--data", "pets", "--iterations", "2", "--batch-size", "4",
                 "--eval-every", "2", "--precision", "fp32", "--home", "home"]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    store = Store(tmp_path / "home")
    [run] = store.runs()
    assert run.data == str(tmp_path / "pets") and store.latest_checkpoint(run.id)[1].is_absolute()
    capsys.readouterr()
    assert main(["evaluate", str(run.id), "--json", "--home", str(tmp_path / "home")]) == 0
    assert strict_json(capsys.readouterr().out)["data"] == str(tmp_path / "pets")


@pytest.mark.parametrize("change, message", [
    ("add a class", "has 3 classes but run 1's resnet8 was trained on 2"),
    ("rename a class", "classes are not the ones run 1's resnet8 was trained on (new: ant; gone: dog)"),
])
def test_evaluate_refuses_a_folder_whose_classes_changed_since_training(tmp_path, monkeypatch, capsys, change,
                                                                        message):
    from PIL import Image

    pets_folder(tmp_path / "pets")
    home = ["--home", str(tmp_path / "home")]
    assert main(["train", "--model", "resnet8", "--data", str(tmp_path / "pets"), "--iterations", "2",
                 "--batch-size", "4", "--eval-every", "2", "--precision", "fp32", *home]) == 0
    for split in ("train", "test"):
        if change == "add a class":
            (tmp_path / "pets" / split / "eel").mkdir()
            Image.new("RGB", (32, 32)).save(tmp_path / "pets" / split / "eel" / "0.png")
        else:
            (tmp_path / "pets" / split / "dog").rename(tmp_path / "pets" / split / "ant")
    capsys.readouterr()
    assert main(["evaluate", "1", "--json", *home]) == 2  # a traceback, or labels meaning other classes, before
    [line] = capsys.readouterr().err.splitlines()
    assert message in line


def test_the_cli_and_python_submit_the_same_run_for_the_same_settings(tmp_path, capsys):
    """One submission path: `train --model` records what `admission.submit` queues, recipe and all."""
    from resnet_core.runs import admission

    settings = dict(iterations=6, batch_size=8, eval_every=3, lr=0.05)
    assert main(["train", "--model", "resnet8", "--data", "synthetic", "--iterations", "6", "--batch-size", "8",
                 "--eval-every", "3", "--lr", "0.05", "--precision", "fp32", "--home", str(tmp_path)]) == 0
    store = Store(tmp_path)
    python_id = admission.submit("resnet8", "synthetic", precision="fp32", store=store, **settings)
    from_cli, from_python = store.runs()
    assert from_cli.status == "finished" and from_python.id == python_id
    fields = ("model", "spec", "recipe", "data", "device", "precision", "seed", "name")
    assert {field: getattr(from_cli, field) for field in fields} == {field: getattr(from_python, field)
                                                                     for field in fields}
    capsys.readouterr()
    with pytest.raises(UserError, match="batch_size must be a whole number of at least 1; got 0"):
        admission.submit("resnet8", "synthetic", store=store, iterations=6, batch_size=0)
    assert main(["train", "--model", "resnet8", "--data", "synthetic", "--iterations", "6", "--batch-size", "0",
                 "--home", str(tmp_path)]) == 2
    assert "batch_size must be a whole number of at least 1; got 0" in capsys.readouterr().err
    assert len(store.runs()) == 2


@pytest.mark.parametrize("how", ["new", "resume"])
def test_a_dispatcher_running_as_train_records_its_run_cannot_start_it_again(tmp_path, monkeypatch, how):
    """`train` records the run it trains itself as running for its own process in the transaction that creates
    (or resumes) it: another run ending at that moment starts whatever is queued, and must not take this one."""
    from resnet_core.runs import admission, control, dispatch, settings

    monkeypatch.setenv(settings.CAP_VARIABLE, "2")
    monkeypatch.setenv(settings.SPARES_VARIABLE, "0")
    store = Store(tmp_path)
    if how == "resume":
        stopped = admission.submit("resnet8", "synthetic", precision="fp32", store=store, iterations=4, batch_size=32)
        store.claim(stopped, 2 ** 22 + 12345)  # beyond pid_max: its process is gone
        store.finish(stopped, "interrupted")
        args = ["--resume", str(stopped)]
    else:
        args = [*TINY, "--iterations", "4"]
    started = []
    for method in ("create_runs", "requeue_for_resume"):
        def then_dispatch(self, *positional, _original=getattr(Store, method), **keywords):
            result = _original(self, *positional, **keywords)
            started.extend(dispatch.dispatch(Store(tmp_path)))  # another process's dispatcher, at the worst moment
            return result
        monkeypatch.setattr(Store, method, then_dispatch)
    try:
        assert main(["train", "--home", str(tmp_path), *args]) == 0
    finally:
        for run_id in started:
            control.cancel(run_id, Store(tmp_path))
    (run,) = store.runs()
    assert started == [] and run.status == "finished" and run.pid == os.getpid()


@pytest.mark.parametrize("damage, message", [
    ("missing", "is missing"), ("truncated", "truncated"), ("foreign", "not a ResNet Explorer checkpoint")])
def test_damaged_checkpoints_fail_evaluate_and_resume_in_one_line(tmp_path, capsys, damage, message):
    assert main(["train", *TINY, "--iterations", "2", "--home", str(tmp_path)]) == 0
    run_id = damage_checkpoint(tmp_path, damage)
    before = Store(tmp_path).metrics(run_id)
    for argv in (["evaluate", str(run_id)], ["train", "--resume", str(run_id)]):
        capsys.readouterr()
        assert main([*argv, "--home", str(tmp_path)]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0]
    assert Store(tmp_path).metrics(run_id) == before
    assert Store(tmp_path).run(run_id).status == "failed"  # the resume attempt says why it stopped
