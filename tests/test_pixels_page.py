"""The Pixels page (issue 25, item 1): segmentation and detection of an upload by torchvision's ResNet-backed models,
and this server's own scene models (segmentation runs) on their test scenes or a photo, with their scores and which
input pixels decided a pixel's class (item 3).

Nothing here downloads: the torch cache is an empty folder (the one-line message and the download button are what a
fresh install sees), or holds weights written here under the exact file names torchvision uses, so the page's real
loading path reads them. Those stand-ins are random but for the last layer, which is set so the answers are known.
"""
from __future__ import annotations

import io
import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (REPO, WAIT_MS, app_figures, app_plotly_array, app_scene_model, app_test, app_url_round_trip,
                     app_widget, load, screenshot, seed_speeds, serve_app)
from PIL import Image
from streamlit.testing.v1 import AppTest

from explorer.pixels import figures
from resnet_core.errors import UserError
from resnet_core.nets.specs import get_spec
from resnet_core.pixels import torchvision_models as tm
from resnet_core.pixels.jobs import evaluate_segmentation_run
from resnet_core.runs import settings
from resnet_core.runs.store import Store
from resnet_core.training.recipe import Recipe

PAGE = str(REPO / "pages" / "9_Pixels.py")
# The stand-in weights' answers: every pixel "person" with p = 0.7; two boxes, the whole image, "person" with p = 0.8
# and "car" with 0.15.
PERSON, CAR = 15, 3  # VOC's and COCO's indices
SEGMENTATION_P = {0: 0.3, PERSON: 0.7}
DETECTION_P = {0: 0.05, 1: 0.8, CAR: 0.15}


def jpeg(size=(120, 90)) -> bytes:
    picture = Image.new("RGB", size, (90, 150, 235))
    picture.paste((210, 30, 30), (40, 25, 80, 65))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG")
    return buffer.getvalue()


def table(at: AppTest, column: str):
    """The first table or dataframe the page drew with `column` (AppTest finds them by position only)."""
    frames = [frame.value for frame in [*at.dataframe, *at.table]]
    frames = [getattr(frame, "data", frame) for frame in frames]  # a Styler: its frame
    frames = [frame.reset_index() if frame.index.name else frame for frame in frames]
    return next(frame for frame in frames if column in frame.columns)


def upload(at: AppTest, name: str = "photo.jpg", data: bytes | None = None) -> AppTest:
    at.file_uploader(key="pixels_upload").set_value((name, jpeg() if data is None else data, "image/jpeg")).run()
    assert not at.exception, at.exception
    return at


# ------------------------------------------------------------------------------------------- the library's facts
def test_the_paper_tables_7_and_8_as_printed():
    rows = {(row.table, row.test_set, row.metric): (row.vgg16, row.resnet101) for row in tm.PAPER_DETECTION}
    assert rows == {("Table 7", "PASCAL VOC 2007 test", "mAP@.5"): (73.2, 76.4),
                    ("Table 7", "PASCAL VOC 2012 test", "mAP@.5"): (70.4, 73.8),
                    ("Table 8", "COCO val (40k images)", "mAP@.5"): (41.5, 48.4),
                    ("Table 8", "COCO val (40k images)", "mAP@[.5, .95]"): (21.2, 27.2)}
    assert [row.table for row in tm.paper_rows("fasterrcnn_resnet50_fpn")] == ["Table 8", "Table 8", "Table 7",
                                                                                "Table 7"]
    assert {row.table for row in tm.paper_rows("fcn_resnet101")} == {"Table 7"}


