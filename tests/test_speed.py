"""This server's speed (resnet_core.speed): the book of measurements, estimates from a recorded history, preset
lengths for a fast and a slow server, a run's own measurement and the `presets` command. A real calibration is
measured by test_app_train's page that starts one."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from helpers import REPO, seed_speeds

from resnet_core.nets.specs import get_spec
from resnet_core.presets import PRESETS, by_label
from resnet_core.cli import main
from resnet_core.speed import book
from resnet_core.speed.book import CALIBRATION, Conditions, Measurement
from resnet_core.speed.estimate import describe_seconds, estimate_planned, makespan, run_seconds, speed_of
from resnet_core.speed.fit import LENGTH_STEP, fit, preset_recipes
from resnet_core.training.recipe import training_recipe

CPU = Conditions(device="cpu", precision="fp32", threads=1, slots=2)


def measured(net: str, train: float, test: float, overhead: float = 2.0, source: str = CALIBRATION,
             machine: str | None = None, threads: int = 1) -> Measurement:
    return Measurement(net, "cpu", "fp32", threads, train, test, overhead, source, machine or book.this_machine(),
                       time.time())


def test_a_runs_wall_time_is_its_start_its_steps_and_its_test_passes():
    speed = speed_of(get_spec("resnet56"), CPU, [measured("resnet56", 128.0, 1_000.0, overhead=5.0, source="run 7")])
    assert speed.basis == "1 finished run of resnet56 here"
    recipe = training_recipe(get_spec("resnet56"), iterations=450, train_images=50_000)
    # 5 test points: 4 on an even stride of 2,000 of the 10,000 test images, the last on all of them.
    assert recipe.test_points(50_000) == [90, 180, 270, 360, 450]
    assert [recipe.test_images(point, 10_000) for point in recipe.test_points(50_000)] == [2_000] * 4 + [10_000]
    assert run_seconds(recipe, speed, train_images=50_000, test_images=10_000) == pytest.approx(
        5.0 + 450 * 128 / 128.0 + 18_000 / 1_000.0)


def test_a_nets_speed_is_its_last_runs_else_the_calibration_by_mult_adds():
    found = [measured("resnet20", 600.0, 2_400.0), measured("resnet56", 200.0, 800.0),
             *(measured("plain56", speed, 700.0, source=f"run {i}") for i, speed in enumerate((100.0, 150, 170, 190)))]
    assert speed_of(get_spec("plain56"), CPU, found).train_images_per_s == pytest.approx((150 + 170 + 190) / 3)
    # ResNet-56 from the calibration itself; ResNet-32 between the two, per image linear in mult-adds (for the CIFAR
    # nets, linear in depth: each of their 3x3 convolutions costs the same).
    assert speed_of(get_spec("resnet56"), CPU, found).train_images_per_s == pytest.approx(200.0)
    per_image = 1 / 600 + (1 / 200 - 1 / 600) * (32 - 20) / (56 - 20)
    assert speed_of(get_spec("resnet32"), CPU, found).train_images_per_s == pytest.approx(1 / per_image, rel=0.01)
    assert speed_of(get_spec("resnet110"), CPU, found).train_images_per_s < 200.0
    # Other conditions, another machine's book, no calibration: unknown.
    assert speed_of(get_spec("resnet32"), Conditions("cpu", "fp32", threads=2, slots=1), found) is None
    assert speed_of(get_spec("resnet32"), CPU, [measured("resnet20", 600.0, 2_400.0)]) is None


def test_runs_beyond_the_slots_wait_for_one():
    assert makespan([300.0, 200.0], slots=2) == 300.0
    assert makespan([300.0, 200.0, 100.0], slots=2) == 300.0
    assert makespan([300.0, 200.0, 250.0], slots=2) == 450.0
    assert makespan([300.0, 200.0], slots=1) == 500.0
    planned = preset_recipes(by_label("Shortcuts: plain-56 vs ResNet-56"), 450)
    found = [measured("resnet20", 600.0, 2_400.0), measured("resnet56", 200.0, 800.0)]
    together = estimate_planned(planned, CPU, found, train_images=50_000, test_images=10_000)
    alone = estimate_planned(planned, Conditions("cpu", "fp32", 1, slots=1), found, train_images=50_000,
                             test_images=10_000)
    assert together.describe() == f"about {describe_seconds(together.seconds)} on this server, both runs at once"
    assert alone.seconds == pytest.approx(2 * together.seconds, rel=0.01)
    assert alone.describe().endswith("2 runs, 1 at a time")


@pytest.mark.parametrize("resnet56_images_per_s", [60.0, 200.0, 2_000.0])
def test_each_preset_takes_the_longest_length_that_fits_and_never_less_than_its_minimum(resnet56_images_per_s):
    found = [measured("resnet20", 3 * resnet56_images_per_s, 12 * resnet56_images_per_s),
             measured("resnet56", resnet56_images_per_s, 4 * resnet56_images_per_s)]
    budget = 360.0
    for preset in PRESETS:
        length = fit(preset, CPU, found, budget)
        assert length.iterations >= preset.minimum_iterations
        assert length.estimated_s == pytest.approx(estimate_planned(
            preset_recipes(preset, length.iterations), CPU, found, train_images=50_000, test_images=10_000).seconds)
        if length.fits:
            assert length.estimated_s <= budget
            longer = estimate_planned(preset_recipes(preset, length.iterations + LENGTH_STEP), CPU, found,
                                      train_images=50_000, test_images=10_000)
            assert longer.seconds > budget, f"{preset.label}: {length.iterations} is not the longest that fits"
            assert length.reason().startswith(f"{length.iterations:,} iterations: the longest that fit the 6 min")
        else:
            assert length.iterations == preset.minimum_iterations and length.estimated_s > budget
            assert length.reason().startswith(f"Even {preset.minimum_iterations:,} iterations")
    shortcuts = fit(by_label("Shortcuts: plain-56 vs ResNet-56"), CPU, found, budget)
    # ResNet-56 at 60 img/s (a slow CPU) cannot fit; at 2,000 (a GPU) the pair trains thousands of iterations.
    assert shortcuts.fits == (resnet56_images_per_s > 60)
    assert (shortcuts.iterations > 2_000) == (resnet56_images_per_s == 2_000.0)


def test_the_book_keeps_this_machines_measurements_and_survives_damage(tmp_path, caplog):
    book.record([measured("resnet20", 500.0, 2_000.0), measured("resnet56", 1.0, 1.0, machine="another, 64 cores")],
                tmp_path)
    assert [m.net for m in book.measurements(tmp_path)] == ["resnet20"]  # a copied folder's speeds are not ours
    book.book_path(tmp_path).write_text("{not json")
    assert book.measurements(tmp_path) == []
    assert "cannot be read" in caplog.text
    book.record([measured("resnet56", 180.0, 700.0)], tmp_path)
    assert [m.net for m in book.measurements(tmp_path)] == ["resnet56"]


def test_a_finished_run_adds_its_own_speeds_to_the_book(tmp_path):
    assert main(["train", "--model", "resnet8", "--data", "synthetic", "--iterations", "40", "--eval-every", "10",
                 "--batch-size", "32", "--threads", "1", "--precision", "fp32", "--quiet", "--home", str(tmp_path)]) == 0
    [measurement] = book.measurements(tmp_path)
    assert (measurement.net, measurement.device, measurement.precision, measurement.threads, measurement.source) == (
        "resnet8", "cpu", "fp32", 1, "run 1")
    assert 50 < measurement.train_images_per_s < 100_000 and 50 < measurement.test_images_per_s < 1_000_000
    assert 0 < measurement.overhead_s < 60
    speed = speed_of(get_spec("resnet8"), Conditions("cpu", "fp32", 1, 2), book.measurements(tmp_path))
    assert speed.basis == "1 finished run of resnet8 here"


def test_a_finished_segmentation_run_times_the_next_of_its_kind_and_no_other(isolated_home):
    """Scenes cost what no classifier's speed says: a segmentation run is measured under its own name, and a queued
    one's card has a time once a run of its kind (segmenter, freezing, canvas) has finished here."""
    from dataclasses import replace

    from explorer import speed
    from resnet_core.runs.store import Store

    started = time.monotonic()
    assert main(["segment", "train", "--backbone", "random:resnet8", "--scenes-from", "synthetic", "--iterations",
                 "40", "--eval-every", "10", "--scenes", "64", "--test-scenes", "16", "--batch-size", "16",
                 "--threads", "1", "--quiet", "--home", str(isolated_home)]) == 0
    wall = time.monotonic() - started
    [measurement] = [m for m in book.measurements(isolated_home) if m.source != CALIBRATION]  # beside seed_speeds'
    assert (measurement.net, measurement.threads, measurement.source) == ("fcn-resnet8 on 64-px scenes", 1, "run 1")
    run = Store(isolated_home).run(1)
    assert 0.3 * wall < speed.queued(run) < 1.5 * wall  # the same run again: its own measured time
    frozen = replace(run, settings={**run.settings, "freeze": True})
    assert speed.queued(frozen) is None  # another kind of work, not measured here yet
    classifier = speed_of(get_spec("resnet8"), speed.here(), book.measurements(isolated_home))
    assert classifier.basis == "this server's calibration"  # a classifier's time is not a segmenter's


