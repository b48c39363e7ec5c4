"""AppTest of the Classify page: examples, uploads (issue 6's bad inputs among them), two models, attributions."""
import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (REPO, app_assert_figures_download, app_figures, app_finished_run, app_plotly_array, app_test,
                     app_url_round_trip)
from PIL import Image
from streamlit.testing.v1 import AppTest

import resnet_core as rc
from resnet_core.explain.classifier import MAX_UPLOAD_BYTES, export_classifier
from test_images import encode, png_header_only, two_colour

PAGE = str(REPO / "pages" / "5_Classify.py")
pytestmark = pytest.mark.usefixtures("app_clear_caches", "app_torch_threads", "app_empty_homes")


def bar_charts(at: AppTest) -> list[dict]:
    return [chart for chart in app_figures(at) if chart["data"][0]["type"] == "bar"]


def upload(at: AppTest, *files: tuple[str, bytes]) -> AppTest:
    mime = {"png": "image/png", "jpg": "image/jpeg", "gif": "image/gif", "webp": "image/webp", "bmp": "image/bmp"}
    at.file_uploader(key="classify_upload").set_value(
        [(name, data, mime[name.rsplit(".", 1)[1]]) for name, data in files]).run()
    return at


def assert_alive(at: AppTest) -> None:
    """No traceback, and the page still answers: two top-5 charts for the image shown."""
    assert not at.exception, at.exception
    assert len(bar_charts(at)) == 2


@pytest.fixture
def at() -> AppTest:
    return app_test(PAGE)


def test_first_visit_asks_for_an_image_and_defaults_to_the_most_accurate_pair(at):
    assert [info.value for info in at.info] == ["Upload an image or pick an example to see what the networks answer."]
    assert at.selectbox(key="classify_left").value == "reference:plain20"
    assert at.selectbox(key="classify_right").value == "reference:resnet20"
    options = at.selectbox(key="classify_left").options  # labels, most accurate first within each kind
    assert options[:4] == ["ResNet-20 reference (CIFAR-10, 4,680 it.), 18.5 % test error",
                           "plain-20 reference (CIFAR-10, 4,680 it.), 21.4 % test error",
                           "ResNet-56 reference (CIFAR-10, 4,680 it.), 23.5 % test error",
                           "plain-56 reference (CIFAR-10, 4,680 it.), 54.5 % test error"]
    assert "ResNet-50 (torchvision, ImageNet)" in at.selectbox(key="classify_left").options


def test_an_example_gets_two_top5_charts_and_overlays_for_every_method(at):
    at.selectbox(key="classify_example").select("red ball in the sky (drawn)").run()
    assert_alive(at)
    assert [header.value for header in at.subheader] == ["Your image", "plain-20 reference", "ResNet-20 reference"]
    top5 = bar_charts(at)[0]["data"][0]
    app_assert_figures_download(at, data_figures=4)  # two top-5 charts and two attribution overlays
    assert len(top5["y"]) == 5 and all(0 <= x <= 100 for x in top5["x"])
    for method in ("grad_cam", "integrated_gradients", "saliency", "occlusion"):
        at.selectbox(key="classify_method").select(method).run()
        assert_alive(at)
        heatmaps = [chart["data"][1] for chart in app_figures(at) if len(chart["data"]) == 2]
        assert len(heatmaps) == 2 and all(np.isfinite(app_plotly_array(h["z"])).all() for h in heatmaps)
        assert app_plotly_array(heatmaps[0]["z"]).shape == (32, 32)
    at.selectbox(key="classify_method").select("grad_cam").run()
    grad_cam = [c.value for c in at.caption if c.value.startswith("Grad-CAM")]
    assert len(grad_cam) == 2 and all("on layer3.2's 8×8 map" in caption for caption in grad_cam)
    # A chosen class instead of the predicted one.
    at.selectbox(key="classify_left_target_reference:plain20").select(8).run()
    assert any("for **ship**" in c.value for c in at.caption)


def test_one_model_alone(at):
    at.toggle(key="classify_compare").set_value(False).run()
    at.selectbox(key="classify_example").select("checkerboard (drawn)").run()
    assert not at.exception and len(bar_charts(at)) == 1


def _cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG")


def _sixteen_bit_png() -> bytes:
    return encode(Image.fromarray(np.full((20, 20), 40000, dtype=np.uint16)), "PNG")