def test_every_model_names_its_weights_file_categories_and_published_metrics():
    assert tm.models_for("segmentation") == ("deeplabv3_resnet50", "fcn_resnet50", "deeplabv3_resnet101",
                                             "fcn_resnet101")
    assert tm.models_for("detection") == ("fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2")
    for name, model in tm.MODELS.items():
        assert tm.weights_path(name).name == model.weights().url.rsplit("/", 1)[1]
        assert len(tm.categories(name)) == (21 if model.task == "segmentation" else 91)
        metrics = {metric.metric for metric in tm.published_metrics(name)}
        assert metrics == ({"mIoU", "pixel accuracy"} if model.task == "segmentation" else {"box mAP@[.5, .95]"})
        assert tm.differences(name) and all("\n" not in line for line in tm.differences(name))
    assert [m.value for m in tm.published_metrics("fasterrcnn_resnet50_fpn_v2")] == [46.7]
    for bad in (lambda: tm.model_info("maskrcnn"), lambda: tm.models_for("keypoints")):
        with pytest.raises(UserError, match="allowed"):
            bad()


@pytest.mark.parametrize("size, expected", [((1024, 768), (683, 512)), ((60, 40), (768, 512)),
                                            ((4000, 500), (1024, 128)), ((512, 512), (512, 512))])
def test_the_working_image_has_a_512_px_shorter_side_and_at_most_1024(size, expected):
    assert tm.working_image(Image.new("P", size)).size == expected
    assert tm.working_image(Image.new("P", size)).mode == "RGB"


# ------------------------------------------------------------------------------------------- pure picture builders
def segmentation(classes: np.ndarray, confidence: np.ndarray | None = None) -> tm.Segmentation:
    confidence = np.full(classes.shape, 0.5, np.float32) if confidence is None else confidence
    return tm.Segmentation(classes.astype(np.uint8), confidence, tm.categories("deeplabv3_resnet50"))


def test_voc_palette_is_the_devkits():
    palette = figures.voc_palette(21)
    assert palette[0].tolist() == [0, 0, 0] and palette[1].tolist() == [128, 0, 0]
    assert palette[2].tolist() == [0, 128, 0] and palette[PERSON].tolist() == [192, 128, 128]
    assert len({tuple(colour) for colour in palette.tolist()}) == 21


def test_the_overlay_tints_labelled_pixels_and_keeps_the_background_and_the_shape():
    photo = Image.new("RGB", (40, 30), (100, 100, 100))
    classes = np.zeros((30, 40), np.uint8)
    classes[10:20, 5:15] = PERSON
    overlay = figures.overlay_image(photo, segmentation(classes))
    assert overlay.shape == (30, 40, 3) and overlay.dtype == np.uint8
    assert overlay[0, 0].tolist() == [100, 100, 100]
    alpha = figures.OVERLAY_ALPHA
    assert overlay[15, 10].tolist() == [round((1 - alpha) * 100 + alpha * c) for c in (192, 128, 128)]
    assert figures.class_map_image(segmentation(classes)).shape == (30, 40, 3)
    with pytest.raises(ValueError, match="class map"):
        figures.overlay_image(Image.new("RGB", (41, 30)), segmentation(classes))


def test_the_legend_lists_exactly_the_classes_present_most_pixels_first():
    classes = np.zeros((10, 10), np.uint8)
    classes[:, :3] = PERSON  # 30 %
    classes[:1, 5:] = 12  # dog, 5 %
    confidence = np.where(classes == PERSON, 0.9, 0.6).astype(np.float32)
    legend = figures.legend_table(segmentation(classes, confidence))
    assert legend["class"].tolist() == ["background", "person", "dog"]
    assert legend["pixels (%)"].tolist() == pytest.approx([65, 30, 5])
    assert legend["mean confidence"].tolist() == pytest.approx([0.6, 0.9, 0.6])
    assert legend["colour"].tolist() == ["#000000", "#c08080", "#400080"]


