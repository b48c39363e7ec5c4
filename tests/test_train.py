"""The training loop: learning, reproducibility, exact resume, divergence, evaluation."""
import math

import pytest
import torch

from resnet_core.nets.model import ResNet
from resnet_core.nets.specs import NetSpec, get_spec
from resnet_core.runs.store import Store
from resnet_core.training import train as training
from resnet_core.training.data import synthetic_data
from resnet_core.training.evaluate import evaluate, evaluation_report
from resnet_core.training.recipe import Recipe
from resnet_core.training.train import RunEnd, TrainMetrics, train

SPEC = get_spec("resnet8")
DATA = synthetic_data(256, 64)


def recipe(iterations=24, **changes):
    return Recipe(batch_size=32, eval_interval=8, **changes).shortened(iterations=iterations)


def claimed_run(store, run_recipe):
    run_id = store.create_run(name="t", spec=SPEC.to_dict(), recipe=run_recipe.to_dict(), data="synthetic",
                              device="cpu", precision="fp32", seed=0)
    store.claim(run_id, 1)
    return run_id


def test_loss_falls_and_records_come_in_order():
    records = list(train(SPEC, DATA, recipe(40), precision="fp32"))
    trains = [r for r in records if isinstance(r, TrainMetrics)]
    tests = [r for r in records if isinstance(r, training.TestMetrics)]
    assert [r.iteration for r in trains] == list(range(1, 41))
    assert [r.iteration for r in tests] == [8, 16, 24, 32, 40]
    assert records[-1] == RunEnd(40, "finished")
    assert trains[-1].smoothed_loss < 0.7 * trains[0].loss
    assert tests[-1].error < 0.7  # chance is 0.9
    assert all(r.images_per_s > 0 and r.eta_s >= 0 and r.elapsed_s > 0 for r in trains)


def test_seeded_cpu_runs_repeat_exactly():
    def losses(seed):
        return [r.loss for r in train(SPEC, DATA, recipe(6), seed=seed, precision="fp32")
                if isinstance(r, TrainMetrics)]

    assert losses(3) == losses(3) and losses(3) != losses(4)


def test_a_cancelled_run_resumes_into_the_same_curve(tmp_path):
    store = Store(tmp_path)
    uninterrupted = claimed_run(store, recipe())
    reference = [r for r in train(SPEC, DATA, recipe(), store=store, run_id=uninterrupted, precision="fp32")]

    resumed = claimed_run(store, recipe())
    first = list(train(SPEC, DATA, recipe(), store=store, run_id=resumed, precision="fp32",
                       should_stop=lambda: len(store.metrics(resumed)) >= 11))
    assert first[-1].status == "cancelled" and store.run(resumed).status == "cancelled"
    stopped_at = store.latest_checkpoint(resumed)[0]
    assert 8 < stopped_at < 24  # a final checkpoint mid-epoch, not just the last periodic one
    store.requeue_for_resume(resumed)
    store.claim(resumed, 1)
    second = list(train(SPEC, DATA, recipe(), store=store, run_id=resumed, precision="fp32"))
    assert second[0].iteration == stopped_at + 1 and second[-1].status == "finished"

    def curve(run_id):
        return [(row["kind"], row["iteration"], row["loss"]) for row in store.metrics(run_id)]

    assert curve(resumed) == curve(uninterrupted)
    assert [r.loss for r in second if isinstance(r, TrainMetrics)] == [
        r.loss for r in reference if isinstance(r, TrainMetrics)][stopped_at:]


def test_a_nan_loss_ends_the_run_as_diverged_and_keeps_its_history(tmp_path):
    store = Store(tmp_path)
    huge = recipe(lr=1e30)
    run_id = claimed_run(store, huge)
    records = list(train(SPEC, DATA, huge, store=store, run_id=run_id, precision="fp32"))
    end = records[-1]
    assert end.status == "diverged" and "lower --lr" in end.message and "\n" not in end.message
    run = store.run(run_id)
    assert run.status == "diverged" and run.error == end.message
    kept = store.metrics(run_id, "train")
    assert [row["iteration"] for row in kept] == list(range(1, end.iteration))
    assert all(math.isfinite(row["loss"]) for row in kept)


def test_stopping_iteration_early_cancels_the_run(tmp_path):
    store = Store(tmp_path)
    run_id = claimed_run(store, recipe())
    for record in train(SPEC, DATA, recipe(), store=store, run_id=run_id, precision="fp32"):
        if record.iteration == 3:
            break
    assert store.run(run_id).status == "cancelled" and store.latest_checkpoint(run_id)[0] == 3
    assert [row["iteration"] for row in store.metrics(run_id)] == [1, 2, 3]


def test_a_spec_that_does_not_match_the_data_is_refused():
    with pytest.raises(ValueError, match="num_classes"):
        next(train(get_spec("resnet8", num_classes=3), DATA, recipe()))


def test_evaluation_report_is_consistent():
    torch.manual_seed(0)
    model = ResNet(SPEC)
    report = evaluation_report(model, DATA, mistakes=5)
    confusion = torch.tensor(report.confusion_matrix)
    assert confusion.sum() == len(DATA.test_labels) and confusion.shape == (10, 10)
    assert report.test_error == pytest.approx(1 - confusion.diagonal().sum().item() / confusion.sum().item())
    assert report.test_error == evaluate(model, DATA)
    assert set(report.per_class_accuracy) == set(DATA.classes)
    confidences = [m.confidence for m in report.most_confident_mistakes]
    assert len(confidences) == 5 and confidences == sorted(confidences, reverse=True)
    assert all(m.true_class != m.predicted_class for m in report.most_confident_mistakes)


def test_imagenet_style_nets_train_with_scale_jitter_and_test_with_ten_crops():
    spec = NetSpec(family="imagenet", block="bottleneck", blocks_per_stage=(1, 1), widths=(4, 8), shortcut="B",
                   input_size=32, num_classes=10)
    data = synthetic_data(64, 16, image_size=36)  # stored with a margin around the 32-pixel crops
    jitter = Recipe(batch_size=16, schedule="plateau", lr_milestones=(), augmentation="scale-crop",
                    scale_range=(36, 44), per_pixel_mean=True, iterations=4, eval_interval=2)
    records = list(train(spec, data, jitter, precision="fp32"))
    assert records[-1].status == "finished"
    report = evaluation_report(ResNet(spec), data, jitter, ten_crop=True)
    assert report.ten_crop and 0 <= report.test_error <= 1
