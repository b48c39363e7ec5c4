"""A residual backbone classifies pixels (issue 25): composed scenes, the FCN segmenter on every CIFAR net, IoU as VOC
counts it, and the training loop. Tiny nets and scenes: the whole file runs in well under a minute on one core."""
import dataclasses
import math
import pickle

import pytest
import torch

from resnet_core.errors import UserError
from resnet_core.nets.model import ResNet
from resnet_core.nets.specs import get_spec
from resnet_core.pixels.scenes import BOX_COLUMNS, SceneLayout, compose_scenes
from resnet_core.pixels.scores import confusion, iou, miou, pixel_accuracy, segmentation_scores
from resnet_core.pixels.segment_train import (SegmentCheckpointDue, SegmentTestMetrics, SegmentTrainMetrics,
                                              evaluate_segmentation, flip_together, train_segmentation)
from resnet_core.pixels.segmenter import build_segmenter, load_backbone, load_segmenter, save_segmenter
from resnet_core.training.augment import Normalization
from resnet_core.training.checkpoint import InvalidCheckpointError, load_model, save_model
from resnet_core.training.data import ImageData, synthetic_data
from resnet_core.training.train import RunEnd

CLASSES = 11  # the background and synthetic_data's ten patterns, as CIFAR-10's scenes have
SOURCE, LABEL, TOP, LEFT, SIDE = range(len(BOX_COLUMNS))


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def scenes():
    return compose_scenes(synthetic_data(256, 64), train_count=128, test_count=32, seed=0)


FLAT_COLOURS = torch.tensor([[40 + 50 * k, 250 - 40 * k, 30 + 20 * k] for k in range(4)], dtype=torch.uint8)


