"""Test error (top-1 and top-5), per-class accuracy, confusion matrix and the most confidently wrong images; one
view per image, the 10-crop test, or §3.4's fully-convolutional multi-scale test."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import CheckpointError, UserError
from ..nets.model import ResNet
from ..nets.specs import NetSpec
from .augment import Pipeline
from .checkpoint import load_training_checkpoint
from .data import ImageData, check_classes, load_data, storage
from .device import autocast, pick_device, pick_precision
from .recipe import Recipe


@dataclass(frozen=True)
class ConfidentMistake:
    index: int  # into the evaluated split's images
    true_class: str
    predicted_class: str
    confidence: float  # softmax probability of the wrong prediction


@dataclass(frozen=True)
class EvaluationReport:
    data: str
    split: str  # "test", or "validation" for a held-out part of the training set
    test_error: float  # fraction, top-1
    top5_error: float  # fraction whose true class is not among the 5 likeliest (Tables 3-5); 0 with <= 5 classes
    test_loss: float  # mean cross-entropy, nats
    classes: list[str]
    per_class_accuracy: dict[str, float]  # fraction of each class's images classified right
    confusion_matrix: list[list[int]]  # [true class][predicted class] image counts
    most_confident_mistakes: list[ConfidentMistake]
    ten_crop: bool
    multi_scale: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


MULTI_SCALE_BATCH = 16  # images per forward pass at up to 640 px a side: ~40x a 224 crop's activations


@torch.no_grad()
def predict_log_probs(model: nn.Module, images: torch.Tensor, pipeline: Pipeline, *, ten_crop: bool = False,
                      multi_scale: bool = False, precision: str = "fp32", batch_size: int = 500,
                      sizes: torch.Tensor | None = None) -> torch.Tensor:
    """Log class probabilities (N, classes) in float32 for uint8 `images` (of `sizes`, see Pipeline) on the model's
    device; with `ten_crop`, the softmax averaged over the 10 views (§3.4); with `multi_scale`, over each whole image
    and its mirror at every shorter side of `pipeline.test_scales` (Table 4)."""
    if ten_crop and multi_scale:
        raise UserError("Choose the 10-crop test or the multi-scale test, not both.")
    if multi_scale and model.spec.family != "imagenet":
        raise UserError(f"The multi-scale test is §3.4's for ImageNet nets; {model.spec.name} is a CIFAR net.")
    was_training = model.training
    model.eval()
    outputs = []
    step = MULTI_SCALE_BATCH if multi_scale else batch_size
    try:
        for start in range(0, len(images), step):
            chunk = images[start:start + step]
            chunk_sizes = None if sizes is None else sizes[start:start + step]
            with autocast(chunk.device, precision):
                # Softmax scores are averaged over views as the paper does, in log space (logsumexp): a score
                # below float32's smallest is still a finite log, so the loss stays finite.
                if ten_crop:
                    views = pipeline.ten_crop_batch(chunk, chunk_sizes)  # (10, B, 3, crop, crop)
                    outputs.append(_log_softmax(model, views).logsumexp(0) - math.log(len(views)))
                elif multi_scale:
                    # The fully-convolutional form: the fc as a 1x1 convolution over the last feature map gives a
                    # score map, averaged over its positions. The fc is linear, so that average is the fc of the
                    # map's global average: exactly the net's own forward on the whole image, at any size.
                    total = torch.full((len(chunk), model.spec.num_classes), -math.inf, device=chunk.device)
                    for indices, views in pipeline.multi_scale_views(chunk, chunk_sizes):  # (2, n, 3, H, W)
                        total[indices] = torch.logaddexp(total[indices], _log_softmax(model, views).logsumexp(0))
                    outputs.append(total - math.log(2 * len(pipeline.test_scales)))
                else:
                    logits = model(pipeline.test_batch(chunk, chunk_sizes).contiguous(memory_format=torch.channels_last))
                    outputs.append(logits.float().log_softmax(-1))
    finally:
        model.train(was_training)
    return torch.cat(outputs)


def _log_softmax(model: nn.Module, views: torch.Tensor) -> torch.Tensor:
    """Log softmax scores (V, B, classes) of views (V, B, 3, H, W)."""
    logits = model(views.flatten(0, 1).contiguous(memory_format=torch.channels_last))
    return logits.float().log_softmax(-1).unflatten(0, views.shape[:2])


def loss_and_error(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, pipeline: Pipeline,
                   **options) -> tuple[float, float]:
    log_probs = predict_log_probs(model, images, pipeline, **options)
    loss = nn.functional.nll_loss(log_probs, labels).item()
    error = (log_probs.argmax(-1) != labels).float().mean().item()
    return loss, error


def evaluate(model: nn.Module, data: ImageData, recipe: Recipe | None = None, **options) -> float:
    """Error (fraction) of `model` on `data`'s test images, preprocessed as its checkpoint records or else as `recipe`
    (default §4.2) trains."""
    pipeline = Pipeline.for_recipe(recipe or Recipe(), data, model.spec.input_size,
                                   normalization=model.normalization)
    return loss_and_error(model, data.test_images, data.test_labels, pipeline, sizes=data.test_sizes, **options)[1]


def evaluation_report(model: nn.Module, data: ImageData, recipe: Recipe | None = None, *, mistakes: int = 16,
                      **options) -> EvaluationReport:
    """The report of `model` on `data`'s test images, normalised as its checkpoint records (`model.normalization`) or
    else as `recipe` (default §4.2) trains; `options` go to `predict_log_probs`."""
    pipeline = Pipeline.for_recipe(recipe or Recipe(), data, model.spec.input_size,
                                   normalization=model.normalization)
    log_probs = predict_log_probs(model, data.test_images, pipeline, sizes=data.test_sizes, **options)
    labels = data.test_labels
    predicted = log_probs.argmax(-1)
    classes = len(data.classes)
    top5 = log_probs.topk(min(5, classes), dim=-1).indices  # (N, 5)
    confusion = torch.bincount(labels * classes + predicted, minlength=classes * classes).reshape(classes, classes)
    per_class = confusion.diagonal() / confusion.sum(1).clamp(min=1)
    wrong = (predicted != labels).nonzero().flatten()
    confidence = log_probs[wrong, predicted[wrong]].exp()
    worst = wrong[confidence.argsort(descending=True)[:mistakes]]
    return EvaluationReport(
        data=data.name, split=data.test_split,
        test_error=(predicted != labels).float().mean().item(),
        top5_error=1 - (top5 == labels[:, None]).any(-1).float().mean().item(),
        test_loss=nn.functional.nll_loss(log_probs, labels).item(),
        classes=list(data.classes),
        per_class_accuracy={name: per_class[i].item() for i, name in enumerate(data.classes)},
        confusion_matrix=confusion.tolist(),
        most_confident_mistakes=[ConfidentMistake(int(i), data.classes[labels[i]], data.classes[predicted[i]],
                                                  log_probs[i, predicted[i]].exp().item()) for i in worst],
        ten_crop=bool(options.get("ten_crop", False)), multi_scale=bool(options.get("multi_scale", False)),
    )


def evaluate_run(store, run_id: int, *, ten_crop: bool = False, multi_scale: bool = False,
                 device: str | None = None) -> EvaluationReport:
    """Evaluate a run's latest checkpoint on its dataset's test images, normalised as the checkpoint records (an old
    one that records nothing: as its recipe says, with the dataset's statistics)."""
    run = store.run(run_id)
    if run.kind == "segment":  # its checkpoint is a segmenter's (pixels.jobs)
        raise CheckpointError(f"Run {run_id} is a segmentation run; `python -m resnet_core segment evaluate {run_id}` "
                              "scores it.")
    latest = store.latest_checkpoint(run_id)
    if latest is None:
        raise CheckpointError(f"Run {run_id} has no checkpoint yet; it writes one at every evaluation.")
    checkpoint = load_training_checkpoint(latest[1])
    spec = NetSpec.from_dict(run.spec)
    if NetSpec.from_dict(checkpoint.spec) != spec:
        raise CheckpointError(f"Checkpoint {latest[1]} holds a {checkpoint.spec.get('name')} but run {run_id} "
                              f"trains a {spec.name}.")
    target = pick_device(device)
    model = ResNet(spec)
    model.load_state_dict(checkpoint.model_state)
    model.normalization = checkpoint.normalization
    model.to(target).to(memory_format=torch.channels_last)
    recipe = Recipe.from_dict(run.recipe)
    data = load_data(run.data, **storage(spec.family, spec.input_size), home=store.home)
    check_classes(data, f"run {run_id}'s {spec.name}", spec.num_classes, checkpoint.classes)
    return evaluation_report(model, data.to(target), recipe, ten_crop=ten_crop, multi_scale=multi_scale,
                             precision=pick_precision(target, run.precision))
