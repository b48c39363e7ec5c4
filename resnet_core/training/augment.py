"""Augmentation and normalisation in batches on the training device, and the random draws that pick them.

Augmentation (§4.2: pad 4 + random 32x32 crop + horizontal flip; §3.4: scale jitter + 224 crop) is a few tensor
ops on a whole uint8 batch, ~100k images/s, instead of per-sample PIL transforms in DataLoader workers that steal
the two cores the model needs. Random draws come from generators seeded by (seed, epoch) and (seed, iteration),
so a resumed run sees exactly the batches the uninterrupted one would have.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

CIFAR_PADDING = 4  # pixels on each side before the random crop (§4.2)


def resize_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """Shorter side to `size`, then the central square: uint8 (B, 3, H, W) -> (B, 3, size, size)."""
    if images.shape[-2:] == (size, size):
        return images
    resized = resize_shorter(images, size)
    top, left = (resized.shape[-2] - size) // 2, (resized.shape[-1] - size) // 2
    return resized[..., top:top + size, left:left + size].round().clamp(0, 255).to(torch.uint8)


def epoch_order(count: int, seed: int, epoch: int) -> torch.Tensor:
    """The training images' order in `epoch`: a function of (seed, epoch) alone, so a resumed run repeats it."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def iteration_generator(seed: int, iteration: int) -> torch.Generator:
    # Offset from the epoch orders' seeds so the two streams never coincide.
    return torch.Generator().manual_seed(seed * 1_000_003 + 500_000 + iteration)


def pad_crop_flip(images: torch.Tensor, generator: torch.Generator, padding: int = CIFAR_PADDING) -> torch.Tensor:
    """§4.2: zero-pad `padding` pixels, take a random crop of the original size, flip half: uint8 (B, 3, S, S)."""
    batch, _, size, _ = images.shape
    offsets = torch.randint(2 * padding + 1, (2, batch), generator=generator).to(images.device)
    flips = (torch.rand(batch, generator=generator) < 0.5).to(images.device)
    padded = F.pad(images, (padding,) * 4)  # (B, 3, S+2p, S+2p)
    steps = torch.arange(size, device=images.device)
    rows = offsets[0, :, None] + steps  # (B, S)
    cols = offsets[1, :, None] + torch.where(flips[:, None], steps.flip(0), steps)  # a flip is reversed columns
    batch_index = torch.arange(batch, device=images.device)[:, None, None, None]
    channel_index = torch.arange(3, device=images.device)[None, :, None, None]
    return padded[batch_index, channel_index, rows[:, None, :, None], cols[:, None, None, :]]


