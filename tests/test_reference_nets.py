"""The shipped reference nets: loadable strictly, their numbers agreeing with their histories, the `models --json`
contract, their faint curves behind a live run of the same net (and only then), and a damaged or missing file
named by the pages that use it while the others still show."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from resnet_core.cli import main
from resnet_core.explain import catalog
from resnet_core.nets.specs import get_spec
from resnet_core.runs.store import Store
from resnet_core.training.checkpoint import load_model
from resnet_core.training.recipe import Recipe, training_recipe

PAGES = Path(__file__).resolve().parents[1] / "pages"
REFERENCE_LEGEND = "ResNet-20 reference (12 epochs, lr ÷10 at 50 % and 75 %)"


@pytest.mark.parametrize("model", catalog.REFERENCE_NAMES)
def test_every_shipped_reference_loads_strictly_and_its_numbers_agree_with_its_history(model):
    reference = catalog.reference(model)
    net, metadata = load_model(reference.path)  # strict: every weight of the spec, nothing else
    assert net.spec == get_spec(model) and metadata["classes"][0] == "airplane"
    history = reference.history()
    tests = history[history["kind"] == "test"]
    assert list(tests["iteration"]) == list(range(390, 4681, 390))  # once an epoch, 12 epochs
    assert tests["error"].iloc[-1] == pytest.approx(reference.test_error)  # the final test is the recorded one
    assert history[history["kind"] == "train"]["iteration"].tolist() == list(range(1, 4681))
    recipe = Recipe.from_dict(reference.recipe)
    assert (recipe.iterations, recipe.batch_size, recipe.lr_milestones) == (4680, 128, (2340, 3510))
    # docs/REFERENCE_NETS.md's command gives this recipe today (it recorded "once an epoch" as None, now 390).
    again = training_recipe(get_spec(model), epochs=12, train_images=50_000, kind="paper", batch_size=128,
                            normalization="per-channel")
    assert again == Recipe.from_dict({**reference.recipe, "eval_interval": 390})
    report = metadata["report"]
    assert sum(map(sum, report["confusion_matrix"])) == 10_000
    correct = sum(report["confusion_matrix"][i][i] for i in range(10))
    assert 1 - correct / 10_000 == pytest.approx(reference.test_error, abs=1e-4)
    assert len(metadata["layer_response_stds"]["std"]) == get_spec(model).depth - 1  # every 3x3 layer


def test_models_json_lists_every_usable_model_with_the_promised_fields(tmp_path, capsys):
    assert main(["train", "--model", "resnet8", "--data", "synthetic", "--iterations", "2", "--batch-size", "8",
                 "--precision", "fp32", "--home", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["models", "--json", "--home", str(tmp_path)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert all({"name", "model", "source", "test_error", "path"} <= set(entry) for entry in listed)
    by_name = {entry["name"]: entry for entry in listed}
    assert [name for name in by_name if name.startswith("reference:")] == [
        "reference:resnet20", "reference:plain20", "reference:resnet56", "reference:plain56"]  # best first
    assert by_name["reference:resnet56"]["test_error"] == pytest.approx(0.2351, abs=1e-4)
    assert by_name["run:1"]["source"] == "run" and Path(by_name["run:1"]["path"]).is_file()
    assert {by_name["demo:resnet20"]["source"], by_name["reference:plain20"]["source"]} == {"demo", "reference"}
    assert all(Path(entry["path"]).is_file() for entry in listed)


def tiny_cifar10_folder(root: Path) -> Path:
    """An image folder named as CIFAR-10 copies are (two images per class), standing in for the real one."""
    from PIL import Image

    folder = root / "cifar10-jpeg"
    for split in ("train", "test"):
        for name in ("airplane", "automobile"):
            (folder / split / name).mkdir(parents=True)
            for index in range(2):
                Image.new("RGB", (32, 32), (index * 90, 40, 200)).save(folder / split / name / f"{index}.png")
    return folder


def test_a_live_run_of_a_net_with_a_reference_has_it_faintly_behind_and_others_do_not(app_home, tmp_path,
                                                                                        app_chart_traces):
    store = Store(app_home)
    folder = tiny_cifar10_folder(tmp_path)
    spec = get_spec("resnet20", num_classes=2)
    recipe = Recipe(iterations=450, batch_size=128).to_dict()
    # Live runs of this process: the page's dispatcher must not start real training processes for them.
    ids = store.create_runs([dict(name=name, spec=spec.to_dict() if model == "resnet20" else
                                  get_spec(model, num_classes=2).to_dict(), recipe=recipe, data=data, device="cpu",
                                  precision="fp32", seed=0)
                             for name, model, data in (("with", "resnet20", str(folder)),
                                                       ("without", "resnet8", str(folder)),
                                                       ("synthetic", "resnet20", "synthetic"))], taken_by=os.getpid())
    for run_id in ids:
        store.add_metrics(run_id, [{"iteration": 1, "kind": "train", "epoch": 0, "error": 0.9, "smoothed_error": 0.9,
                                    "loss": 2.3, "smoothed_loss": 2.3, "lr": 0.1}])
    at = AppTest.from_file(str(PAGES / "3_Train.py"), default_timeout=60)
    at.query_params["runs"] = str(ids[0])
    at.run()
    assert not at.exception
    traces = app_chart_traces(at)
    reference = catalog.reference("resnet20").history()
    assert traces[f"{REFERENCE_LEGEND} train"]["x"] == list(range(1, 451))  # up to the run's length, same unit
    assert traces[f"{REFERENCE_LEGEND} test"]["x"] == [390]
    assert traces[f"{REFERENCE_LEGEND} test"]["y"] == pytest.approx(
        [100 * reference[(reference["kind"] == "test")]["error"].iloc[0]])
    assert traces[f"{REFERENCE_LEGEND} train"]["opacity"] < 1 and f"#{ids[0]} ResNet-20 test" in traces
    assert any("Faint dotted lines" in caption.value for caption in at.caption)
    for other in ids[1:]:  # no reference of ResNet-8; none behind a run on synthetic images
        at.query_params["runs"] = str(other)
        at.run()
        assert not any("reference" in name for name in app_chart_traces(at))


def damaged_reference_dir(tmp_path: Path, monkeypatch) -> Path:
    """A copy of the shipped references with ResNet-56's model cut short and plain-20's history missing."""
    copy = tmp_path / "reference"
    shutil.copytree(catalog.REFERENCE_DIR, copy)
    (copy / "resnet56.safetensors").write_bytes((copy / "resnet56.safetensors").read_bytes()[:1000])
    (copy / "plain20-metrics.csv.gz").unlink()
    monkeypatch.setattr(catalog, "REFERENCE_DIR", copy)
    return copy


def test_a_damaged_or_missing_reference_is_named_and_the_rest_still_shows(app_home, tmp_path, monkeypatch):
    copy = damaged_reference_dir(tmp_path, monkeypatch)
    found, problems = catalog.references()
    assert [reference.model for reference in found] == ["plain20", "resnet20", "plain56"]
    assert len(problems) == 1 and str(copy / "resnet56.safetensors") in problems[0] and "\n" not in problems[0]

    runs_page = AppTest.from_file(str(PAGES / "4_Runs.py"), default_timeout=60).run()
    assert not runs_page.exception
    warnings = [warning.value for warning in runs_page.warning]
    assert any(str(copy / "resnet56.safetensors") in warning for warning in warnings)
    assert any(str(copy / "plain20-metrics.csv.gz") in warning for warning in warnings)
    assert list(runs_page.dataframe[0].value["id"]) == [-2, -3]  # ResNet-20 and plain-56 are there

    inside = AppTest.from_file(str(PAGES / "6_Inside.py"), default_timeout=120).run()
    assert not inside.exception
    assert any(str(copy / "resnet56.safetensors") in warning.value for warning in inside.warning)
    assert [element.proto.id for element in inside.get("plotly_chart") if "inside_fig7_" in element.proto.id]
    assert not [element for element in inside.get("plotly_chart") if "inside_fig7_56" in element.proto.id]

    classify = AppTest.from_file(str(PAGES / "5_Classify.py"), default_timeout=60).run()
    assert not classify.exception
    labels = classify.selectbox(key="classify_left").options
    assert not [label for label in labels if label.startswith("ResNet-56 reference")]
    assert classify.selectbox(key="classify_right").value == "reference:resnet20"