def test_presets_json_is_the_contract(tmp_path):
    seed_speeds(tmp_path)  # this machine's precision and threads, so the command does not calibrate
    result = subprocess.run([sys.executable, "-m", "resnet_core", "presets", "--json", "--home", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**_environment(), "RESNET_EXPLORER_DEMO_MINUTES": "4"})
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["label"] for row in rows] == [preset.label for preset in PRESETS]
    for row, preset in zip(rows, PRESETS):
        assert {"label", "nets", "iterations", "minimum_iterations", "estimated_s"} <= set(row)
        assert row["nets"] == list(preset.nets) and row["minimum_iterations"] == preset.minimum_iterations
        assert row["iterations"] >= preset.minimum_iterations
        assert row["fits"] == (row["estimated_s"] <= 240)


def test_a_bad_demo_budget_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "resnet_core", "presets", "--home", str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=60,
                            env={**_environment(), "RESNET_EXPLORER_DEMO_MINUTES": "soon"})
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: $RESNET_EXPLORER_DEMO_MINUTES must be a number of minutes above 0 (e.g. "
                                     "6 or 2.5); got 'soon'.")
    assert not book.book_path(tmp_path).exists()  # refused before anything was measured


def _environment() -> dict[str, str]:
    import os

    return {name: value for name, value in os.environ.items() if not name.startswith("RESNET_EXPLORER_")}