def test_boxes_are_drawn_only_above_the_threshold():
    photo = Image.new("RGB", (200, 200), "white")
    detection = tm.Detection(np.array([[20, 40, 80, 100], [120, 140, 180, 190]], np.float32), np.array([1, CAR]),
                             np.array([0.9, 0.3], np.float32), tm.categories("fasterrcnn_resnet50_fpn"))

    def colour_at(image: Image.Image, x: int, y: int) -> str:
        return figures.hex_colour(image.getpixel((x, y)))

    strict = figures.boxes_image(photo, detection, 0.5)
    assert colour_at(strict, 20, 70) == figures.box_colour(1)  # the person box's left edge
    assert colour_at(strict, 120, 170) == "#ffffff"  # the car box is not drawn
    assert colour_at(photo, 20, 70) == "#ffffff"  # a copy: the photo is untouched
    loose = figures.boxes_image(photo, detection, 0.2)
    assert colour_at(loose, 120, 170) == figures.box_colour(CAR)
    assert figures.detection_table(detection, 0.5)["class"].tolist() == ["person"]
    table = figures.detection_table(detection, 0.2)
    assert table["class"].tolist() == ["person", "car"] and table.loc[1, ["x0", "y0", "x1", "y1"]].tolist() == [
        120, 140, 180, 190]


# ------------------------------------------------------------------------------------------- weights absent (AppTest)
@pytest.mark.usefixtures("app_clear_caches", "app_torch_threads", "app_empty_homes")
class TestWithoutWeights:
    def test_first_visit_asks_for_a_photo_and_shows_the_backbone_beside_the_paper(self):
        at = app_test(PAGE)
        assert [info.value for info in at.info] == ["Upload a photo to see what the model makes of it."]
        assert [header.value for header in at.subheader] == ["DeepLabV3 · ResNet-50", "The backbone: ResNet-50"]
        (diagram,) = app_figures(at)  # the Architecture page's diagram: stem, four stages, head
        assert diagram["layout"]["yaxis"]["ticktext"][1].startswith("conv2_x")
        paper = table(at, "VGG-16")
        assert paper["table"].tolist() == ["Table 7", "Table 7"] and paper["ResNet-101"].tolist() == [76.4, 73.8]
        assert any("mIoU 66.4 %" in caption.value for caption in at.caption)

    def test_every_model_without_its_weights_says_where_to_put_them_in_one_line(self):
        at = upload(app_test(PAGE))
        for task in tm.TASKS:
            at.segmented_control(key="pixels_task").set_value(task).run()
            for name in tm.models_for(task):
                at.selectbox(key=f"pixels_{task}_model").set_value(name).run()
                assert not at.exception, at.exception
                (error,) = [error.value for error in at.error]
                assert "not in the torch cache" in error and tm.weights_path(name).name in error
                assert "\n" not in error and str(Path(os.environ["TORCH_HOME"])) in error
                assert [button.label for button in at.button] == ["Try to download them"]
                assert not at.image
        assert at.slider(key="pixels_threshold").value == 0.5
        paper = table(at, "VGG-16")  # detection: COCO's Table 8 first, torchvision's mAP beside
        assert paper["table"].tolist() == ["Table 8", "Table 8", "Table 7", "Table 7"]
        assert paper["this model, val2017"].tolist()[1] == 46.7 and math.isnan(paper["this model, val2017"][0])

    def test_the_task_model_and_threshold_travel_in_the_url(self):
        opened = app_url_round_trip(PAGE, {"pixels_task": "detection",
                                           "pixels_detection_model": "fasterrcnn_resnet50_fpn_v2",
                                           "pixels_threshold": 0.3})
        assert [header.value for header in opened.subheader][0] == "Faster R-CNN · ResNet-50-FPN v2"

    def test_a_failed_download_is_one_more_line_and_nothing_is_fetched(self, monkeypatch):
        asked = []

        def offline(url, **options):
            asked.append(url)
            raise OSError("[Errno 101] Network is unreachable")

        monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
        at = upload(app_test(PAGE))
        at.button(key="pixels_download_deeplabv3_resnet50").click().run()
        assert not at.exception, at.exception
        first, second = [error.value for error in at.error]
        assert "not in the torch cache" in first
        assert second.startswith("Cannot download https://download.pytorch.org/models/deeplabv3_resnet50_coco")
        assert "Network is unreachable" in second and "\n" not in second
        assert asked == [tm.MODELS["deeplabv3_resnet50"].weights().url]

    def test_a_file_that_is_not_an_image_gets_the_classify_pages_refusal(self):
        at = upload(app_test(PAGE), "notes.jpg", b"these are not pixels")
        (error,) = [error.value for error in at.error]
        assert error.startswith("notes.jpg: This is not a supported image; allowed:")
        assert [info.value for info in at.info] == ["Upload a photo to see what the model makes of it."]


