"""Issue 16, the paper's data and evaluation paths against independent per-image re-implementations (torchvision's
functional transforms, loops over single images): §4.2's per-pixel mean and its padding order, §3.4's per-image
scale jitter and colour lighting, top-5 error, the 10-crop and multi-scale tests, and what checkpoints record."""
import dataclasses
import os
from types import SimpleNamespace

import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn

from resnet_core.explain import trained  # its test_pipeline, imported bare, would be collected as a test
from resnet_core.explain.catalog import reference
from resnet_core.explain.classifier import (Classifier, export_classifier, from_checkpoint, run_classifier,
                                           uploaded_classifier)
from resnet_core.nets.model import ResNet
from resnet_core.nets.specs import get_spec
from resnet_core.runs.executor import execute
from resnet_core.runs.store import Store
from resnet_core.training.augment import (TEST_SCALES, Normalization, Pipeline, lighting, rgb_components,
                                          scale_crop_flip)
from resnet_core.training.checkpoint import load_training_checkpoint, save_checkpoint
from resnet_core.training.data import ImageData, load_data, synthetic_data
from resnet_core.training.evaluate import evaluate_run, evaluation_report, predict_log_probs
from resnet_core.training.recipe import Recipe, training_recipe


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------- §4.2 per-pixel mean
def test_the_mean_image_is_of_the_images_trained_on():
    data = synthetic_data(40, 8, image_size=8)
    split = data.with_validation_split(10)
    naive = sum(image.double() / 255 for image in split.train_images) / len(split.train_images)
    assert torch.allclose(split.pixel_mean.double(), naive, atol=1e-6)
    assert not torch.allclose(split.pixel_mean, data.pixel_mean, atol=1e-4)  # the 10 held out are left out
    assert Recipe().normalization == "per-pixel"  # §4.2's default
    assert training_recipe(get_spec("resnet20"), iterations=10, train_images=50_000, kind="paper").per_pixel_mean
    assert not training_recipe(get_spec("resnet20"), iterations=10, train_images=50_000,
                               normalization="per-channel").per_pixel_mean


def test_per_pixel_training_batches_equal_a_naive_per_image_reference_padded_with_the_mean_pixel():
    data = synthetic_data(12, 4, image_size=8)
    pipeline = Pipeline.for_recipe(Recipe(), data, 8)
    batch = pipeline.train_batch(data.train_images, seeded(3))
    mean = sum(image.double() / 255 for image in data.train_images) / len(data.train_images)  # (3, 8, 8)
    generator = seeded(3)  # the same draws, in the same order: offsets, then flips
    offsets = torch.randint(9, (2, 12), generator=generator)
    flips = torch.rand(12, generator=generator) < 0.5
    for index, image in enumerate(data.train_images):
        padded = TF.pad(image.double() / 255 - mean, [4])  # subtracted first: the border is the mean pixel, 0
        top, left = offsets[:, index].tolist()
        expected = TF.crop(padded, top, left, 8, 8)
        expected = TF.hflip(expected) if flips[index] else expected
        assert torch.allclose(batch[index].double(), expected, atol=1e-6)
    corner = (offsets[0] == 0) & (offsets[1] == 0)  # a crop whose first row is all padding
    assert torch.equal(batch[corner][:, :, 0], torch.zeros_like(batch[corner][:, :, 0]))


