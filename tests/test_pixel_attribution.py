"""Which input pixels decided a pixel's class (issue 25, item 3): the Classify page's attributions of a segmenter's
score at one pixel (resnet_core.pixels.attribution), a finished segmentation run as a model to ask
(resnet_core.pixels.scene_models), and the Pixels page's pure builders for them. Tiny nets on 64-pixel scenes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import app_scene_model
from PIL import Image

from explorer.pixels import figures
from resnet_core import Recipe
from resnet_core.errors import UserError
from resnet_core.explain.attribution import METHODS
from resnet_core.nets.specs import get_spec
from resnet_core.pixels import scene_models
from resnet_core.pixels import torchvision_models as tm
from resnet_core.pixels.attribution import pixel_attribution
from resnet_core.pixels.jobs import evaluate_segmentation_run
from resnet_core.pixels.segment_train import evaluate_segmentation
from resnet_core.pixels.segmenter import build_segmenter
from resnet_core.runs.store import Store
from resnet_core.training.augment import Normalization

CLASSES = 11  # the background and ten classes, as scenes of CIFAR-10 or the synthetic patterns


@pytest.fixture(scope="module")
def segmenter():
    """An FCN on a random ResNet-8 whose class-scoring convolution is random too (a trained one starts at zero), so
    neighbouring pixels get different classes, and a 64 x 64 input for it."""
    torch.manual_seed(0)
    net = build_segmenter("resnet8", CLASSES, seed=0)
    torch.nn.init.normal_(net.classifier.weight, std=0.5)
    net.normalization = Normalization("per-channel", torch.full((3,), 0.5), torch.full((3,), 0.25))
    image = torch.randint(256, (3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    return net.eval(), net.normalization(image[None])


def predicted(net, x) -> np.ndarray:
    with torch.no_grad():
        return net(x)[0].argmax(0).numpy()  # (H, W)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_explains_the_pixels_own_class_at_the_inputs_size(segmenter, method):
    net, x = segmenter
    before = {key: value.clone() for key, value in net.state_dict().items()}
    answer = pixel_attribution(net, x, 20, 30, method, private_copy=True)
    assert answer.map.shape == (64, 64) and answer.map.dtype == np.float32
    assert np.abs(answer.map).max() > 0 and np.isfinite(answer.map).all()
    assert answer.target == predicted(net, x)[30, 20]  # the class of pixel x=20 (column), y=30 (row)
    with torch.no_grad():
        probability = net(x)[0, :, 30, 20].softmax(0)[answer.target].item()
    assert answer.target_probability == pytest.approx(probability, rel=1e-5)
    assert all(torch.equal(value, before[key]) for key, value in net.state_dict().items()) and not net.training


def test_grad_cam_uses_the_last_stage_at_least_8x8_named_as_in_the_backbone(segmenter):
    net, x = segmenter
    answer = pixel_attribution(net, x, 5, 5, "grad_cam")
    assert (answer.layer, answer.layer_map_size) == ("layer3.0", (16, 16))  # stride 4 on a 64-pixel scene


def test_gradients_reach_only_the_pixels_receptive_field(segmenter):
    """ResNet-8's pixel at (4, 4) sees ~30 pixels around it (a 3x3 stem, 3x3 convolutions at strides 1, 2 and 4, and
    the bilinear upsampling's neighbours): its Saliency and Integrated Gradients are zero in the far corner."""
    net, x = segmenter
    for method in ("saliency", "integrated_gradients"):
        values = np.abs(pixel_attribution(net, x, 4, 4, method).map)
        assert values[:12, :12].max() > 0.1 and values[40:, 40:].max() == 0, method


def test_two_pixels_of_different_classes_are_explained_differently(segmenter):
    net, x = segmenter
    classes = predicted(net, x)
    (y1, x1), (y2, x2) = (30, 30), next(zip(*np.nonzero(classes != classes[30, 30])))
    first, second = (pixel_attribution(net, x, int(column), int(row), "saliency")
                     for column, row in ((x1, y1), (x2, y2)))
    assert (first.target, second.target) == (classes[y1, x1], classes[y2, x2]) and first.target != second.target
    assert not np.allclose(first.map, second.map)
    # Another class at the same pixel is another question, with another answer.
    other = pixel_attribution(net, x, x1, y1, "saliency", target=int(second.target))
    assert other.target == second.target and not np.allclose(other.map, first.map)


@pytest.mark.parametrize("x, y, problem", [(64, 0, "x must be a whole number of pixels from 0 to 63"),
                                           (0, -1, "y must be a whole number of pixels from 0 to 63"),
                                           (1.5, 0, "x must be")])
def test_a_pixel_outside_the_input_is_refused_in_one_line(segmenter, x, y, problem):
    net, inputs = segmenter
    with pytest.raises(UserError, match=problem):
        pixel_attribution(net, inputs, x, y, "saliency")


@pytest.mark.parametrize("name", ["fcn_resnet50", "deeplabv3_resnet50"])
def test_a_torchvision_segmenters_pixel_is_explained_on_its_dilated_last_stage(name):
    """A published architecture (random weights: nothing downloaded) on a small photo: Grad-CAM and Saliency of its
    score at a pixel, on conv5_x (layer4, dilated: 1/8 of the image), the pixel's own class by default; the shared
    model is left as it was."""
    torch.manual_seed(0)
    model = tm.PixelNet(name, tm.skeleton(name))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8))
    x = model.model_input(image)
    before = {key: value.clone() for key, value in model.model.state_dict().items()}
    own = model.segment(image).classes[40, 70]
    for method in tm.EXPLAIN_METHODS:
        answer = pixel_attribution(model.model, x, 70, 40, method, private_copy=True)
        assert answer.map.shape == (64, 96) and np.isfinite(answer.map).all() and np.abs(answer.map).max() > 0
        assert answer.target == own, method
        if method == "grad_cam":
            assert (answer.layer, answer.layer_map_size) == ("layer4.2", (8, 12))
    assert all(torch.equal(value, before[key]) for key, value in model.model.state_dict().items())
    assert not model.model.training


