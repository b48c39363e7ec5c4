"""Pixel accuracy and intersection over union, from a confusion matrix summed over batches, counted as the PASCAL VOC
evaluation and torchvision's segmentation reference (references/segmentation/utils.py, ConfusionMatrix) count them.

    matrix = sum(confusion(logits.argmax(1), masks, classes) for logits, masks in batches)
    pixel_accuracy(matrix), miou(matrix), iou(matrix)

A class's IoU is its true positives / (true positives + false positives + false negatives), the pixels pooled over
the whole set, not averaged per image. A class in neither the targets nor the predictions has no IoU: NaN, which
`--json` writes as null. mIoU is the mean over the classes that have one, those present in the targets or predicted
somewhere (a class predicted but never present counts, with IoU 0), as mmsegmentation's nanmean does. torchvision's
reference takes the plain mean, NaN as soon as one class is absent; where every class is present (VOC's validation
set, a test split of a few hundred scenes) the two agree.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


def confusion(predicted: torch.Tensor, target: torch.Tensor, classes: int) -> torch.Tensor:
    """int64 (classes, classes): how many pixels of each target class (row) were predicted as each class (column),
    for label maps of one shape (any integer dtype). The matrices of batches add up to the whole set's."""
    if predicted.shape != target.shape:
        raise ValueError(f"Predictions {tuple(predicted.shape)} and targets {tuple(target.shape)} differ in shape.")
    for name, labels in (("predictions", predicted), ("targets", target)):
        if labels.numel() and (labels.min() < 0 or labels.max() >= classes):
            raise ValueError(f"The {name} hold labels outside 0 … {classes - 1}.")
    index = target.flatten().long() * classes + predicted.flatten().long()
    return torch.bincount(index, minlength=classes * classes).reshape(classes, classes)


def pixel_accuracy(matrix: torch.Tensor) -> float:
    """The fraction of pixels labelled right; NaN for an empty matrix."""
    total = matrix.sum().item()
    return matrix.diagonal().sum().item() / total if total else float("nan")


def iou(matrix: torch.Tensor) -> torch.Tensor:
    """float64 (classes,): each class's intersection over union; NaN for a class in neither targets nor predictions."""
    matrix = matrix.double()
    hits = matrix.diagonal()
    return hits / (matrix.sum(0) + matrix.sum(1) - hits)  # 0 / 0 = NaN where the union is empty


def miou(matrix: torch.Tensor) -> float:
    """The mean IoU over the classes that have one (see the module); NaN for an empty matrix."""
    return torch.nanmean(iou(matrix)).item()


def background_share(matrix: torch.Tensor) -> float:
    """The fraction of target pixels of class 0, the background: the pixel accuracy of answering "background"
    everywhere, the bar a segmenter's pixel accuracy has to clear."""
    total = matrix.sum().item()
    return matrix[0].sum().item() / total if total else float("nan")


@dataclass(frozen=True)
class SegmentationScores:
    """Everything above for one confusion matrix, with the class names it counts."""

    classes: tuple[str, ...]
    pixel_accuracy: float  # fraction
    miou: float
    iou: dict[str, float]  # class name -> IoU; NaN for a class in neither targets nor predictions
    background_share: float  # fraction of target pixels
    confusion_matrix: list[list[int]]  # [target class][predicted class] pixel counts

    def to_dict(self) -> dict:
        return asdict(self)


def segmentation_scores(matrix: torch.Tensor, classes: tuple[str, ...]) -> SegmentationScores:
    if matrix.shape != (len(classes), len(classes)):
        raise ValueError(f"A confusion matrix of {tuple(matrix.shape)} does not count {len(classes)} classes.")
    return SegmentationScores(tuple(classes), pixel_accuracy(matrix), miou(matrix),
                              dict(zip(classes, iou(matrix).tolist())), background_share(matrix),
                              matrix.cpu().tolist())