# ------------------------------------------------------------------------------------------- stand-in weights
def _stand_in(name: str) -> dict[str, torch.Tensor]:
    """`name`'s architecture with random weights, but a last layer that answers with fixed probabilities, and
    BatchNorm statistics that are not the identity (so a wrong epsilon would show)."""
    torch.manual_seed(0)
    state = tm.skeleton(name).state_dict()
    for key, value in state.items():
        if key.endswith("running_var"):
            value.uniform_(0.5, 1.5)
    if tm.MODELS[name].task == "segmentation":
        weight, bias, probabilities = "classifier.4.weight", "classifier.4.bias", SEGMENTATION_P
    else:
        weight, bias = "roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.cls_score.bias"
        probabilities = DETECTION_P
        # Every anchor and every box grown past the image (log-size deltas clamped at log(1000/16)), then clipped to
        # it: one box per class after non-maximum suppression, the whole image.
        for prefix, classes in (("rpn.head.bbox_pred", 3), ("roi_heads.box_predictor.bbox_pred", 91)):
            state[f"{prefix}.weight"].zero_()
            state[f"{prefix}.bias"].copy_(torch.tensor([0.0, 0.0, 50.0, 50.0]).repeat(classes))
    state[weight].zero_()
    logits = torch.full_like(state[bias], -30.0)
    for index, p in probabilities.items():
        logits[index] = math.log(p)
    state[bias].copy_(logits)
    return state


@pytest.fixture(scope="module")
def stand_in_torch_home(tmp_path_factory) -> Path:
    """A torch home whose hub cache holds stand-ins for DeepLabV3-R50's and Faster R-CNN v1's published files."""
    home = tmp_path_factory.mktemp("torch")
    for name in ("deeplabv3_resnet50", "fasterrcnn_resnet50_fpn"):
        path = home / "hub" / "checkpoints" / tm.MODELS[name].weights().url.rsplit("/", 1)[1]
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(_stand_in(name), path)
    return home


@pytest.fixture
def stand_ins(stand_in_torch_home, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(stand_in_torch_home))
    monkeypatch.setattr(tm, "SHORT_SIDE", 96)  # the pictures, not the speed (benchmarks/bench_pixels.py)
    return stand_in_torch_home


@pytest.mark.usefixtures("app_clear_caches", "app_torch_threads")
def test_weights_in_the_cache_give_three_pictures_a_legend_and_boxes_above_the_threshold(stand_ins):
    at = upload(app_test(PAGE))
    assert not at.error, [error.value for error in at.error]
    pictures = [caption for image in at.image for caption in image.captions]
    assert pictures == ["Input", "Class per pixel", "Overlay"]
    assert any("resized to 128×96 px" in caption.value for caption in at.caption)
    legend = table(at, "mean confidence")
    assert legend["class"].tolist() == ["person"] and legend["pixels (%)"].tolist() == [100]
    assert legend["mean confidence"].tolist() == pytest.approx([SEGMENTATION_P[PERSON]], abs=1e-5)

    at.segmented_control(key="pixels_task").set_value("detection").run()
    assert not at.exception and not at.error, at.exception or [error.value for error in at.error]
    whole = [0, 0, 128, 96]
    boxes = table(at, "score")
    assert boxes["class"].tolist() == ["person"] and boxes["score"].tolist() == pytest.approx([0.8])
    assert boxes.loc[0, ["x0", "y0", "x1", "y1"]].tolist() == whole
    assert [caption for image in at.image for caption in image.captions] == ["1 of 2 boxes score at least 0.50"]
    at.slider(key="pixels_threshold").set_value(0.1).run()
    loose = table(at, "score")
    assert loose["class"].tolist() == ["person", "car"] and loose["score"].tolist() == pytest.approx([0.8, 0.15])


