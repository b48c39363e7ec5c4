"""Inside the network: layer responses (paper Fig. 7) and gradient norms per layer.

Both are pure functions: they work on a deep copy, so the caller's model keeps its mode, its BN
statistics and its (absent) `.grad`s, and a model an app caches can be analysed safely.
`images` are normalised float tensors (N, 3, H, W), as the network sees them.
"""
from __future__ import annotations

import copy
import functools

import pandas as pd
import torch
from torch import nn

from ..nets.model import ResNet
from ..nets.summary import WEIGHTED

RESPONSE_COLUMNS = ["layer", "name", "std"]
GRADIENT_COLUMNS = ["layer", "name", "kind", "grad_norm"]


def response_layers(model: ResNet) -> list[str]:
    """Names of the BN after each 3x3 conv, in forward order: Fig. 7's "outputs of each 3x3 layer".

    Our blocks pair `convK` with `bnK`; the CIFAR stem's 3x3 conv counts, ImageNet's 7x7 stem and
    the 1x1 convs of bottlenecks and projections do not.
    """
    names = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
            conv = name.rpartition(".")[2]  # "convK"
            names.append(f"{name[: -len(conv)]}bn{conv[len('conv'):]}")
    return names


def layer_response_stds(model: ResNet, images: torch.Tensor, *, batch_size: int = 500) -> pd.DataFrame:
    """Standard deviation of each 3x3 layer's response (after BN, before the addition and ReLU).

    One row per 3x3 layer in forward order, columns `layer` (1-based index), `name` (the BN module)
    and `std`: over every element of the response (images x channels x positions), as Fig. 7 plots
    one number per layer. Sort by `std` for the paper's right-hand panel.

    As in the paper the model runs in eval mode, BN using its running statistics (Fig. 7 is on the
    test set of trained nets), so the result does not depend on `batch_size`, which only bounds
    memory. At initialisation the running statistics are still 0 and 1 and BN is the identity: the
    stds then show how the initialised convs alone carry the signal through depth. (With batch
    statistics every response of a fresh net would have std 1 by construction: nothing to see.)
    """
    model = copy.deepcopy(model).eval()
    names = response_layers(model)
    # Streaming sums in float64: the std over all images, however many batches they take.
    totals = {name: [0.0, 0.0, 0.0] for name in names}  # count, sum, sum of squares

    def record(_module: nn.Module, _inputs, output: torch.Tensor, name: str) -> None:
        values = output.detach().double()
        totals[name][0] += values.numel()
        totals[name][1] += float(values.sum())
        totals[name][2] += float(values.square().sum())

    for name in names:
        model.get_submodule(name).register_forward_hook(functools.partial(record, name=name))
    device = next(model.parameters()).device
    with torch.no_grad():
        for batch in images.split(batch_size):
            model(batch.to(device, torch.float32))
    rows = []
    for index, name in enumerate(names, start=1):
        count, total, total_squares = totals[name]
        variance = max(total_squares / count - (total / count) ** 2, 0.0) * count / max(count - 1, 1)
        rows.append((index, name, variance ** 0.5))
    return pd.DataFrame(rows, columns=RESPONSE_COLUMNS)


def gradient_norms(model: ResNet, images: torch.Tensor, labels: torch.Tensor) -> pd.DataFrame:
    """L2 norm of the cross-entropy loss's gradient for every conv and fc weight, in forward order.

    One row per weighted layer (projection shortcuts included, named `…downsample.0`), columns
    `layer` (1-based), `name`, `kind` and `grad_norm`, for the mean loss over this one batch.
    BN runs in train mode, with the batch's statistics: these are the gradients an SGD step on
    this batch would apply, and at initialisation the running statistics mean nothing yet.
    """
    model = copy.deepcopy(model).train()
    device = next(model.parameters()).device
    logits = model(images.to(device, torch.float32))  # (N, classes)
    nn.functional.cross_entropy(logits, labels.to(device)).backward()
    rows = [(name, type(module).__name__, float(module.weight.grad.norm()))
            for name, module in model.named_modules() if isinstance(module, WEIGHTED)]
    return pd.DataFrame([(index, *row) for index, row in enumerate(rows, start=1)], columns=GRADIENT_COLUMNS)
