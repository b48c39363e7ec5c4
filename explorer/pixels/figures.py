"""Pure picture builders for the Pixels page: results in, images (numpy arrays or PIL) and tables out, so tests call
them without Streamlit.

The three pictures of "classifying an image pixel by pixel": the input, the class map in PASCAL VOC's own colours
(its devkit's colour map, the one teaching material shows), and the map laid over the input, with a legend of the
classes present. Detection: the input with its boxes, labels and scores above a threshold.
"""
from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from resnet_core.pixels.torchvision_models import Detection, Segmentation

OVERLAY_ALPHA = 0.55  # how much of a labelled pixel's colour is the class's; background pixels keep the photo's
# Boxes: bright colours that stay visible on photos, by class id (Tableau 10, then a few more).
BOX_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
               "#7f7f7f", "#ff1493", "#00ced1")
BOX_WIDTH_PX = 3
LABEL_FONT_PX = 14


def voc_palette(count: int) -> np.ndarray:
    """(count, 3) uint8: PASCAL VOC's colour map, the devkit's bit-interleaving of the class index (background
    black, aeroplane (128, 0, 0), bicycle (0, 128, 0), …, person (192, 128, 128))."""
    palette = np.zeros((count, 3), dtype=np.uint8)
    for index in range(count):
        code, colour = index, [0, 0, 0]
        for bit in range(8):
            for channel in range(3):
                colour[channel] |= ((code >> channel) & 1) << (7 - bit)
            code >>= 3
        palette[index] = colour
    return palette


def hex_colour(rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(value) for value in rgb))


def class_map_image(segmentation: Segmentation) -> np.ndarray:
    """(H, W, 3) uint8: every pixel in its class's colour."""
    return voc_palette(len(segmentation.categories))[segmentation.classes]


def overlay_image(image: Image.Image, segmentation: Segmentation, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """(H, W, 3) uint8: the photo with each labelled pixel tinted by its class; background pixels unchanged."""
    photo = np.asarray(image.convert("RGB"), dtype=np.float32)
    if photo.shape[:2] != segmentation.classes.shape:
        raise ValueError(f"The image is {photo.shape[1]}×{photo.shape[0]} but the class map "
                         f"{segmentation.classes.shape[1]}×{segmentation.classes.shape[0]}.")
    colours = class_map_image(segmentation).astype(np.float32)
    labelled = (segmentation.classes != 0)[..., None]  # index 0 is __background__
    blended = np.where(labelled, (1 - alpha) * photo + alpha * colours, photo)
    return blended.round().clip(0, 255).astype(np.uint8)


def legend_table(segmentation: Segmentation) -> pd.DataFrame:
    """One row per class some pixel is labelled with, most pixels first: its colour, its share of the image and how
    sure the net is of it there (the mean softmax probability of its pixels)."""
    palette = voc_palette(len(segmentation.categories))
    present, counts = np.unique(segmentation.classes, return_counts=True)
    rows = []
    for index, count in zip(present.tolist(), counts.tolist()):
        mask = segmentation.classes == index
        name = "background" if index == 0 else segmentation.categories[index]
        rows.append((hex_colour(palette[index]), name, 100 * count / segmentation.classes.size,
                     float(segmentation.confidence[mask].mean())))
    table = pd.DataFrame(rows, columns=["colour", "class", "pixels (%)", "mean confidence"])
    return table.sort_values("pixels (%)", ascending=False, kind="stable").reset_index(drop=True)


def box_colour(label: int) -> str:
    return BOX_COLOURS[label % len(BOX_COLOURS)]


@cache
def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default(size=LABEL_FONT_PX)


def boxes_image(image: Image.Image, detection: Detection, threshold: float) -> Image.Image:
    """A copy of the photo with every box scoring at least `threshold`: its outline and a tag with its class and
    score, in its class's colour. The likeliest are drawn last, so they lie on top."""
    drawn = image.convert("RGB")  # a copy
    draw = ImageDraw.Draw(drawn)
    kept = detection.above(threshold)
    font = _font()
    for box, label, score in reversed(list(zip(kept.boxes.tolist(), kept.labels.tolist(), kept.scores.tolist()))):
        colour = box_colour(label)
        x0, y0, x1, y1 = box
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=BOX_WIDTH_PX)
        text = f"{kept.categories[label]} {score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tag_height = bottom - top + 4
        tag_top = y0 - tag_height if y0 >= tag_height else y0  # above the box, or inside it at the image's top
        draw.rectangle((x0, tag_top, x0 + right - left + 6, tag_top + tag_height), fill=colour)
        draw.text((x0 + 3, tag_top + 2 - top), text, fill="white", font=font)
    return drawn


def detection_table(detection: Detection, threshold: float) -> pd.DataFrame:
    """The boxes scoring at least `threshold`, likeliest first: class, score and corners in the image's pixels."""
    kept = detection.above(threshold)
    boxes = kept.boxes.round().astype(int)
    return pd.DataFrame({"class": [kept.categories[label] for label in kept.labels.tolist()],
                         "score": kept.scores.astype(float),
                         "x0": boxes[:, 0], "y0": boxes[:, 1], "x1": boxes[:, 2], "y1": boxes[:, 3]})