@pytest.mark.usefixtures("app_clear_caches", "app_torch_threads")
def test_a_pixel_of_the_photo_is_explained_on_demand_by_grad_cam_or_saliency(stand_ins):
    at = upload(app_test(PAGE))
    def heatmaps() -> list[dict]:
        return [figure for figure in app_figures(at) if any(trace["type"] == "heatmap" for trace in figure["data"])]

    assert not heatmaps()  # nothing computed until asked
    at.toggle(key="pixels_photo_explain").set_value(True).run()
    assert not at.exception and not at.error, at.exception or [error.value for error in at.error]
    assert at.selectbox(key="pixels_photo_method").options == ["Grad-CAM", "Saliency"]  # one backward pass each
    [figure] = heatmaps()
    assert app_plotly_array(figure["data"][1]["z"]).shape == (96, 128)  # over the working image
    assert (figure["data"][2]["x"], figure["data"][2]["y"]) == ([64], [48])  # the middle, until another is picked
    (note,) = [caption.value for caption in at.caption if caption.value.startswith("Pixel (64, 48)")]
    assert note.startswith("Pixel (64, 48), marked ✕, is labelled **person**. Grad-CAM on layer4.2's 12×16 map for "
                           "**person** there (p = 0.70), over the 128×96 input DeepLabV3 · ResNet-50 sees.")
    at.selectbox(key="pixels_photo_method").set_value("saliency").run()
    at.selectbox(key="pixels_photo_target").set_value(0).run()
    (note,) = [caption.value for caption in at.caption if caption.value.startswith("Pixel (64, 48)")]
    assert "Saliency for **__background__** there (p = 0.30)" in note
    assert torch.get_num_threads() == 1


@pytest.mark.usefixtures("app_home", "app_no_dispatcher")
def test_a_photo_is_labelled_on_the_cores_no_training_run_of_this_server_uses(stand_ins, monkeypatch):
    """A quiet server lends the page every core; a run training here keeps its threads; one that trains on another
    machine (a cluster's worker) keeps none of this one's. The page's own thread goes back to one torch thread."""
    monkeypatch.setenv(settings.THREADS_VARIABLE, "1")
    cores = os.cpu_count()
    store = Store()

    def cores_used(photo: bytes) -> int:
        (line,) = [caption.value for caption in upload(app_test(PAGE), data=photo).caption
                   if "of this server's CPU" in caption.value]
        assert torch.get_num_threads() == 1
        return int(line.split(" s on ", 1)[1].split(" core", 1)[0])

    def running_run() -> int:
        [run_id] = store.create_runs([dict(name="busy", spec=get_spec("resnet8").to_dict(), recipe=Recipe().to_dict(),
                                           data="synthetic", device="cpu", precision="fp32", seed=0)],
                                     taken_by=os.getpid())
        return run_id

    assert cores_used(jpeg((120, 90))) == cores
    here = running_run()
    assert cores_used(jpeg((121, 90))) == max(1, cores - 1)
    store.finish(here, "finished")
    with monkeypatch.context() as elsewhere:
        elsewhere.setenv(settings.NODE_VARIABLE, "another-machine")
        running_run()
    assert cores_used(jpeg((122, 90))) == cores


