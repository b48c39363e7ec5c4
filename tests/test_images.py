"""load_image against issue 6's bad inputs, every file made here, and the model-input round trip."""
from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from resnet_core.explain.images import IMAGENET_CROP_FRACTION, model_input_to_image, to_model_input
from resnet_core.training.augment import Normalization
from resnet_core.training.image_files import InvalidImageError, load_image

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)
CIFAR = Normalization.from_stats((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming width x height, with a token IDAT: tiny on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def two_colour(size=(64, 32), left=RED, right=BLUE) -> Image.Image:
    image = Image.new("RGB", size, right)
    image.paste(left, (0, 0, size[0] // 2, size[1]))
    return image


def assert_close(pixel, expected, tolerance=12):
    assert all(abs(a - b) <= tolerance for a, b in zip(pixel, expected)), (pixel, expected)


def refused(source, match: str) -> None:
    with pytest.raises(InvalidImageError, match=match) as caught:
        load_image(source)
    assert "\n" not in str(caught.value)


# --- accepted formats -------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP"])
def test_each_allowed_format_loads_as_rgb(fmt):
    image = load_image(encode(two_colour(), fmt))
    assert image.mode == "RGB" and image.size == (64, 32)
    assert_close(image.getpixel((4, 4)), RED, tolerance=40)  # lossy formats, chroma subsampling
    assert_close(image.getpixel((60, 4)), BLUE, tolerance=40)


def test_path_with_any_extension_is_read_by_content(tmp_path):
    path = tmp_path / "photo.gif"  # really a PNG
    path.write_bytes(encode(two_colour(), "PNG"))
    assert load_image(path).size == load_image(str(path)).size == (64, 32)


def test_one_pixel_image():
    image = load_image(encode(Image.new("RGB", (1, 1), RED), "PNG"))
    assert image.size == (1, 1) and image.getpixel((0, 0)) == RED
    assert to_model_input(image, 32, CIFAR).shape == (1, 3, 32, 32)


def test_24_megapixel_photo_is_accepted_and_resized_quickly():
    photo = encode(two_colour(size=(6000, 4000)), "JPEG", quality=80)
    start = time.perf_counter()
    image = load_image(photo)
    x = to_model_input(image, 32, CIFAR)
    assert image.mode == "RGB" and image.size == (6000, 4000)
    assert x.shape == (1, 3, 32, 32)
    assert time.perf_counter() - start < 5


# --- modes ------------------------------------------------------------------------------------

def test_cmyk_jpeg_becomes_rgb():
    image = load_image(encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95))
    assert image.mode == "RGB"
    assert_close(image.getpixel((8, 8)), RED)


def test_grayscale_becomes_rgb():
    image = load_image(encode(Image.new("L", (8, 8), 100), "PNG"))
    assert image.mode == "RGB" and image.getpixel((3, 3)) == (100, 100, 100)


def test_16_bit_grayscale_is_scaled_not_clipped():
    samples = np.array([[0, 32768, 65535, 257 * 10]], dtype=np.uint16)
    data = encode(Image.fromarray(samples), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")  # really 16-bit on disk
    image = load_image(data)
    assert [image.getpixel((i, 0))[0] for i in range(4)] == [0, 128, 255, 10]


def test_rgba_transparency_is_composited_onto_white():
    rgba = Image.new("RGBA", (4, 1), (255, 0, 0, 255))
    rgba.putpixel((1, 0), (255, 0, 0, 0))
    rgba.putpixel((2, 0), (0, 0, 0, 128))
    image = load_image(encode(rgba, "PNG"))
    assert image.getpixel((0, 0)) == RED and image.getpixel((1, 0)) == WHITE
    assert_close(image.getpixel((2, 0)), (127, 127, 127), tolerance=2)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_is_composited_onto_white(fmt):
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.paste(1, (2, 0, 4, 4))  # right half red, left half index 0 = transparent black
    image = load_image(encode(palette, fmt, transparency=0))
    assert image.getpixel((0, 0)) == WHITE and image.getpixel((3, 0)) == RED


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (8, 8), colour) for colour in (RED, BLUE, WHITE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    assert load_image(data).getpixel((4, 4)) == RED


def test_exif_orientation_is_honoured():
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    image = load_image(encode(two_colour(size=(64, 32)), "JPEG", exif=exif.tobytes(), quality=95))
    assert image.size == (32, 64)  # width and height swapped
    assert_close(image.getpixel((16, 8)), RED)  # the stored left half is now on top
    assert_close(image.getpixel((16, 56)), BLUE)


# --- refused ----------------------------------------------------------------------------------

def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    refused(path, "empty")
    refused(b"", "empty")


def test_missing_file(tmp_path):
    refused(tmp_path / "nothing.jpg", "no image file")


@pytest.mark.parametrize("content", [
    b"Just some notes, saved with the wrong name.\n",
    encode(Image.new("RGB", (8, 8)), "PDF"),
], ids=["text", "pdf"])
def test_text_and_pdf_with_an_image_extension(tmp_path, content):
    path = tmp_path / "holiday.jpg"
    path.write_bytes(content)
    refused(path, "allowed: PNG, JPEG, WebP, GIF or BMP")


@pytest.mark.parametrize("fmt", ["TIFF", "ICO", "PPM"])
def test_other_image_formats_are_refused(fmt):
    refused(encode(Image.new("RGB", (16, 16), RED), fmt), "allowed: PNG, JPEG, WebP, GIF or BMP")


def test_truncated_jpeg():
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = encode(noise, "JPEG")
    refused(data[: len(data) // 2], "truncated or corrupt")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's own, above 89 MP
@pytest.mark.parametrize("side", [30_000, 12_000])
def test_decompression_bombs_are_refused_before_decoding(side):
    bomb = png_header_only(side, side)
    assert len(bomb) < 200
    start = time.perf_counter()
    refused(bomb, "megapixels")
    assert time.perf_counter() - start < 0.5


def test_pixel_limit_is_configurable():
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(InvalidImageError, match="100x100"):
        load_image(data, max_pixels=9_999)
    assert load_image(data, max_pixels=10_000).size == (100, 100)


# --- model input ------------------------------------------------------------------------------

def test_model_input_keeps_aspect_and_crops_the_centre():
    wide = Image.new("RGB", (300, 100), BLUE)
    wide.paste(RED, (100, 0, 200, 100))  # only the centre square is red
    x = to_model_input(wide, 32, Normalization.from_stats((0, 0, 0), (1, 1, 1)))
    assert x.shape == (1, 3, 32, 32)
    assert torch_allclose(x[0, :, 16, 16], (1.0, 0.0, 0.0))
    assert x[0, 2, :, 1:-1].max() < 0.05  # no blue from the sides (the border pixels blend in a little)


def test_imagenet_crop_fraction():
    imagenet = Normalization.from_stats((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    x = to_model_input(Image.new("RGB", (640, 480)), 224, imagenet,
                       crop_fraction=IMAGENET_CROP_FRACTION)
    assert x.shape == (1, 3, 224, 224)


def test_model_input_round_trips_to_the_image_the_network_sees():
    pixels = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    x = to_model_input(Image.fromarray(pixels), 32, CIFAR)
    seen = model_input_to_image(x, CIFAR)
    assert seen.size == (32, 32) and seen.mode == "RGB"
    assert np.abs(np.asarray(seen).astype(int) - pixels).max() <= 1


def torch_allclose(values, expected, tolerance=0.02) -> bool:
    return all(abs(float(v) - e) <= tolerance for v, e in zip(values, expected))
