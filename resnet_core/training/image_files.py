"""Image files from users, decoded safely into RGB: uploads to Classify and the images of image folders alike.

`load_image` is the one door for uploaded files and paths: it accepts only the formats the app
promises (PNG, JPEG, WebP, GIF, BMP, recognised by content, not by extension), refuses oversized
images before decoding a pixel, and hands back a plain RGB image whatever the file's mode, so
nothing downstream needs to know about EXIF, alpha, palettes or 16-bit samples.
"""
from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

# Pillow's format names; `Image.open(formats=…)` never even tries another plugin, which keeps
# code for formats we do not promise (TIFF, ICO, EPS, …) out of reach of uploaded bytes.
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
ALLOWED_FORMATS_TEXT = "PNG, JPEG, WebP, GIF or BMP"
# For file pickers and the listing of image folders: `load_image` itself goes by content, whatever the name says.
ALLOWED_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "gif", "bmp")
DEFAULT_MAX_PIXELS = 40_000_000  # an upload from anyone
# A folder's images are its owner's own photos (a 48 MP phone shot is ordinary): only Pillow's own limit.
FOLDER_MAX_PIXELS = 2 * Image.MAX_IMAGE_PIXELS
# 16-bit samples (0…65535) map onto 8-bit (0…255) by dividing by 65535/255.
_SIXTEEN_BIT_PER_EIGHT_BIT = 257
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_WHITE = (255, 255, 255, 255)
# What Pillow raises on corrupt or truncated data (plugins use SyntaxError and struct.error
# internally, decoders OSError); anything else is a bug and should show its traceback.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)


class InvalidImageError(ValueError):
    """An image a user gave cannot be used; the message is one sentence fit for the UI."""


def load_image(source: bytes | bytearray | str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode `source` (the file's bytes, or a path) into a new RGB image.

    EXIF orientation is applied, transparency is composited onto white, 16-bit grayscale is scaled
    to 8 bits by its full range, and animations give their first frame. Raises `InvalidImageError`
    for anything else: empty, truncated or corrupt files, other formats, and images of more than
    `max_pixels` pixels (refused from the header, before decoding). Pillow itself refuses images
    over twice its own `Image.MAX_IMAGE_PIXELS` (about 179 MP) whatever `max_pixels` says.
    """
    try:
        with _open(source) as image:
            _refuse_oversized(image.size, max_pixels)
            image.load()
            return _to_rgb(ImageOps.exif_transpose(image))
    except InvalidImageError:
        raise
    # Pillow warns between 1x and 2x its own limit (an error under `-W error`) and raises above 2x.
    # Not silenced with `warnings.catch_warnings`: that edits global state, unsafe in the app's threads.
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidImageError(
            f"The image is too large to open; allowed: at most {max_pixels / 1e6:g} megapixels.") from None
    except _DECODE_ERRORS as error:
        raise InvalidImageError(
            f"The image could not be decoded (the file is truncated or corrupt): {_first_line(error)}.") from None


def _open(source: bytes | bytearray | str | Path) -> Image.Image:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise InvalidImageError("The image file is empty.")
        stream: io.BytesIO | Path = io.BytesIO(source)
    elif isinstance(source, (str, Path)):
        stream = Path(source)
        if not stream.is_file():
            raise InvalidImageError(f"There is no image file at {str(stream)!r}.")
        if stream.stat().st_size == 0:
            raise InvalidImageError("The image file is empty.")
    else:
        raise TypeError(f"source must be bytes or a path, not {type(source).__name__}")
    try:
        return Image.open(stream, formats=ALLOWED_FORMATS)
    except Image.UnidentifiedImageError:
        raise InvalidImageError(f"This is not a supported image; allowed: {ALLOWED_FORMATS_TEXT}.") from None


def _refuse_oversized(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise InvalidImageError(
            f"The image has {width}x{height} = {width * height / 1e6:.1f} megapixels; "
            f"allowed: at most {max_pixels / 1e6:g} megapixels.")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in _SIXTEEN_BIT_MODES:
        # Pillow's own conversion to "L" clips at 255 instead of scaling.
        samples = np.asarray(image).astype(np.float64) / _SIXTEEN_BIT_PER_EIGHT_BIT
        image = Image.fromarray(np.clip(np.rint(samples), 0, 255).astype(np.uint8))
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        white = Image.new("RGBA", image.size, _WHITE)
        image = Image.alpha_composite(white, image.convert("RGBA"))
    return image.convert("RGB")  # a copy even when already RGB, so no file handle is kept


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0].rstrip(".") if text else type(error).__name__


def image_tensor(path: str | Path, *, max_pixels: int = FOLDER_MAX_PIXELS) -> torch.Tensor:
    """`load_image(path)` as a uint8 (1, 3, H, W) tensor: what training reads from an image folder, so it sees the
    very pixels Classify shows for the same file."""
    return torch.from_numpy(np.array(load_image(path, max_pixels=max_pixels))).permute(2, 0, 1)[None]