def test_the_stand_ins_load_as_torchvisions_own_builders_load_them(stand_ins):
    """The skeleton + weights_only load equals torchvision's builder reading the same cached file (which it
    unpickles freely, and which for v1 swaps in FrozenBatchNorm2d with eps 0)."""
    from torchvision.models import detection, segmentation as torchvision_segmentation

    x = torch.rand(1, 3, 96, 128)
    ours = tm.load("fasterrcnn_resnet50_fpn").model.backbone.body
    theirs = detection.fasterrcnn_resnet50_fpn(weights="COCO_V1").eval().backbone.body
    with torch.inference_mode():
        for (level, mine), reference in zip(ours(x).items(), theirs(x).values()):
            assert torch.allclose(mine, reference, rtol=1e-4, atol=1e-4 * reference.abs().max()), level
    image = tm.working_image(Image.open(io.BytesIO(jpeg())))
    mine = tm.load("deeplabv3_resnet50").segment(image)
    reference = torchvision_segmentation.deeplabv3_resnet50(weights="COCO_WITH_VOC_LABELS_V1").eval()
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255
    with torch.inference_mode():
        probabilities = reference(((pixels - mean) / std)[None])["out"][0].softmax(0)
    assert np.allclose(probabilities.max(0).values.numpy(), mine.confidence, atol=1e-5)
    assert (probabilities.argmax(0).numpy() == mine.classes).all()


# ------------------------------------------------------------------------------------------- a real browser
@pytest.fixture(scope="module")
def pixels_server(app_server_settings, tmp_path_factory):
    """A fresh server whose torch cache is an empty folder."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    chosen = {**app_server_settings, "TORCH_HOME": str(tmp_path_factory.mktemp("empty-torch"))}
    with serve_app(port, tmp_path_factory.mktemp("streamlit") / "server.log", chosen):
        yield f"http://127.0.0.1:{port}"


@pytest.mark.browser
def test_browser_upload_with_absent_weights_shows_the_one_line_message(pixels_server, browser_page, tmp_path):
    page = browser_page
    load(page, f"{pixels_server}/Pixels")
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg())
    page.get_by_test_id("stMain").get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(photo))
    page.wait_for_selector("text=not in the torch cache", timeout=WAIT_MS)
    page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").filter(has_text="Model").click()
    page.get_by_role("option", name="FCN · ResNet-50", exact=True).click()
    page.wait_for_selector("text=FCN · ResNet-50 weights are not in the torch cache", timeout=WAIT_MS)
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=WAIT_MS)
    errors = page.get_by_test_id("stAlertContentError").all_inner_texts()
    assert len(errors) == 1 and "fcn_resnet50_coco-1167a1af.pth" in errors[0], errors
    assert page.get_by_role("button", name="Try to download them").count() == 1
    assert page.get_by_test_id("stException").count() == 0
    screenshot(page, "pixels_weights_missing.png")


# ------------------------------------------------------------------------------------------- this server's scene models
@pytest.fixture(scope="module")
def scene_home(tmp_path_factory) -> tuple[Path, int]:
    """A data folder whose store holds one finished scene model (helpers.app_scene_model); (folder, run id)."""
    home = tmp_path_factory.mktemp("scene-home")
    seed_speeds(home)
    return home, app_scene_model(home)


@pytest.fixture
def scene_store(scene_home, monkeypatch, app_clear_caches, app_torch_threads) -> tuple[Store, int]:
    """The pages read the scene model's data folder; (its store, the run id). The pages only read it."""
    home, run_id = scene_home
    monkeypatch.setenv(settings.HOME_VARIABLE, str(home))
    monkeypatch.setenv(settings.SPARES_VARIABLE, "0")
    return Store(home), run_id


def scene_models_page(**widgets) -> AppTest:
    """The page on the scene models, then `widgets` (key -> value) set in order, a run after each."""
    at = app_test(PAGE)
    at.segmented_control(key="pixels_models").set_value("scenes").run()
    for key, value in widgets.items():
        app_widget(at, key).set_value(value).run()
        assert not at.exception, at.exception
    assert not at.error, [error.value for error in at.error]
    return at


