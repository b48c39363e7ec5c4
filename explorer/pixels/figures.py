"""Pure picture builders for the Pixels page: results in, images (numpy arrays or PIL), tables and figures out, so
tests call them without Streamlit.

The three pictures of "classifying an image pixel by pixel": the input, the class map in PASCAL VOC's own colours
(its devkit's colour map, the one teaching material shows), and the map laid over the input, with a legend of the
classes present. Detection: the input with its boxes, labels and scores above a threshold. A scene model (a
segmentation run of this server) has the same three pictures, each class's IoU, and which input pixels decided a
pixel's class.
"""
from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont

from explorer import explain_charts
from resnet_core.pixels.scores import SegmentationScores
from resnet_core.pixels.torchvision_models import Detection, Segmentation

OVERLAY_ALPHA = 0.55  # how much of a labelled pixel's colour is the class's; background pixels keep the photo's
# Boxes: bright colours that stay visible on photos, by class id (Tableau 10, then a few more).
BOX_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
               "#7f7f7f", "#ff1493", "#00ced1")
BOX_WIDTH_PX = 3
LABEL_FONT_PX = 14
ENLARGED_PX = 256  # a scene model's 64-pixel pictures, shown 4x, each pixel a square
# The chosen pixel on an attribution map: white with a black edge, visible on any picture and either colour scale.
MARKER = dict(symbol="x", size=13, color="white", line=dict(width=1.5, color="black"))


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
    return labels_image(segmentation.classes, len(segmentation.categories))


def labels_image(labels: np.ndarray, count: int) -> np.ndarray:
    """(H, W, 3) uint8: a label map (H, W) of `count` classes in their colours (a scene's true labels, say)."""
    return voc_palette(count)[labels]


def enlarged(picture: np.ndarray, shown_px: int = ENLARGED_PX) -> np.ndarray:
    """A small picture (H, W, …) repeated pixel by pixel so its longer side is about `shown_px`: a 64-pixel scene
    stays crisp, where a browser would blur it. Pictures already that large come back as they are."""
    factor = max(1, round(shown_px / max(picture.shape[:2])))
    return picture.repeat(factor, axis=0).repeat(factor, axis=1)


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


def iou_table(scores: SegmentationScores) -> pd.DataFrame:
    """One row per class of a scene model's scores, in label order: its colour, its IoU (NaN for a class in neither
    the targets nor the predictions) and its share of the test pixels."""
    palette = voc_palette(len(scores.classes))
    matrix = np.asarray(scores.confusion_matrix, dtype=np.float64)
    share = 100 * matrix.sum(1) / max(matrix.sum(), 1)
    return pd.DataFrame({"colour": [hex_colour(colour) for colour in palette], "class": list(scores.classes),
                         "IoU (%)": [100 * value for value in scores.iou.values()], "test pixels (%)": share})


def pixel_attribution_figure(picture: np.ndarray, attribution: np.ndarray, *, signed: bool, x: int,
                             y: int) -> go.Figure:
    """The Classify page's attribution overlay (explain_charts.attribution_figure) of a scene model's input, with
    the pixel it explains marked."""
    figure = explain_charts.attribution_figure(picture, attribution, signed=signed)
    figure.add_scatter(x=[x], y=[y], mode="markers", name="the pixel explained", showlegend=False,
                       marker=MARKER,
                       hovertemplate="the pixel explained: x %{x}, y %{y}<extra></extra>")
    return figure


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