def flat_colour_data() -> ImageData:
    """Every image of class k all FLAT_COLOURS[k]: a pasted image shows where it lies, at any size."""
    classes = len(FLAT_COLOURS)

    def images(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(count) % classes
        return FLAT_COLOURS[labels][:, :, None, None].expand(-1, -1, 32, 32).contiguous(), labels

    return ImageData("flat", tuple(f"colour{k}" for k in range(classes)), *images(12), *images(8),
                     pixel_mean=torch.zeros(3, 32, 32), channel_std=torch.ones(3))


def tensors(scenes) -> dict:
    return {field.name: getattr(scenes, field.name) for field in dataclasses.fields(scenes)
            if isinstance(getattr(scenes, field.name), torch.Tensor)}


# ---------------------------------------------------------------------------------------------- scenes
def test_scenes_are_a_pure_function_of_their_seed():
    data = synthetic_data(64, 32)
    first, again = (compose_scenes(data, train_count=40, test_count=20, seed=3) for _ in range(2))
    for name, tensor in tensors(first).items():
        assert torch.equal(tensor, tensors(again)[name]), name
    other = compose_scenes(data, train_count=40, test_count=20, seed=4)
    assert not torch.equal(first.train_images, other.train_images)
    assert not torch.equal(first.test_masks, other.test_masks)
    # Each split draws from its own stream: more train scenes leave the test scenes as they were.
    more = compose_scenes(data, train_count=60, test_count=20, seed=3)
    assert torch.equal(more.test_images, first.test_images) and torch.equal(more.test_masks, first.test_masks)


def test_masks_label_exactly_the_pasted_squares_the_last_on_top():
    data = flat_colour_data()
    scenes = compose_scenes(data, SceneLayout(canvas=48, object_sides=(8, 30), background="flat"), train_count=60,
                            test_count=30, seed=1)
    assert scenes.classes == ("background", *data.classes)
    for split in ("train", "test"):
        images, masks = scenes.split(split)
        boxes = getattr(scenes, f"{split}_boxes")
        labels = getattr(data, f"{split}_labels")
        assert images.shape[1:] == (3, 48, 48) and masks.shape[1:] == (48, 48) and masks.dtype == torch.uint8
        for scene, mask, rows in zip(images, masks, boxes.tolist()):
            expected = torch.zeros(48, 48, dtype=torch.uint8)
            pasted = [row for row in rows if row[SIDE]]
            assert 1 <= len(pasted) <= 3 and rows[:len(pasted)] == pasted  # present first, in paste order
            for row in pasted:
                assert 8 <= row[SIDE] <= 30 and row[TOP] + row[SIDE] <= 48 and row[LEFT] + row[SIDE] <= 48
                assert row[LABEL] == labels[row[SOURCE]] + 1
                expected[row[TOP]:row[TOP] + row[SIDE], row[LEFT]:row[LEFT] + row[SIDE]] = row[LABEL]
            assert torch.equal(mask, expected)
            for label in expected.unique().tolist():
                colours = scene[:, expected == label].unique(dim=1)  # a flat colour per label, resized or not
                assert colours.shape[1] == 1
                if label:
                    assert torch.equal(colours[:, 0], FLAT_COLOURS[label - 1])


def test_pixel_counts_add_up_to_the_canvas(scenes):
    for split, count in (("train", 128), ("test", 32)):
        counts = scenes.pixel_counts(split)
        assert counts.shape == (CLASSES,) and counts.sum().item() == count * 64 * 64
        assert scenes.background_share(split) == counts[0].item() / (count * 64 * 64)
        assert 0.4 < scenes.background_share(split) < 0.9  # 1-3 squares of 16-40 pixels on 64 x 64


@pytest.mark.parametrize("options, allowed", [
    ({"train_count": 0}, "train_count must be a whole number of scenes of at least 1"),
    ({"test_count": -5}, "test_count must be a whole number of scenes of at least 1"),
    ({"train_count": 2.5}, "train_count must be a whole number"),
])
def test_bad_counts_are_refused(options, allowed):
    with pytest.raises(UserError, match=allowed):
        compose_scenes(synthetic_data(16, 8), **options)


@pytest.mark.parametrize("fields, allowed", [
    ({"canvas": 0}, "whole number of pixels of at least 1"),
    ({"canvas": 32}, r"object_sides .* up to the canvas \(32\)"),
    ({"objects": (0, 3)}, "the fewest \\(at least 1\\)"),
    ({"objects": (3, 2)}, "the fewest"),
    ({"object_sides": (0, 20)}, "from at least 1"),
    ({"background": "stripes"}, "allowed: flat, noise"),
])
def test_bad_layouts_are_refused(fields, allowed):
    with pytest.raises(UserError, match=allowed):
        SceneLayout(**fields)


# ---------------------------------------------------------------------------------------------- segmenter
@pytest.mark.parametrize("name", ["resnet8", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "plain20"])
@pytest.mark.parametrize("skip", [False, True])
def test_every_cifar_net_segments_a_scene_at_its_size(name, skip):
    segmenter = build_segmenter(name, CLASSES, skip=skip).eval()
    with torch.no_grad():
        assert segmenter(torch.randn(2, 3, 64, 64)).shape == (2, CLASSES, 64, 64)
        assert segmenter(torch.randn(1, 3, 32, 48)).shape == (1, CLASSES, 32, 48)
    # The backbone is the classifier less its head: a classifier's state dict, less the fc, loads as it is.
    classifier_keys = {key for key in ResNet(get_spec(name)).state_dict() if not key.startswith("fc.")}
    assert set(segmenter.backbone.state_dict()) == classifier_keys
    assert segmenter.spec.name == f"{'fcn16s' if skip else 'fcn'}-{name}"


def test_every_segmenter_operation_is_a_module_used_once_and_it_pickles():
    segmenter = build_segmenter("resnet8", CLASSES, skip=True)
    modules = [module for _, module in segmenter.named_modules(remove_duplicate=False)]
    assert len(modules) == len({id(module) for module in modules})
    calls: dict[int, int] = {}
    hooks = [module.register_forward_hook(lambda m, i, o: calls.__setitem__(id(m), calls.get(id(m), 0) + 1))
             for module in modules if not list(module.children())]
    x = torch.randn(2, 3, 64, 64)
    segmenter(x)
    for hook in hooks:
        hook.remove()
    assert len(calls) == len(hooks) and set(calls.values()) == {1}
    clone = pickle.loads(pickle.dumps(segmenter))
    segmenter.eval(), clone.eval()
    with torch.no_grad():
        torch.testing.assert_close(clone(x), segmenter(x))


def test_the_seed_picks_the_backbone_and_leaves_the_global_rng_alone():
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    first = build_segmenter("resnet8", CLASSES, seed=1)
    assert torch.equal(torch.rand(1), expected)
    again, other = build_segmenter("resnet8", CLASSES, seed=1), build_segmenter("resnet8", CLASSES, seed=2)
    assert torch.equal(first.backbone.conv1.weight, again.backbone.conv1.weight)
    assert not torch.equal(first.backbone.conv1.weight, other.backbone.conv1.weight)


@pytest.mark.parametrize("backbone, allowed", [
    ("resnet21", "Unknown backbone 'resnet21'; allowed: a CIFAR net of §4.2"),
    ("vgg16", "Unknown backbone 'vgg16'; allowed: a CIFAR net of §4.2"),
    ("resnet50", "resnet50 is an ImageNet net; the segmenter's backbone must be a CIFAR net"),
    (get_spec("plain18"), "plain18 is an ImageNet net"),
])
def test_unknown_and_imagenet_backbones_are_refused(backbone, allowed):
    with pytest.raises(UserError, match=allowed):
        build_segmenter(backbone, CLASSES)


def test_bad_classes_and_sizes_are_refused():
    with pytest.raises(UserError, match="at least 2 classes"):
        build_segmenter("resnet8", 1)
    with pytest.raises(UserError, match="multiples of 4 pixels; got 30 x 32"):
        build_segmenter("resnet8", CLASSES)(torch.randn(1, 3, 30, 32))


def test_a_trained_backbone_loads_with_its_normalisation(tmp_path):
    # A net trained on another number of classes (its fc differs) is still the same backbone.
    net = ResNet(get_spec("resnet8", num_classes=100))
    mean_image = torch.rand(3, 32, 32)
    path = tmp_path / "resnet8.safetensors"
    save_model(path, net, Normalization("per-pixel", mean_image, torch.ones(3)))
    segmenter = load_backbone(build_segmenter("resnet8", CLASSES, seed=7), str(path))
    for key, value in segmenter.backbone.state_dict().items():
        assert torch.equal(value, net.state_dict()[key]), key
    # A mean image belongs to a 32 x 32 frame; a pasted image sits anywhere in a scene: its channel means are used.
    assert segmenter.normalization.kind == "per-channel"
    torch.testing.assert_close(segmenter.normalization.mean, mean_image.mean(dim=(1, 2)))
    assert not any(parameter.requires_grad is False for parameter in segmenter.parameters())


def test_a_backbone_of_another_net_is_refused(tmp_path):
    with pytest.raises(UserError, match="reference:resnet20 holds a resnet20, but this segmenter's backbone is a "
                                        "resnet56; pass a resnet56, 'random', or build the segmenter on resnet20"):
        load_backbone(build_segmenter("resnet56", CLASSES), "reference:resnet20")
    path = tmp_path / "plain8.safetensors"
    save_model(path, ResNet(get_spec("plain8")))
    with pytest.raises(UserError, match="holds a plain8, but this segmenter's backbone is a resnet8"):
        load_backbone(build_segmenter("resnet8", CLASSES), str(path))
    with pytest.raises(UserError, match="no checkpoint file"):
        load_backbone(build_segmenter("resnet8", CLASSES), str(tmp_path / "missing.safetensors"))


def test_a_segmenter_file_round_trips_and_is_no_classifier(tmp_path, scenes):
    segmenter = load_backbone(build_segmenter("resnet8", CLASSES, skip=True), "random")
    torch.nn.init.normal_(segmenter.classifier.weight)  # not the zeros every new segmenter starts with
    segmenter.normalization = Normalization("per-channel", torch.rand(3), torch.rand(3) + 0.5)
    path = tmp_path / "segmenter.safetensors"
    save_segmenter(path, segmenter, classes=list(scenes.classes))
    loaded, metadata = load_segmenter(path)
    assert loaded.spec == segmenter.spec and metadata["classes"] == list(scenes.classes)
    torch.testing.assert_close(loaded.normalization.std, segmenter.normalization.std)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), segmenter.eval()(x))
    with pytest.raises(InvalidCheckpointError, match="names no valid network"):
        load_model(path)
    classifier = tmp_path / "resnet8.safetensors"
    save_model(classifier, ResNet(get_spec("resnet8")))
    with pytest.raises(InvalidCheckpointError, match=r"holds a classifier \(resnet8\)"):
        load_segmenter(classifier)