def _palette_with_transparency() -> bytes:
    image = Image.new("P", (20, 20), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    return encode(image, "PNG", transparency=0)


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (20, 20), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


def _exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    return encode(two_colour((60, 30)), "JPEG", exif=exif.tobytes())


GOOD_ODD_FILES = {
    "photo-24mp.jpg": lambda: encode(two_colour((6000, 4000)), "JPEG", quality=80),
    "cmyk.jpg": _cmyk_jpeg,
    "grey.png": lambda: encode(Image.new("L", (20, 20), 128), "PNG"),
    "sixteen-bit.png": _sixteen_bit_png,
    "rgba.png": lambda: encode(Image.new("RGBA", (20, 20), (255, 0, 0, 100)), "PNG"),
    "palette.png": _palette_with_transparency,
    "animated.gif": _animated_gif,
    "rotated.jpg": _exif_rotated_jpeg,
    "one-pixel.bmp": lambda: encode(Image.new("RGB", (1, 1), (0, 0, 255)), "BMP"),
    "lossless.webp": lambda: encode(two_colour(), "WEBP", lossless=True),
}
BAD_FILES = {
    "empty.png": (lambda: b"", "The image file is empty."),
    "notes.jpg": (lambda: b"just some text, not a picture\n" * 5, "This is not a supported image"),
    "paper.png": (lambda: b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF",
                  "This is not a supported image"),
    "cut.jpg": (lambda: encode(two_colour((200, 200)), "JPEG")[:300], "could not be decoded"),
    "bomb-30000.png": (lambda: png_header_only(30000, 30000), "too large"),
    "bomb-12000.png": (lambda: png_header_only(12000, 12000), "allowed: at most 40 megapixels"),
}


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's, before load_image refuses
@pytest.mark.parametrize("name", BAD_FILES)
def test_each_bad_upload_is_one_line_and_the_page_keeps_working(at, name):
    make, message = BAD_FILES[name]
    good = ("fine.png", encode(two_colour(), "PNG"))
    upload(at, (name, make()), good)
    errors = [error.value for error in at.error]
    assert len(errors) == 1 and errors[0].startswith(f"{name}: ") and message in errors[0] and "\n" not in errors[0]
    assert_alive(at)  # the good file beside it is still classified
    upload(at, ("again.png", encode(two_colour(), "PNG")))
    assert not at.error and not at.exception


def test_odd_but_valid_images_are_all_classified(at):
    files = [(name, make()) for name, make in GOOD_ODD_FILES.items()]
    upload(at, *files)
    assert not at.error and not at.exception
    picker = at.selectbox(key="classify_image")
    assert picker.options == list(GOOD_ODD_FILES)
    for name in GOOD_ODD_FILES:
        picker.select(name).run()
        assert_alive(at)
        assert at.image[0].proto.imgs[0].caption == name


def _lying_checkpoint(tmp_path: Path) -> bytes:
    """ResNet-8's weights under metadata that says ResNet-20."""
    path = tmp_path / "liar.safetensors"
    rc.save_model(path, rc.build_model("resnet8"))
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        metadata = json.loads(handle.metadata()["resnet_explorer"])
    metadata["spec"] = rc.get_spec("resnet20").to_dict()
    save_file(tensors, str(path), metadata={"resnet_explorer": json.dumps(metadata)})
    return path.read_bytes()


class _CreatesFile:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_bad_checkpoints_of_runs_are_one_line_errors(app_empty_homes, tmp_path):
    witness = tmp_path / "pwned"
    real = tmp_path / "real.safetensors"
    rc.save_model(real, rc.build_model("resnet8"))
    bad = {"pickle": pickle.dumps(_CreatesFile(witness)), "noise": os.urandom(2048),
           "truncated": real.read_bytes()[:1000], "other depth": _lying_checkpoint(tmp_path)}
    for name, content in bad.items():
        app_finished_run(app_empty_homes, name, content)
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.selectbox(key="classify_example").select("sailing boat (drawn)").run()
    for run_id, name in enumerate(bad, start=1):
        at.selectbox(key="classify_left").select(f"run:{run_id}").run()
        errors = [error.value for error in at.error]
        assert len(errors) == 1 and "\n" not in errors[0], (name, errors)
        assert not at.exception and len(bar_charts(at)) == 1  # the right model still answers
    assert "does not hold the resnet20 its metadata names" in errors[0]
    assert not witness.exists()


def test_missing_imagenet_weights_say_where_to_put_them(at):
    at.selectbox(key="classify_right").select("imagenet:resnet18").run()
    at.selectbox(key="classify_example").select("red ball in the sky (drawn)").run()
    (error,) = [error.value for error in at.error]
    assert "not in the torch cache" in error and "resnet18-f37072fd.pth" in error
    assert not at.exception and len(bar_charts(at)) == 1


def test_imagenet_weights_in_the_cache_are_used(at, tmp_path):
    from torchvision.models import resnet18

    path = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    torch.save(resnet18().state_dict(), path)
    at.selectbox(key="classify_right").select("imagenet:resnet18").run()
    at.selectbox(key="classify_example").select("red ball in the sky (drawn)").run()
    assert_alive(at)
    assert "ResNet-18 (ImageNet)" in [header.value for header in at.subheader]


# ------------------------------------------------------------------------------------------- uploaded checkpoints
def _run_checkpoint(tmp_path: Path) -> bytes:
    """A run's checkpoint as the Runs page downloads it: weights, optimizer state, RNG; no class names."""
    from resnet_core.training.checkpoint import Checkpoint, save_checkpoint

    model = rc.build_model("resnet8")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    path = tmp_path / "run-7.safetensors"
    save_checkpoint(path, Checkpoint(spec=model.spec.to_dict(), recipe={}, iteration=4,
                                     model_state=model.state_dict(), optimizer_state=optimizer.state_dict(),
                                     rng_state=torch.get_rng_state(), trainer_state={}))
    return path.read_bytes()


def _foreign_safetensors(tmp_path: Path) -> bytes:
    from safetensors.torch import save_file

    save_file({"encoder.weight": torch.zeros(4, 4)}, str(tmp_path / "foreign.safetensors"))
    return (tmp_path / "foreign.safetensors").read_bytes()


def upload_checkpoints(at: AppTest, *files: tuple[str, bytes]) -> AppTest:
    at.file_uploader(key="classify_checkpoints").set_value(
        [(name, data, "application/octet-stream") for name, data in files]).run()
    return at


def test_an_uploaded_checkpoint_answers_for_this_session_only(at, tmp_path):
    at.selectbox(key="classify_example").select("red ball in the sky (drawn)").run()
    export_classifier(tmp_path / "mine.safetensors", rc.demo_classifier("resnet20"))
    upload_checkpoints(at, ("mine.safetensors", (tmp_path / "mine.safetensors").read_bytes()))
    assert_alive(at)
    assert at.subheader[1].value == "mine.safetensors (resnet20)"  # the new upload answers on the left at once
    upload_checkpoints(at, ("mine.safetensors", (tmp_path / "mine.safetensors").read_bytes()),
                       ("run-7.safetensors", _run_checkpoint(tmp_path)))
    assert_alive(at)
    assert at.subheader[1].value == "run-7.safetensors (resnet8), CIFAR-10 classes assumed"
    assert sum(option.startswith("yours: ") for option in at.selectbox(key="classify_left").options) == 2
    other = app_test(PAGE)  # another person's session
    assert not any(option.startswith("yours: ") for option in other.selectbox(key="classify_left").options)


CHECKPOINT_BAD_FILES = {
    "truncated.safetensors": (lambda tmp: _run_checkpoint(tmp)[:5000], "is truncated or not a safetensors checkpoint"),
    "foreign.safetensors": (_foreign_safetensors, "is not a ResNet Explorer checkpoint"),
    "pickle.safetensors": (lambda tmp: pickle.dumps(_CreatesFile(tmp / "pwned")),
                           "is truncated or not a safetensors checkpoint"),
    "huge.safetensors": (lambda tmp: bytes(MAX_UPLOAD_BYTES + 1), "a checkpoint may be at most 50 MB"),
}


@pytest.mark.parametrize("name", CHECKPOINT_BAD_FILES)
def test_each_bad_checkpoint_upload_is_one_line_and_changes_nothing(at, tmp_path, name):
    make, message = CHECKPOINT_BAD_FILES[name]
    at.selectbox(key="classify_example").select("sailing boat (drawn)").run()
    upload_checkpoints(at, (name, make(tmp_path)))
    errors = [error.value for error in at.error]
    assert len(errors) == 1 and errors[0].startswith(f"{name} ") and message in errors[0] and "\n" not in errors[0]
    assert_alive(at)
    assert at.selectbox(key="classify_left").value == "reference:plain20"  # nothing changed
    assert not any(option.startswith("yours: ") for option in at.selectbox(key="classify_left").options)
    assert not (tmp_path / "pwned").exists()


def test_a_link_to_the_page_reproduces_its_models_and_options():
    opened = app_url_round_trip(PAGE, {"classify_left": "demo:resnet20", "classify_right": "reference:resnet56",
                                       "classify_method": "saliency", "classify_example": "sailing boat (drawn)"})
    assert [header.value for header in opened.subheader] == ["Your image", "ResNet-20 demo", "ResNet-56 reference"]
    alone = app_url_round_trip(PAGE, {"classify_compare": False})
    assert {box.key for box in alone.selectbox} == {"classify_left", "classify_method", "classify_example"}