def scale_crop_flip(images: torch.Tensor, generator: torch.Generator, crop: int,
                    scale_range: tuple[int, int] = (256, 480), sizes: torch.Tensor | None = None) -> torch.Tensor:
    """§3.4, per image: "resized with its shorter side randomly sampled in [256, 480]", a random `crop`-square of
    it, flipped half the time: (B, 3, H, W) uint8 or float -> float (B, 3, crop, crop) on 0-255. `sizes` (B, 2):
    each image's (height, width) at the top left of its tensor (None: every image fills it).

    Each output pixel is sampled straight from the stored image, bilinearly, exactly where resizing the whole image
    (`F.interpolate(..., mode="bilinear", align_corners=False)`) and then cropping would have read it: every image
    gets its own scale and crop and the batch stays a few gathers, without resizing whole images.
    """
    batch = images.shape[0]
    heights, widths = (image_sizes(images, sizes).cpu()).unbind(1)  # (B,) each
    scales = torch.randint(scale_range[0], scale_range[1] + 1, (batch,), generator=generator)
    shorter = torch.minimum(heights, widths)
    new_heights = torch.where(heights == shorter, scales, scales * heights // shorter)  # rounded down, as resize_shorter
    new_widths = torch.where(widths == shorter, scales, scales * widths // shorter)
    tops = (torch.rand(batch, generator=generator) * (new_heights - crop + 1)).long()
    lefts = (torch.rand(batch, generator=generator) * (new_widths - crop + 1)).long()
    flips = torch.rand(batch, generator=generator) < 0.5
    steps = torch.arange(crop)
    rows = _bilinear_taps(tops[:, None] + steps, heights[:, None], new_heights[:, None])  # 3 x (B, crop)
    cols = _bilinear_taps(lefts[:, None] + torch.where(flips[:, None], steps.flip(0), steps), widths[:, None],
                          new_widths[:, None])  # a flip is reversed columns
    row0, row1, row_weight = (tap.to(images.device) for tap in rows)
    col0, col1, col_weight = (tap.to(images.device) for tap in cols)
    index = torch.arange(batch, device=images.device)[:, None]
    # Whole rows are copied as they are stored (uint8); only the crop's pixels become float.
    top, bottom = images[index, :, row0], images[index, :, row1]  # (B, crop, 3, W) each

    def take_cols(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:  # -> float (B, crop, 3, crop)
        return rows.gather(3, cols[:, None, None, :].expand(-1, crop, 3, -1)).float()

    weight = col_weight[:, None, None, :]
    upper = take_cols(top, col0).lerp(take_cols(top, col1), weight)
    lower = take_cols(bottom, col0).lerp(take_cols(bottom, col1), weight)
    return upper.lerp(lower, row_weight[:, :, None, None]).permute(0, 2, 1, 3)  # (B, 3, crop, crop)


def _bilinear_taps(positions: torch.Tensor, size: torch.Tensor, resized: torch.Tensor):
    """Where pixel `positions` of an axis of `size` pixels resized to `resized` reads its two neighbours, and the
    second one's weight, as PyTorch's bilinear `align_corners=False` resize computes them."""
    source = ((positions + 0.5) * (size / resized) - 0.5).clamp(min=0)
    first = torch.minimum(source.floor().long(), size - 1)
    return first, torch.minimum(first + 1, size - 1), source - first


def image_sizes(images: torch.Tensor, sizes: torch.Tensor | None) -> torch.Tensor:
    """(B, 2) heights and widths: `sizes`, or the tensor's own for images that fill it."""
    if sizes is not None:
        return sizes
    return torch.tensor(images.shape[-2:], device=images.device).expand(images.shape[0], 2)


def same_size_groups(images: torch.Tensor, sizes: torch.Tensor | None):
    """(indices, images (n, 3, h, w) cut to their size) for each size among `images` (one group when `sizes` is
    None): whole-image views of images that differ in size are made a size at a time."""
    if sizes is None:
        yield torch.arange(images.shape[0], device=images.device), images
        return
    for size in sizes.unique(dim=0):
        indices = (sizes == size).all(1).nonzero().flatten()
        height, width = size.tolist()
        yield indices, images[indices, :, :height, :width]


def square_views(images: torch.Tensor, sizes: torch.Tensor | None, size: int) -> torch.Tensor:
    """uint8 (B, 3, size, size): each image's shorter side resized to `size`, centre square (AlexNet's 256 x 256
    images, whose mean is its mean image)."""
    views = torch.empty(images.shape[0], 3, size, size, dtype=torch.uint8, device=images.device)
    for indices, group in same_size_groups(images, sizes):
        views[indices] = resize_square(group, size)
    return views


def center_crop(images: torch.Tensor, crop: int) -> torch.Tensor:
    top, left = (images.shape[-2] - crop) // 2, (images.shape[-1] - crop) // 2
    return images[..., top:top + crop, left:left + crop]


def ten_crops(images: torch.Tensor, crop: int) -> torch.Tensor:
    """The standard 10-crop test (§3.4, [21]): four corners and the centre, and their mirrors: (10, B, 3, crop, crop)."""
    height, width = images.shape[-2:]
    corners = [(0, 0), (0, width - crop), (height - crop, 0), (height - crop, width - crop)]
    crops = [images[..., top:top + crop, left:left + crop] for top, left in corners] + [center_crop(images, crop)]
    return torch.stack(crops + [view.flip(-1) for view in crops])


@dataclass(frozen=True)
class Normalization:
    """How uint8 pixels become a network's input: x/255 - mean, divided by std ([0, 1] units).

    per-pixel (§4.2 "with the per-pixel mean subtracted", §3.4 as AlexNet [21]): `mean` is the training images' mean
    image (3, S, S) and `std` ones, nothing is divided. per-channel: `mean` and `std` are (3,), the training set's
    per-channel statistics (what this project used before it followed §4.2, and what its reference nets use).
    """

    kind: str  # one of recipe.NORMALIZATIONS
    mean: torch.Tensor  # (3, S, S) per pixel or (3,) per channel
    std: torch.Tensor  # (3,)

    @classmethod
    def of(cls, kind: str, data: ImageData) -> "Normalization":
        """`kind` with `data`'s training-set statistics."""
        if kind == "per-pixel":
            return cls(kind, data.pixel_mean, torch.ones(3, device=data.pixel_mean.device))
        if kind == "per-channel":
            return cls(kind, data.channel_mean, data.channel_std)
        raise ValueError(f"Unknown normalisation {kind!r}; allowed: per-pixel, per-channel.")

    @classmethod
    def from_stats(cls, mean, std) -> "Normalization":
        """Statistics in [0, 1] units, e.g. torchvision's weights' transforms: 3 channel means are per channel, a
        (3, S, S) mean image per pixel."""
        mean = torch.as_tensor(mean, dtype=torch.float32)
        return cls("per-channel" if mean.dim() == 1 else "per-pixel", mean,
                   torch.as_tensor(std, dtype=torch.float32).reshape(3))

    def to(self, device: torch.device | str) -> "Normalization":
        return Normalization(self.kind, self.mean.to(device), self.std.to(device))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or float 0-255) (..., 3, H, W) -> float32 network input."""
        return (images.float() / 255 - self._mean_for(images)) / self.std[:, None, None]

    def invert(self, x: torch.Tensor) -> torch.Tensor:
        """Network input (..., 3, H, W) -> the float 0-255 pixels it was made from (the image the network sees)."""
        return (x * self.std[:, None, None] + self._mean_for(x)) * 255

    def _mean_for(self, images: torch.Tensor) -> torch.Tensor:
        """The mean broadcast over `images`' (H, W): a larger mean image is cropped at its centre (ImageNet's 224
        crops of 256 images), another size resized to the view (a whole image tested at another scale)."""
        if self.mean.dim() == 1:
            return self.mean[:, None, None]
        height, width = images.shape[-2:]
        if self.mean.shape[-2:] == (height, width):
            return self.mean
        if self.mean.shape[-2] >= height and self.mean.shape[-1] >= width:
            top, left = (self.mean.shape[-2] - height) // 2, (self.mean.shape[-1] - width) // 2
            return self.mean[:, top:top + height, left:left + width]
        return F.interpolate(self.mean[None], size=(height, width), mode="bilinear", align_corners=False)[0]


def rgb_components(images: torch.Tensor, sizes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (3,) and eigenvectors (3, 3; one per column) of the covariance of the RGB values of `images`'
    pixels (within their `sizes`), [0, 1] units: the axes of AlexNet's colour augmentation [21]."""
    moment, total, count = torch.zeros(3, 3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), 0
    for _, group in same_size_groups(images, sizes):
        for chunk in group.split(64):  # float64 copies of every pixel at once would not fit
            pixels = chunk.transpose(0, 1).reshape(3, -1).double().cpu() / 255  # (3, pixels)
            moment += pixels @ pixels.T
            total += pixels.sum(1)
            count += pixels.shape[1]
    mean = total / count
    values, vectors = torch.linalg.eigh(moment / count - torch.outer(mean, mean))
    return values.clamp(min=0).float(), vectors.float()


def lighting(images: torch.Tensor, generator: torch.Generator, values: torch.Tensor, vectors: torch.Tensor,
             alpha_std: float = 0.1) -> torch.Tensor:
    """§3.4's "standard color augmentation in [21]": each image, float (B, 3, H, W) 0-255, shifted by
    sum_i alpha_i * lambda_i * p_i with alpha_i ~ N(0, `alpha_std`), p_i, lambda_i the training set's RGB
    eigenvectors and the spread along them. AlexNet writes the eigenvalue; its square root (a standard deviation,
    in pixel units) keeps the shift the same whatever scale the pixels are measured in."""
    alphas = torch.randn(images.shape[0], 3, generator=generator) * alpha_std  # (B, 3)
    shift = (alphas * values.sqrt()) @ vectors.T * 255  # (B, 3): vectors' columns are the p_i
    return images + shift.to(images.device)[:, :, None, None]


# Table 4 / §3.4: "the fully-convolutional form as in [41, 13], and average the scores at multiple scales (images are
# resized such that the shorter side is in {224, 256, 384, 480, 640})".
TEST_SCALES = (224, 256, 384, 480, 640)


@dataclass(frozen=True)
class Pipeline:
    """How a recipe turns uint8 images into a network's float input, on the images' device.

    Every method takes the images' `sizes` (B, 2), for images of different sizes stored at the top left of one
    tensor (image folders for ImageNet nets); None: every image fills the tensor.
    """

    augmentation: str  # "pad-crop" (§4.2) or "scale-crop" (§3.4)
    crop: int  # network input side, pixels
    normalization: Normalization
    scale_range: tuple[int, int] = (256, 480)
    # AlexNet's colour augmentation (§3.4): eigenvalues (3,) and eigenvectors (3, 3) of the training pixels' RGB
    # covariance; None: no colour augmentation (§4.2 has none).
    rgb_components: tuple[torch.Tensor, torch.Tensor] | None = None
    test_scales: tuple[int, ...] = TEST_SCALES  # shorter sides of the multi-scale test, pixels

    @classmethod
    def for_recipe(cls, recipe, data: ImageData, input_size: int, *, normalization: Normalization | None = None,
                   training: bool = False) -> "Pipeline":
        """The pipeline `recipe` trains and tests with on `data`; `normalization` (e.g. what a checkpoint records)
        replaces the recipe's normalisation with `data`'s statistics. `training` adds what only training needs (the
        colour augmentation's components, one pass over the training images)."""
        normalization = (normalization.to(data.pixel_mean.device) if normalization is not None
                         else Normalization.of(recipe.normalization, data))
        components = (rgb_components(data.train_images, data.train_sizes)
                      if training and recipe.augmentation == "scale-crop" else None)
        return cls(recipe.augmentation, input_size, normalization, tuple(recipe.scale_range), components)

    @property
    def test_size(self) -> int:
        """The shorter side test images are resized to before their crops: 256 for 224 crops (§3.4, [21])."""
        return self.crop if self.augmentation == "pad-crop" else eval_side(self.crop)

    def train_batch(self, images: torch.Tensor, generator: torch.Generator,
                    sizes: torch.Tensor | None = None) -> torch.Tensor:
        if self.augmentation == "scale-crop":
            crops = scale_crop_flip(images, generator, self.crop, self.scale_range, sizes)
            if self.rgb_components is not None:
                crops = lighting(crops, generator, *self.rgb_components)
            return self.normalization(crops)
        images = center_crop(images, self.crop)
        if self.normalization.kind == "per-pixel":
            # §4.2: the mean image is subtracted first, so the 4 padded pixels are the mean pixel (0 after
            # subtraction) and every crop's pixels line up with their own mean.
            return pad_crop_flip(self.normalization(images), generator)
        return self.normalization(pad_crop_flip(images, generator))  # black padding, as it always was

    def test_batch(self, images: torch.Tensor, sizes: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, crop, crop): the central crop of each image resized to `test_size`."""
        return self.normalization(self._views(images, sizes, center_crop))

    def ten_crop_batch(self, images: torch.Tensor, sizes: torch.Tensor | None = None) -> torch.Tensor:
        """(10, B, 3, crop, crop): the views whose softmax scores 10-crop testing averages."""
        return self.normalization(self._views(images, sizes, ten_crops)).transpose(0, 1)

    def _views(self, images: torch.Tensor, sizes: torch.Tensor | None, cut) -> torch.Tensor:
        """`cut(resized, crop)` of every image resized to `test_size`, a size of image at a time, in image order."""
        views = None
        for indices, group in same_size_groups(images, sizes):
            if min(group.shape[-2:]) != self.test_size:
                group = resize_shorter(group, self.test_size)
            cuts = cut(group, self.crop).float()  # resized groups are float, others uint8: one dtype for all
            cuts = cuts.transpose(0, 1) if cuts.dim() == 5 else cuts  # image first: (B, 10, …) for ten crops
            if views is None:
                views = cuts.new_empty((images.shape[0], *cuts.shape[1:]))
            views[indices] = cuts
        return views

    def multi_scale_views(self, images: torch.Tensor, sizes: torch.Tensor | None = None):
        """(indices, views (2, n, 3, H, W)) per size of image and shorter side in `test_scales`: the whole images
        resized, and their mirrors."""
        for indices, group in same_size_groups(images, sizes):
            for scale in self.test_scales:
                resized = resize_shorter(group, scale)
                yield indices, torch.stack([self.normalization(resized), self.normalization(resized.flip(-1))])


def eval_side(crop: int) -> int:
    """The shorter side an ImageNet net's test images are resized to: 256 for 224 crops (§3.4, [21])."""
    return crop * 256 // 224


def resize_shorter(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, H, W) uint8 -> float 0-255, shorter side `size`, aspect ratio kept, the longer side rounded down as
    torchvision's `resize` does (bilinear, antialiased when shrinking)."""
    height, width = images.shape[-2:]
    shorter = min(height, width)
    new_size = (height * size // shorter, width * size // shorter)
    return F.interpolate(images.float(), size=new_size, mode="bilinear", antialias=True, align_corners=False)