# ---------------------------------------------------------------------------------------------- scores
def test_scores_match_a_hand_computed_case():
    target = torch.tensor([[0, 0, 1], [1, 2, 2]])
    predicted = torch.tensor([[0, 1, 1], [1, 2, 4]])
    # Two batches (one row each) accumulate to the whole set's matrix.
    matrix = confusion(predicted[:1], target[:1], 5) + confusion(predicted[1:], target[1:], 5)
    assert matrix.tolist() == [[1, 1, 0, 0, 0],  # row: target class, column: predicted class
                               [0, 2, 0, 0, 0],
                               [0, 0, 1, 0, 1],
                               [0, 0, 0, 0, 0],
                               [0, 0, 0, 0, 0]]
    assert pixel_accuracy(matrix) == 4 / 6
    ious = iou(matrix).tolist()
    # 0: 1 / (2 + 1 - 1); 1: 2 / (2 + 3 - 2); 2: 1 / (2 + 1 - 1); 3: in neither: NaN; 4: predicted, never there: 0.
    assert ious[:3] == [1 / 2, 2 / 3, 1 / 2] and math.isnan(ious[3]) and ious[4] == 0
    assert miou(matrix) == pytest.approx((1 / 2 + 2 / 3 + 1 / 2 + 0) / 4, abs=1e-15)  # 5/12: the NaN left out
    report = segmentation_scores(matrix, ("background", "a", "b", "c", "d"))
    assert report.background_share == 2 / 6 and report.iou["b"] == 1 / 2 and math.isnan(report.iou["c"])
    assert report.to_dict()["confusion_matrix"] == matrix.tolist()