# ------------------------------------------------------------------------------------------- a run as a model
@pytest.fixture(scope="module")
def scene_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("scene-home")
    return Store(home), app_scene_model(home)


def test_a_finished_run_labels_its_test_scenes_as_its_evaluation_scores_them(scene_run):
    store, run_id = scene_run
    model = scene_models.load_scene_model(store, run_id)
    assert model.classes == ("background", *(f"pattern{k}" for k in range(10)))
    assert (model.canvas, model.stride, model.checkpoint_iteration) == (64, 4, 4) and not model.segmenter.training
    scenes = scene_models.test_scenes(store, model.run)
    assert scenes.test_images.shape == (16, 3, 64, 64)
    # The scenes it was tested on: composed again here, they give the score its run recorded and the CLI reports.
    report = evaluate_segmentation(model.segmenter, scenes, device="cpu")
    assert report.scores.miou == pytest.approx(store.metrics(run_id, "test")[-1]["miou"])
    assert report.scores.miou == pytest.approx(evaluate_segmentation_run(store, run_id, device="cpu").scores.miou)
    answer = model.label(scenes.test_images[0])
    assert answer.classes.shape == answer.confidence.shape == (64, 64) and answer.categories == model.classes
    with torch.no_grad():
        logits = model.segmenter(model.model_input(scenes.test_images[0]))[0]
    assert (answer.classes == logits.argmax(0).numpy()).all()


def test_a_photo_is_shrunk_to_the_canvas_in_multiples_of_the_stride(scene_run):
    store, run_id = scene_run
    model = scene_models.load_scene_model(store, run_id)
    photo = scene_models.photo_scene(Image.new("RGB", (120, 90), (200, 30, 30)), model.canvas, model.stride)
    assert photo.shape == (3, 64, 84) and photo.dtype == torch.uint8 and photo[:, 0, 0].tolist() == [200, 30, 30]
    assert model.label(photo).classes.shape == (64, 84)
    # A panorama's longer side is 4 canvases at most, its shorter side shrinking with it.
    assert scene_models.photo_scene(Image.new("L", (2000, 100)), 64, 4).shape == (3, 12, 256)
    with pytest.raises(UserError, match="multiples of 4 pixels"):
        model.label(torch.zeros(3, 64, 62, dtype=torch.uint8))


def test_a_classifier_run_or_one_without_a_segmenter_is_no_scene_model(scene_run, tmp_path):
    store, run_id = scene_run
    other = Store(tmp_path)
    classifier = other.create_run(name="a classifier", spec=get_spec("resnet8").to_dict(), recipe=Recipe().to_dict(),
                                  data="synthetic", device="cpu", precision="fp32", seed=0)
    with pytest.raises(UserError, match=f"Run {classifier} is a train run, not a segmentation run."):
        scene_models.load_scene_model(other, classifier)
    [unsaved] = other.create_runs([dict(name="no segmenter yet", spec=get_spec("resnet8").to_dict(), data="synthetic",
                                        recipe=Recipe().to_dict(), device="cpu", precision="fp32", seed=0,
                                        kind="segment", settings=store.run(run_id).settings)])
    with pytest.raises(UserError, match=f"Run {unsaved} .* has no segmenter yet"):
        scene_models.load_scene_model(other, unsaved)


# ------------------------------------------------------------------------------------------- the page's builders
def test_the_attribution_figure_marks_the_pixel_it_explains(segmenter):
    net, x = segmenter
    answer = pixel_attribution(net, x, 12, 40, "integrated_gradients")
    picture = np.zeros((64, 64, 3), np.uint8)
    figure = figures.pixel_attribution_figure(picture, answer.map, signed=answer.signed, x=12, y=40)
    image, heatmap, marker = figure.data
    assert (image.type, heatmap.type, marker.type) == ("image", "heatmap", "scatter")
    assert np.asarray(heatmap.z).shape == (64, 64) and (heatmap.zmin, heatmap.zmax) == (-1, 1)  # IG is signed
    assert (list(marker.x), list(marker.y)) == ([12], [40])


def test_each_class_iou_is_listed_in_label_order_with_its_colour_and_share(scene_run):
    store, run_id = scene_run
    model = scene_models.load_scene_model(store, run_id)
    scores = evaluate_segmentation(model.segmenter, scene_models.test_scenes(store, model.run), device="cpu").scores
    table = figures.iou_table(scores)
    assert table["class"].tolist() == list(model.classes)
    assert table["colour"].tolist()[:2] == ["#000000", "#800000"]  # the class map's colours (VOC's)
    assert table["IoU (%)"].tolist() == pytest.approx([100 * value for value in scores.iou.values()], nan_ok=True)
    assert table["test pixels (%)"].sum() == pytest.approx(100)
    assert table.loc[0, "test pixels (%)"] == pytest.approx(100 * scores.background_share)


def test_small_pictures_are_enlarged_pixel_by_pixel():
    picture = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    big = figures.enlarged(picture, shown_px=8)
    assert big.shape == (8, 8, 3) and (big[:4, :4] == picture[0, 0]).all() and (big[4:, 4:] == picture[1, 1]).all()
    large = np.zeros((500, 300, 3), np.uint8)
    assert figures.enlarged(large) is large or figures.enlarged(large).shape == large.shape