def test_a_scene_model_shows_three_pictures_its_miou_and_each_class_iou(scene_store):
    store, run_id = scene_store
    at = scene_models_page()
    label = at.selectbox(key="pixels_scene_run").format_func(run_id)
    assert at.selectbox(key="pixels_scene_run").value == run_id
    final = store.metrics(run_id, "test")[-1]
    assert label == f"#{run_id} FCN · ResNet-8 from scratch on synthetic · mIoU {100 * final['miou']:.1f} %"
    assert [caption for image in at.image for caption in image.captions] == ["Input", "Class per pixel", "Overlay",
                                                                             "True classes"]
    assert any("test scene 0 at 64×64 px" in caption.value for caption in at.caption)
    report = evaluate_segmentation_run(store, run_id, device="cpu")  # the CLI's `segment evaluate`
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics == {"mIoU": f"{100 * report.scores.miou:.1f} %",
                       "Pixel accuracy": f"{100 * report.scores.pixel_accuracy:.1f} %"}
    assert report.scores.miou == pytest.approx(final["miou"])  # its last test point scored every test scene
    ious = table(at, "IoU (%)")
    assert ious["class"].tolist() == list(report.scores.classes)
    assert ious["IoU (%)"].tolist() == pytest.approx([100 * v for v in report.scores.iou.values()], nan_ok=True)
    legend = table(at, "mean confidence")
    assert set(legend["class"]) <= set(report.scores.classes)
    traces = {trace.get("name"): trace for figure in app_figures(at) for trace in figure["data"]}
    curve = traces[f"#{run_id} FCN · ResNet-8 test mIoU"]  # the run's curve: mIoU, not error
    assert app_plotly_array(curve["y"]).tolist() == pytest.approx([100 * row["miou"]
                                                                  for row in store.metrics(run_id, "test")])


def test_a_pixel_of_a_scene_is_explained_by_the_input_pixels_that_decided_it(scene_store):
    store, run_id = scene_store
    at = scene_models_page(pixels_method="saliency")
    [figure] = [figure for figure in app_figures(at) if any(trace["type"] == "heatmap" for trace in figure["data"])]
    heatmap, marker = figure["data"][1:]
    first = app_plotly_array(heatmap["z"])
    assert first.shape == (64, 64) and first.max() > 0 and first.min() >= 0  # Saliency: magnitudes
    assert (marker["x"], marker["y"]) == ([32], [32])  # the middle, until another pixel is picked
    (note,) = [caption.value for caption in at.caption if caption.value.startswith("Pixel (32, 32)")]
    assert "Saliency for **" in note and "(truly *" in note
    at.number_input(key="pixels_x").set_value(3).run()
    at.number_input(key="pixels_y").set_value(60).run()
    assert not at.exception
    [figure] = [figure for figure in app_figures(at) if any(trace["type"] == "heatmap" for trace in figure["data"])]
    second = app_plotly_array(figure["data"][1]["z"])
    assert figure["data"][2]["x"] == [3] and figure["data"][2]["y"] == [60]
    assert second[55:, :10].max() > 0 and second[:20, 40:].max() == 0  # its receptive field, not the other's
    assert not np.allclose(first, second)
    assert [button.label for button in at.get("download_button")].count("Data (CSV)") == 2  # IoU curve, attribution
    at.selectbox(key=f"pixels_target_{run_id}").set_value(3).run()  # another class at the same pixel
    (note,) = [caption.value for caption in at.caption if caption.value.startswith("Pixel (3, 60)")]
    assert "Saliency for **pattern2** there" in note


def test_a_photo_is_shrunk_to_the_scenes_size_and_has_no_true_classes(scene_store):
    at = scene_models_page(pixels_scene_input="photo")
    assert [info.value for info in at.info] == ["Upload a photo to see what the scene model makes of it."]
    upload(at)
    assert not at.error, [error.value for error in at.error]
    assert [caption for image in at.image for caption in image.captions] == ["Input", "Class per pixel", "Overlay"]
    assert any("your photo at 84×64 px" in caption.value for caption in at.caption)  # 120×90, stride 4
    assert at.number_input(key="pixels_x").max == 83 and at.number_input(key="pixels_y").max == 63