def test_confusion_refuses_labels_it_cannot_count():
    with pytest.raises(ValueError, match="outside 0 … 2"):
        confusion(torch.tensor([0, 3]), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match="differ in shape"):
        confusion(torch.zeros(2, 2), torch.zeros(4), 3)
    assert math.isnan(miou(torch.zeros(3, 3, dtype=torch.int64)))


# ---------------------------------------------------------------------------------------------- training
def rows(records) -> list[dict]:
    timing = {"images_per_s", "elapsed_s", "eta_s"}
    return [{key: value for key, value in dataclasses.asdict(record).items() if key not in timing}
            for record in records if isinstance(record, (SegmentTrainMetrics, SegmentTestMetrics))]


def test_a_few_iterations_lower_the_loss_and_records_come_in_order(scenes):
    segmenter = build_segmenter("resnet8", CLASSES)
    records = list(train_segmentation(segmenter, scenes, iterations=24, batch_size=32, lr=0.05, eval_interval=12))
    trains = [r for r in records if isinstance(r, SegmentTrainMetrics)]
    tests = [r for r in records if isinstance(r, SegmentTestMetrics)]
    assert [r.iteration for r in trains] == list(range(1, 25)) and [r.iteration for r in tests] == [12, 24]
    assert records[-1] == RunEnd(24, "finished")
    dues = [(index, r.iteration) for index, r in enumerate(records) if isinstance(r, SegmentCheckpointDue)]
    assert dues == [(records.index(test) + 1, test.iteration) for test in tests]  # each right after its test point
    assert trains[0].loss == pytest.approx(math.log(CLASSES), abs=1e-4)  # zero classifier: every class alike
    assert max(r.loss for r in trains[-4:]) < 0.7 * trains[0].loss
    assert tests[-1].pixel_accuracy >= scenes.background_share("test") - 0.02
    assert len(tests[-1].iou) == CLASSES and 0 < tests[-1].miou <= 1
    assert segmenter.normalization is not None  # the scenes' statistics, kept for its evaluation
    report = evaluate_segmentation(segmenter, scenes).to_dict()
    assert report["pixel_accuracy"] == pytest.approx(tests[-1].pixel_accuracy)
    assert report["miou"] == pytest.approx(tests[-1].miou)
    assert report["background_share"] == pytest.approx(scenes.background_share("test"))
    assert set(report["iou"]) == set(scenes.classes) and report["scenes"] == 32