# ------------------------------------------------------------------------------------------- §3.4 scale jitter
def test_every_image_gets_its_own_scale_and_crop_as_resizing_it_alone_would_give():
    shapes = [(10, 14), (12, 9)] * 3  # landscape and portrait, at the top left of one tensor
    images = torch.zeros(6, 3, 12, 14, dtype=torch.uint8)
    for index, (height, width) in enumerate(shapes):
        images[index, :, :height, :width] = torch.randint(0, 256, (3, height, width), dtype=torch.uint8,
                                                          generator=seeded(index))
    crops = scale_crop_flip(images, seeded(5), 8, (8, 16), torch.tensor(shapes))
    generator = seeded(5)  # scales, tops, lefts, flips
    scales = torch.randint(8, 17, (6,), generator=generator).tolist()
    new_sizes = [(s, s * w // h) if h <= w else (s * h // w, s) for s, (h, w) in zip(scales, shapes)]
    tops = [int(r * (h - 8 + 1)) for r, (h, _) in zip(torch.rand(6, generator=generator), new_sizes)]
    lefts = [int(r * (w - 8 + 1)) for r, (_, w) in zip(torch.rand(6, generator=generator), new_sizes)]
    flips = torch.rand(6, generator=generator) < 0.5
    assert len(set(scales)) > 1 and len(set(zip(tops, lefts))) > 1  # they differ within the batch
    for index, (height, width) in enumerate(shapes):
        resized = TF.resize(images[index, :, :height, :width].float(), list(new_sizes[index]), antialias=False)
        expected = TF.crop(resized, tops[index], lefts[index], 8, 8)
        expected = TF.hflip(expected) if flips[index] else expected
        assert torch.allclose(crops[index], expected, atol=1e-3)


def folder_of(tmp_path, pixels: dict[str, torch.Tensor]) -> str:
    """An image folder with one PNG per class (named as `pixels`' keys) in train/ and in test/."""
    for split in ("train", "test"):
        for name, image in pixels.items():
            (tmp_path / "f" / split / name).mkdir(parents=True)
            TF.to_pil_image(image).save(tmp_path / "f" / split / name / "0.png")
    return str(tmp_path / "f")


def test_image_folders_for_imagenet_nets_keep_their_aspect_and_their_shorter_side_up_to_the_limit(tmp_path):
    pixels = {"wide": torch.randint(0, 256, (3, 60, 80), dtype=torch.uint8, generator=seeded(0)),
              "tall": torch.randint(0, 256, (3, 90, 50), dtype=torch.uint8, generator=seeded(1))}
    data = load_data(folder_of(tmp_path, pixels), image_size=36, shorter_side=56, home=tmp_path / "home")
    assert data.train_sizes.tolist() == [[90, 50], [56, 74]]  # tall kept (50 < 56); wide down to 56, aspect kept
    assert torch.equal(data.train_images[0, :, :90, :50], pixels["tall"])
    shrunk = TF.resize(pixels["wide"].float(), 56, antialias=True).round()
    assert (data.train_images[1, :, :56, :74].float() - shrunk).abs().max() <= 1
    assert data.train_images[1, :, 56:].max() == 0 and data.train_images[0, :, :, 50:].max() == 0  # padding
    resized = [TF.resize(image, 36, antialias=True) for image in (pixels["tall"].float(), shrunk)]
    squares = torch.stack([resized[0][:, 14:50, :], resized[1][:, :, 5:41]]).round() / 255  # centre squares
    assert torch.allclose(data.pixel_mean, squares.mean(0), atol=1 / 255)  # AlexNet's mean image, small


def test_a_panorama_and_a_tower_in_one_folder_are_cut_to_2_to_1_not_stored_on_a_huge_canvas(tmp_path):
    pixels = {"panorama": torch.randint(0, 256, (3, 40, 400), dtype=torch.uint8, generator=seeded(0)),
              "tower": torch.randint(0, 256, (3, 300, 30), dtype=torch.uint8, generator=seeded(1)),
              "photo": torch.randint(0, 256, (3, 45, 60), dtype=torch.uint8, generator=seeded(2))}
    data = load_data(folder_of(tmp_path, pixels), image_size=28, shorter_side=56, home=tmp_path / "home")
    assert data.train_sizes.tolist() == [[40, 80], [45, 60], [60, 30]]  # classes in name order; 4:3 kept
    assert data.train_images.shape == (3, 3, 60, 80)  # not 300 x 400
    assert torch.equal(data.train_images[0, :, :40, :80], pixels["panorama"][:, :, 160:240])  # the centre
    assert torch.equal(data.train_images[2, :, :60, :30], pixels["tower"][:, 120:180])


def test_pca_lighting_shifts_each_image_along_the_rgb_eigenvectors_with_alpha_of_std_0_1():
    # Pixels drawn with a known covariance: the components recover it.
    mixing = torch.tensor([[0.20, 0.05, 0.0], [0.05, 0.15, 0.02], [0.0, 0.02, 0.05]])
    pixels = (0.5 + torch.randn(64 * 64 * 40, 3, generator=seeded(2)) @ mixing.T).clamp(0, 1)
    images = (pixels * 255).round().to(torch.uint8).reshape(40, 64, 64, 3).permute(0, 3, 1, 2)
    values, vectors = rgb_components(images)
    covariance = torch.cov((images.permute(1, 0, 2, 3).reshape(3, -1).double() / 255))
    assert torch.allclose(vectors @ torch.diag(values) @ vectors.T, covariance.float(), atol=1e-5)
    shifted = lighting(torch.zeros(20_000, 3, 2, 2), seeded(4), values, vectors)
    shift = shifted[:, :, 0, 0]  # one shift per image, the same for all its pixels
    assert torch.equal(shifted, shift[:, :, None, None].expand_as(shifted))
    alphas = (shift / 255) @ vectors / values.sqrt()  # back onto the eigenvectors, in units of their spread
    assert alphas.mean(0).abs().max() < 0.005 and (alphas.std(0) - 0.1).abs().max() < 0.005


# ------------------------------------------------------------------------------------------- evaluation
class Lookup(nn.Module):
    """A "net" that answers image i (all of its pixels i) with row i of a table of logits."""

    def __init__(self, logits, family="cifar"):
        super().__init__()
        self.table = logits
        self.spec = SimpleNamespace(input_size=4, family=family)
        self.normalization = Normalization("per-channel", torch.zeros(3), torch.ones(3))

    def forward(self, x):
        return self.table[(x[:, 0, 0, 0] * 255).round().long()]


def test_top5_error_on_a_hand_made_confusion():
    # The true class of image i is i; its rank among the 7 classes' scores: 1, 2, 5, 6, 7, 1.
    ranks = [1, 2, 5, 6, 7, 1]
    logits = torch.zeros(6, 7)
    for image, rank in enumerate(ranks):
        others = [c for c in range(7) if c != image]
        order = others[:rank - 1] + [image] + others[rank - 1:]  # classes from likeliest to least
        logits[image, order] = torch.arange(7, 0, -1).float()
    images = torch.arange(6, dtype=torch.uint8)[:, None, None, None].expand(6, 3, 4, 4).contiguous()
    labels = torch.arange(6)
    data = ImageData("hand", tuple("abcdefg"), images, labels, images, labels, torch.zeros(3, 4, 4), torch.ones(3))
    report = evaluation_report(Lookup(logits), data)
    assert report.test_error == pytest.approx(4 / 6) and report.top5_error == pytest.approx(2 / 6)
    assert "top5_error" in report.to_dict() and "test_error" in report.to_dict()


class MeanColour(nn.Module):
    """A net small enough to check by hand: logits = W · (mean input colour) + b, for inputs of any size (as a
    global average pool and a 1x1-conv fc are); it records the shapes it is shown."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 2, 0], [0, 0, -1], [1, 1, 1]]))
            self.fc.bias.copy_(torch.tensor([0.0, -0.5, 0.2, -1.0]))
        self.spec = SimpleNamespace(input_size=8, family="imagenet", num_classes=4)
        self.normalization = Normalization("per-channel", torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.2, 0.2, 0.25]))
        self.seen = []

    def forward(self, x):
        self.seen.append(tuple(x.shape))
        return self.fc(x.mean(dim=(2, 3)))


def test_multi_scale_on_a_net_checked_by_hand():
    net = MeanColour()
    colours = torch.tensor([[255, 0, 51], [102, 204, 0]], dtype=torch.uint8)
    images = colours[:, :, None, None].expand(2, 3, 10, 20).contiguous()  # flat colours, 1:2 aspect
    data = ImageData("flat", tuple("abcd"), images, torch.zeros(2).long(), images, torch.zeros(2).long(),
                     torch.zeros(3, 10, 20), torch.ones(3))
    pipeline = Pipeline.for_recipe(Recipe(augmentation="scale-crop"), data, 8, normalization=net.normalization)
    log_probs = predict_log_probs(net, images, pipeline, multi_scale=True)
    # Every view of a flat colour is that colour: the average over the 10 views is one view's softmax.
    normalised = (colours.float() / 255 - torch.tensor([0.5, 0.4, 0.3])) / torch.tensor([0.2, 0.2, 0.25])
    by_hand = (normalised @ net.fc.weight.detach().T + net.fc.bias.detach()).log_softmax(-1)
    assert torch.allclose(log_probs, by_hand, atol=1e-5)
    assert net.seen == [(4, 3, side, 2 * side) for side in TEST_SCALES]  # 2 images and mirrors, aspect kept
    with pytest.raises(Exception, match="not both"):
        predict_log_probs(net, images, pipeline, multi_scale=True, ten_crop=True)


@pytest.mark.parametrize("test", ["ten_crop", "multi_scale"])
def test_averaged_scores_too_small_for_float32_still_give_a_finite_loss(test):
    # Logits 1,000 apart: the wrong classes' softmax underflows to 0. Averaged in log space, log p stays -1000-ish
    # and not -inf (the loss of a young or broken net was Infinity, and `evaluate --json` printed it).
    net = MeanColour()
    with torch.no_grad():
        net.fc.weight.mul_(1000)
    colours = torch.tensor([[255, 0, 51], [102, 204, 0]], dtype=torch.uint8)
    images = colours[:, :, None, None].expand(2, 3, 10, 20).contiguous()
    data = ImageData("flat", tuple("abcd"), images, torch.zeros(2).long(), images, torch.zeros(2).long(),
                     torch.zeros(3, 10, 20), torch.ones(3))
    pipeline = Pipeline.for_recipe(Recipe(augmentation="scale-crop"), data, 8, normalization=net.normalization)
    log_probs = predict_log_probs(net, images, pipeline, **{test: True})
    normalised = (colours.float() / 255 - torch.tensor([0.5, 0.4, 0.3])) / torch.tensor([0.2, 0.2, 0.25])
    by_hand = (normalised @ net.fc.weight.detach().T + net.fc.bias.detach()).log_softmax(-1)
    assert torch.isfinite(log_probs).all() and by_hand.min() < -1000
    assert torch.allclose(log_probs, by_hand, rtol=1e-4)


def small_resnet18():
    torch.manual_seed(0)
    return ResNet(dataclasses.replace(get_spec("resnet18"), input_size=32, num_classes=10)).eval()


def test_ten_crop_and_multi_scale_scores_of_resnet18_equal_a_per_image_torchvision_reimplementation():
    model = small_resnet18()
    # Three images of two sizes, stored as an image folder for an ImageNet net stores them (top left, zeros around).
    shapes = [(40, 52), (36, 36), (40, 52)]
    images = torch.zeros(3, 3, 40, 52, dtype=torch.uint8)
    for index, (height, width) in enumerate(shapes):
        images[index, :, :height, :width] = torch.randint(0, 256, (3, height, width), dtype=torch.uint8,
                                                          generator=seeded(index))
    sizes = torch.tensor(shapes)
    mean, std = torch.tensor([0.45, 0.5, 0.55]), torch.tensor([0.2, 0.25, 0.3])
    data = ImageData("tiny", tuple("abcdefghij"), images, torch.zeros(3).long(), images, torch.zeros(3).long(),
                     torch.zeros(3, 36, 36), torch.ones(3), train_sizes=sizes, test_sizes=sizes)
    recipe = Recipe(augmentation="scale-crop")
    pipeline = dataclasses.replace(Pipeline.for_recipe(recipe, data, 32, normalization=Normalization(
        "per-channel", mean, std)), test_scales=(32, 40, 56))

    def scores(views):  # one view at a time: the views of a multi-scale test differ in size
        with torch.no_grad():
            probs = [model(TF.normalize(view.float() / 255, mean.tolist(), std.tolist())[None]).softmax(-1)
                     for view in views]
        return torch.cat(probs).mean(0).log()

    ten = predict_log_probs(model, images, pipeline, ten_crop=True, sizes=sizes)
    multi = predict_log_probs(model, images, pipeline, multi_scale=True, sizes=sizes)
    for index, (height, width) in enumerate(shapes):
        image = images[index, :, :height, :width].float()
        assert torch.allclose(ten[index], scores(TF.ten_crop(TF.resize(image, 36, antialias=True), 32)), atol=1e-5)
        views = []
        for side in (32, 40, 56):
            resized = TF.resize(image, side, antialias=True)
            views += [resized, TF.hflip(resized)]
        assert torch.allclose(multi[index], scores(views), atol=1e-5)


# ------------------------------------------------------------------------------------------- what checkpoints say
def test_old_per_channel_checkpoints_classify_exactly_as_before():
    ref = reference("resnet20")
    classifier = from_checkpoint(ref.path)
    assert classifier.normalization.kind == "per-channel"
    image = Image.fromarray(torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8, generator=seeded(0)).numpy())
    pixels = TF.pil_to_tensor(image).float() / 255
    before = TF.normalize(pixels, ref.metadata["mean"], ref.metadata["std"])[None]  # what it was always fed
    assert torch.equal(classifier.model_input(image), before)
    with torch.no_grad():
        assert torch.equal(classifier.model(classifier.model_input(image)), classifier.model(before))
    data = synthetic_data(8, 4)  # an experiment's data: the net is still fed its own statistics
    batch = trained.test_pipeline(classifier.model, data).test_batch(data.test_images)
    assert torch.allclose(batch, TF.normalize(data.test_images.float() / 255, ref.metadata["mean"],
                                              ref.metadata["std"]), atol=1e-6)


def test_runs_record_their_normalisation_and_every_reader_applies_it(tmp_path):
    store = Store(tmp_path)
    data = load_data("synthetic", home=tmp_path)
    spec = get_spec("resnet8")
    ids = {}
    for kind in ("per-pixel", "per-channel"):
        recipe = Recipe(batch_size=8, iterations=2, eval_interval=2, per_pixel_mean=kind == "per-pixel")
        ids[kind] = store.create_run(name=kind, spec=spec.to_dict(), recipe=recipe.to_dict(), data="synthetic",
                                     device="cpu", precision="fp32", seed=0)
        store.claim(ids[kind], os.getpid())
        execute(store, ids[kind], data=data)
    path = store.latest_checkpoint(ids["per-pixel"])[1]
    recorded = load_training_checkpoint(path).normalization
    assert recorded.kind == "per-pixel" and torch.equal(recorded.mean, data.pixel_mean)
    assert load_training_checkpoint(path).classes == data.classes
    uploaded = uploaded_classifier(path.read_bytes(), "mine.safetensors")  # away from its data: names its classes
    assert uploaded.classes == data.classes and uploaded.label == "mine.safetensors (resnet8)"
    assert torch.equal(uploaded.normalization.mean, data.pixel_mean)
    classifier = run_classifier(store, ids["per-pixel"])
    [tested] = store.metrics(ids["per-pixel"], "test")  # at iteration 2, where the checkpoint is
    assert (classifier.label, classifier.test_error) == ("run 1: per-pixel", tested["error"])
    assert torch.equal(classifier.normalization.mean, data.pixel_mean)
    export_classifier(tmp_path / "exported.safetensors", classifier)
    assert torch.equal(from_checkpoint(tmp_path / "exported.safetensors").normalization.mean, data.pixel_mean)
    model = ResNet(spec)
    model.load_state_dict(load_training_checkpoint(path).model_state)
    expected = evaluation_report(model, data, Recipe())  # per-pixel, from the data
    assert evaluate_run(store, ids["per-pixel"]).test_error == expected.test_error

    # A checkpoint from before normalisation was recorded: per channel with its data's statistics, as it was.
    old_path = store.latest_checkpoint(ids["per-channel"])[1]
    old = load_training_checkpoint(old_path)
    save_checkpoint(old_path, dataclasses.replace(old, normalization=None, classes=None))
    legacy = run_classifier(store, ids["per-channel"])
    assert legacy.test_error == store.metrics(ids["per-channel"], "test")[0]["error"]

    # A run evaluated on a held-out validation split: its error is that one's, as the model menu shows.
    recipe = Recipe(batch_size=8, iterations=2, eval_interval=2, validation_images=64)
    held_out = store.create_run(name="held out", spec=spec.to_dict(), recipe=recipe.to_dict(), data="synthetic",
                                device="cpu", precision="fp32", seed=0)
    store.claim(held_out, os.getpid())
    execute(store, held_out, data=data)  # held out as the run's recipe says
    [validated] = store.metrics(held_out, "validation")
    assert run_classifier(store, held_out).test_error == validated["error"] is not None
    assert torch.equal(legacy.normalization.mean, data.channel_mean)
    assert torch.equal(legacy.normalization.std, data.channel_std)
    model.load_state_dict(old.model_state)
    assert evaluate_run(store, ids["per-channel"]).test_error == evaluation_report(
        model, data, Recipe(per_pixel_mean=False)).test_error


def test_an_imagenet_net_with_a_mean_image_classifies_an_upload_as_its_test_pipeline_sees_it(tmp_path):
    # §3.4's nets keep a 256 x 256 mean image and are tested on the centre 224 of images resized to 256: an uploaded
    # photo must get exactly that (it crashed on the mean image's size before).
    model = ResNet(get_spec("resnet18", num_classes=3)).eval()
    mean_image = torch.rand(3, 256, 256, generator=seeded(1))
    model.normalization = Normalization("per-pixel", mean_image, torch.ones(3))
    path = tmp_path / "imagenet-net.safetensors"
    export_classifier(path, Classifier("net", model, ("a", "b", "c"), model.normalization))
    classifier = from_checkpoint(path)
    pixels = torch.randint(0, 256, (3, 256, 256), dtype=torch.uint8, generator=seeded(2))
    x = classifier.model_input(Image.fromarray(pixels.permute(1, 2, 0).numpy()))
    pipeline = Pipeline("scale-crop", 224, classifier.normalization)
    assert x.shape == (1, 3, 224, 224)
    assert torch.allclose(x, pipeline.test_batch(pixels[None]), atol=1e-6)
    assert torch.equal(TF.pil_to_tensor(classifier.seen_image(x)), pixels[:, 16:240, 16:240])
    # A photo of another size is resized by Pillow here and by torch there: the same view, to resampling's rounding.
    smooth = TF.resize(torch.randint(0, 256, (3, 12, 16), dtype=torch.uint8, generator=seeded(3)), [384, 512])
    x = classifier.model_input(Image.fromarray(smooth.permute(1, 2, 0).numpy()))
    difference = (x - pipeline.test_batch(smooth[None])).abs() * 255  # grey levels
    assert difference.mean() < 0.5 and difference.max() < 3, (difference.mean(), difference.max())
    assert len(classifier.top_k(x)) == 3


def test_the_paper_table_shows_top5_beside_top1_where_the_paper_has_it():
    from explorer.architecture.cache import paper_context

    imagenet = paper_context(SimpleNamespace(spec=get_spec("resnet50"), params=0, mult_adds=0))
    top1 = imagenet[imagenet["quantity"].str.startswith("ImageNet top-1")].set_index("source")
    assert top1.loc["Table 3", "paper top-5"] == "6.71 %" and top1.loc["Table 4", "paper top-5"] == "5.25 %"
    assert not imagenet["quantity"].str.contains("top-5").any()  # beside, not below
    assert "paper top-5" not in paper_context(SimpleNamespace(spec=get_spec("resnet56"), params=0, mult_adds=0))