def test_a_link_reproduces_the_scene_model_its_scene_and_its_pixel(scene_store):
    # The one scene model is the picker's default, which Streamlit leaves out of a link.
    opened = app_url_round_trip(PAGE, {"pixels_models": "scenes", "pixels_scene_index": 5, "pixels_x": 10,
                                       "pixels_y": 50, "pixels_method": "grad_cam"})
    (note,) = [caption.value for caption in opened.caption if caption.value.startswith("Pixel (10, 50)")]
    assert "Grad-CAM on layer3.0's 16×16 map" in note
    assert any("test scene 5 at 64×64 px" in caption.value for caption in opened.caption)


@pytest.mark.usefixtures("app_home", "app_no_dispatcher")
def test_without_a_scene_model_the_page_says_so_and_its_form_queues_one(monkeypatch):
    from resnet_core.runs import dispatch

    dispatched = []
    monkeypatch.setattr(dispatch, "dispatch", lambda store, **options: dispatched.append(store.home))  # no process
    at = scene_models_page()
    assert [info.value for info in at.info][0].startswith("No scene model on this server yet: train one below")
    at.selectbox(key="pixels_train_backbone").set_value("random:resnet8")
    at.radio(key="pixels_train_data").set_value("synthetic")
    at.number_input(key="pixels_train_iterations").set_value(4)
    at.number_input(key="pixels_train_scenes").set_value(64)
    at.number_input(key="pixels_train_test_scenes").set_value(16)
    next(button for button in at.button if button.label == "Start").click().run()
    assert not at.exception and not at.error, at.exception or [error.value for error in at.error]
    (run,) = Store().runs(kinds=("segment",))
    assert (run.status, run.model, run.data, run.recipe["iterations"]) == ("queued", "resnet8", "synthetic", 4)
    assert run.settings["backbone"] == "random:resnet8" and run.settings["freeze"] and run.owner
    assert run.settings["train_scenes"] == 64 and run.settings["test_scenes"] == 16 and dispatched
    assert any(f"#{run.id} FCN · ResNet-8 (frozen)" in element.value for element in at.markdown)  # its card
    assert at.query_params["scene_runs"] == str(run.id)  # a reload or a link follows it too

    at.number_input(key="pixels_train_iterations").set_value(64_000)  # past a CPU server's images
    at.toggle(key="pixels_train_freeze").set_value(False)
    at.selectbox(key="pixels_train_backbone").set_value("random:resnet20")
    next(button for button in at.button if button.label == "Start").click().run()
    (error,) = [error.value for error in at.error]
    assert error.startswith("64,000 iterations of 64 are too long for this CPU-only server") and "\n" not in error
    assert len(Store().runs(kinds=("segment",))) == 1


@pytest.mark.browser
def test_browser_a_scene_model_of_this_server_shows_the_three_pictures(pixels_server, app_server_settings,
                                                                       browser_page):
    home = Path(app_server_settings["RESNET_EXPLORER_HOME"])
    run_id = app_scene_model(home)  # trained into the running server's store
    page = browser_page
    load(page, f"{pixels_server}/Pixels")
    page.get_by_test_id("stSidebar").get_by_text("This server's", exact=True).click()
    main = page.get_by_test_id("stMain")
    page.wait_for_selector(f"text=Run #{run_id}: FCN · ResNet-8", timeout=WAIT_MS)
    for caption in ("Input", "Class per pixel", "Overlay", "True classes"):
        main.get_by_test_id("stImageCaption").filter(has_text=caption).first.wait_for(timeout=WAIT_MS)
    assert main.get_by_text("mIoU").count() >= 1
    assert page.get_by_test_id("stException").count() == 0
    screenshot(page, "pixels_scene_model.png")
