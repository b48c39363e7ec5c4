"""The training loop: learning, reproducibility, exact resume, divergence, evaluation. Where its records and
checkpoints go is tests/test_executor.py's."""
import dataclasses
import math

import pytest
import torch

from resnet_core.errors import CheckpointError
from resnet_core.nets.model import ResNet
from resnet_core.nets.specs import NetSpec, get_spec
from resnet_core.training import train as training  # its TestMetrics, imported bare, would be collected
from resnet_core.training.data import synthetic_data
from resnet_core.training.evaluate import evaluate, evaluation_report
from resnet_core.training.recipe import Recipe
from resnet_core.training.train import CheckpointDue, RunEnd, TrainMetrics, train

SPEC = get_spec("resnet8")
DATA = synthetic_data(256, 64)


def recipe(iterations=24, **changes):
    return Recipe(batch_size=32, eval_interval=8, **changes).shortened(iterations=iterations)


def metric_rows(records):
    """The metric records as rows, without their wall-clock fields (speed, elapsed and remaining time)."""
    timing = {"images_per_s", "elapsed_s", "eta_s"}
    return [{key: value for key, value in dataclasses.asdict(record).items() if key not in timing}
            for record in records if isinstance(record, (TrainMetrics, training.TestMetrics))]


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


def test_resuming_from_a_checkpoint_due_yields_exactly_the_uninterrupted_records():
    uninterrupted = list(train(SPEC, DATA, recipe(), precision="fp32"))
    at = [index for index, record in enumerate(uninterrupted) if isinstance(record, CheckpointDue)]
    assert [uninterrupted[index].iteration for index in at] == [8, 16, 24]
    assert all(isinstance(uninterrupted[index - 1], training.TestMetrics) for index in at)  # each after its evaluation
    due = uninterrupted[at[0]]  # held while 16 more iterations trained: it must still be the state after 8
    after = uninterrupted[at[0] + 1:]
    for _ in range(2):  # twice from the same checkpoint: resuming must not change it
        resumed = list(train(SPEC, DATA, recipe(), precision="fp32", resume=due.checkpoint))
        assert resumed[0].iteration == 9 and resumed[-1] == RunEnd(24, "finished")
        assert metric_rows(resumed) == metric_rows(after)
        assert [r.iteration for r in resumed if isinstance(r, CheckpointDue)] == [16, 24]


def test_a_checkpoint_of_another_net_is_refused():
    due = next(r for r in train(SPEC, DATA, recipe(8), precision="fp32") if isinstance(r, CheckpointDue))
    with pytest.raises(CheckpointError, match="holds a resnet8, not this run's resnet14"):
        next(train(get_spec("resnet14"), DATA, recipe(), precision="fp32", resume=due.checkpoint))


def test_a_nan_loss_ends_the_run_as_diverged_without_a_checkpoint():
    records = list(train(SPEC, DATA, recipe(lr=1e30), precision="fp32"))
    end = records[-1]
    assert end.status == "diverged" and "lower --lr" in end.message and "\n" not in end.message
    assert not any(isinstance(r, CheckpointDue) for r in records)
    kept = [r for r in records if isinstance(r, TrainMetrics)]
    assert [r.iteration for r in kept] == list(range(1, end.iteration))
    assert all(math.isfinite(r.loss) for r in kept)


def test_a_stop_request_cancels_after_a_final_checkpoint():
    seen = []

    def should_stop():  # asked during the step of iteration 3, once iteration 2 has been seen
        return any(r.iteration >= 2 for r in seen)

    for record in train(SPEC, DATA, recipe(), precision="fp32", should_stop=should_stop):
        seen.append(record)
    assert [type(r) for r in seen[-2:]] == [CheckpointDue, RunEnd]
    assert seen[-2].iteration == 3 and seen[-1] == RunEnd(3, "cancelled", "Cancelled at iteration 3.")


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