def test_training_is_deterministic_per_seed(scenes):
    def run(seed: int) -> list[dict]:
        segmenter = load_backbone(build_segmenter("resnet8", CLASSES, seed=seed), "random")
        return rows(train_segmentation(segmenter, scenes, iterations=3, batch_size=16, seed=seed, eval_interval=3))

    first = run(0)
    assert first == run(0)
    assert first != run(1)


def test_a_frozen_backbone_stays_as_it_was_while_the_head_learns(scenes):
    segmenter = load_backbone(build_segmenter("resnet8", CLASSES, skip=True), "random", freeze=True)
    backbone = {key: value.clone() for key, value in segmenter.backbone.state_dict().items()}  # BN statistics too
    head = {key: value.clone() for key, value in segmenter.state_dict().items() if not key.startswith("backbone.")}
    list(train_segmentation(segmenter, scenes, iterations=3, batch_size=16, lr=0.05, eval_interval=3))
    for key, value in segmenter.backbone.state_dict().items():
        assert torch.equal(value, backbone[key]), key
    changed = [key for key, value in segmenter.state_dict().items() if key in head and not torch.equal(value,
                                                                                                        head[key])]
    assert sorted(changed) == ["classifier.bias", "classifier.weight", "skip_classifier.bias",
                               "skip_classifier.weight"]
    segmenter.train()
    assert not segmenter.backbone.training and segmenter.classifier.training


def test_a_stop_ends_the_run_as_cancelled(scenes):
    records = list(train_segmentation(build_segmenter("resnet8", CLASSES), scenes, iterations=20, batch_size=16,
                                      should_stop=lambda: True))
    assert records[-1] == RunEnd(1, "cancelled", "Cancelled at iteration 1.")


def test_scenes_the_segmenter_cannot_take_are_refused_before_a_step(scenes):
    with pytest.raises(UserError, match="scores 5 classes but the scenes of synthetic have 11"):
        next(train_segmentation(build_segmenter("resnet8", 5), scenes, iterations=2))
    odd = compose_scenes(synthetic_data(32, 8), SceneLayout(canvas=42, object_sides=(8, 20)), train_count=16,
                         test_count=4)
    with pytest.raises(UserError, match="multiples of 4 pixels; the scenes' canvas is 42"):
        next(train_segmentation(build_segmenter("resnet8", CLASSES), odd, iterations=2))
    with pytest.raises(UserError, match=r"batch size \(256\) must not exceed the 128 training images"):
        next(train_segmentation(build_segmenter("resnet8", CLASSES), scenes, iterations=2, batch_size=256))
    with pytest.raises(UserError, match="iterations must be a whole number of at least 1"):
        next(train_segmentation(build_segmenter("resnet8", CLASSES), scenes, iterations=0))


def test_a_flip_moves_a_scene_and_its_mask_together(scenes):
    images, masks = scenes.train_images[:32], scenes.train_masks[:32]
    flipped_images, flipped_masks = flip_together(images, masks, torch.Generator().manual_seed(0))
    flipped = [not torch.equal(a, b) for a, b in zip(flipped_images, images)]
    assert 0 < sum(flipped) < 32
    for index, was_flipped in enumerate(flipped):
        expected = (images[index].flip(-1), masks[index].flip(-1)) if was_flipped else (images[index], masks[index])
        assert torch.equal(flipped_images[index], expected[0]) and torch.equal(flipped_masks[index], expected[1])
