"""Datasets decoded once into uint8 tensors, and augmentation in batches on the training device.

Decoding is the slow part (50k JPEGs: ~2.5 s, PIL ~8 s), so a decoded dataset is cached as a
safetensors file under the data folder and the next run loads it in well under a second. Augmentation
(§4.2: pad 4 + random 32x32 crop + horizontal flip; §3.4: scale jitter + 224 crop) is a few tensor
ops on a whole batch, ~100k images/s, instead of per-sample PIL transforms in DataLoader workers that
steal the two cores the model needs. Random draws come from generators seeded by (seed, epoch) and
(seed, iteration), so a resumed run sees exactly the batches the uninterrupted one would have.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.nn import functional as F

from .errors import DatasetError

BUILTIN_SOURCES = ("cifar10", "cifar100", "synthetic")
# What torchvision.io decodes natively; anything else in a class folder is ignored, as ImageFolder does.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
CACHE_FORMAT = 1  # bump when the cached tensors change meaning
CIFAR_PADDING = 4  # pixels on each side before the random crop (§4.2)
SOURCE_HELP = "cifar10, cifar100, synthetic, or a folder with train/<class>/ and test/<class>/ images"


@dataclass(frozen=True)
class ImageData:
    """A labelled train/test pair held as uint8 tensors (N, 3, S, S) and int64 labels (N,).

    `name` labels every result made from it ("cifar10", "synthetic", or the folder's path).
    `pixel_mean` (3, S, S) and `channel_std` (3,) are training-set statistics in [0, 1] units.
    """

    name: str
    classes: tuple[str, ...]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    pixel_mean: torch.Tensor
    channel_std: torch.Tensor
    test_split: str = "test"  # "validation" once part of the training set is held out

    @property
    def image_size(self) -> int:
        return self.train_images.shape[-1]

    @property
    def channel_mean(self) -> torch.Tensor:
        return self.pixel_mean.mean(dim=(1, 2))

    def to(self, device: torch.device | str) -> "ImageData":
        tensors = ("train_images", "train_labels", "test_images", "test_labels", "pixel_mean", "channel_std")
        return replace(self, **{key: getattr(self, key).to(device) for key in tensors})

    def with_validation_split(self, size: int = 5000, seed: int = 0) -> "ImageData":
        """Hold out `size` training images as the evaluation set (§4.2: a 45k/5k split); the test set is dropped."""
        count = len(self.train_labels)
        if not 0 < size < count:
            raise DatasetError(f"The validation split must hold between 1 and {count - 1} images; got {size}.")
        order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).to(self.train_labels.device)
        held, kept = order[:size], order[size:]
        return replace(self, train_images=self.train_images[kept], train_labels=self.train_labels[kept],
                       test_images=self.train_images[held], test_labels=self.train_labels[held],
                       test_split="validation")


def stored_size(family: str, input_size: int) -> int:
    """Side of the cached images: the input size for CIFAR nets; for ImageNet nets the 256/224 margin that
    the scale jitter and the test-time center and 10 crops cut from (§3.4)."""
    return input_size if family == "cifar" else input_size * 256 // 224


def load_data(source: str, *, image_size: int = 32, home: str | os.PathLike | None = None,
              synthetic_sizes: tuple[int, int] = (2048, 512)) -> ImageData:
    """Load `source` (cifar10, cifar100, synthetic, or an image-folder path) as square images of `image_size`.

    CIFAR downloads once into `<home>/datasets` (or reads the official files already there); decoded
    datasets are cached in `<home>/cache`. `synthetic_sizes` are its train and test image counts.
    """
    from .store import resolve_home  # the data folder's rules live with the store

    home_dir = resolve_home(home)
    if source == "synthetic":
        return synthetic_data(*synthetic_sizes, image_size=image_size)
    if source in ("cifar10", "cifar100"):
        root = home_dir / "datasets"
        return _cached(home_dir, f"{source}-{image_size}", [root / _CIFAR_FOLDERS[source]],
                       lambda: _decode_cifar(source, root, image_size), source)
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"Unknown dataset {source!r}; allowed: {SOURCE_HELP}.")
    folder = folder.resolve()
    return _cached(home_dir, f"folder-{image_size}-{folder}", _folder_dirs(folder),
                   lambda: _decode_folder(folder, image_size), str(folder))


def _cached(home: Path, key: str, watched: list[Path], decode, name: str) -> ImageData:
    """Decode once; reuse while the watched folders keep their modification times (adding or removing a file
    changes its folder's mtime)."""
    from safetensors.torch import load_file, save_file

    stamps = [(str(path), path.stat().st_mtime_ns if path.exists() else None) for path in watched]
    digest = hashlib.sha256(json.dumps([CACHE_FORMAT, key, stamps]).encode()).hexdigest()[:20]
    path = home / "cache" / f"{digest}.safetensors"
    if path.exists():
        try:
            tensors = load_file(path)
            with open(path, "rb") as handle:  # the class names ride in the header's metadata
                header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
            classes = tuple(json.loads(header["__metadata__"]["classes"]))
            return ImageData(name=name, classes=classes, **tensors)
        except Exception:  # a cache torn by a crash is only a cache: decode again
            path.unlink(missing_ok=True)
    data = replace(decode(), name=name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tensors = {key: getattr(data, key).contiguous() for key in (
        "train_images", "train_labels", "test_images", "test_labels", "pixel_mean", "channel_std")}
    save_file(tensors, tmp, metadata={"classes": json.dumps(list(data.classes)), "source": name})
    os.replace(tmp, path)
    return data


def _with_statistics(name: str, classes, train_images, train_labels, test_images, test_labels) -> ImageData:
    pixel_mean = torch.zeros(train_images.shape[1:], dtype=torch.float64)
    square_mean = torch.zeros(3, dtype=torch.float64)
    for chunk in train_images.split(4096):  # float copies of 50k images would cost 600 MB at once
        scaled = chunk.double() / 255
        pixel_mean += scaled.sum(0)
        square_mean += scaled.pow(2).sum(dim=(0, 2, 3))
    count = len(train_images)
    pixel_mean /= count
    square_mean /= count * train_images.shape[2] * train_images.shape[3]
    channel_std = (square_mean - pixel_mean.mean(dim=(1, 2)).pow(2)).sqrt()
    return ImageData(name, tuple(classes), train_images, train_labels.long(), test_images, test_labels.long(),
                     pixel_mean.float(), channel_std.float())


def resize_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """Shorter side to `size`, then the central square: uint8 (B, 3, H, W) -> (B, 3, size, size)."""
    height, width = images.shape[-2:]
    if (height, width) == (size, size):
        return images
    scale = size / min(height, width)
    new_size = (max(size, round(height * scale)), max(size, round(width * scale)))
    resized = F.interpolate(images.float(), size=new_size, mode="bilinear", antialias=True, align_corners=False)
    top, left = (new_size[0] - size) // 2, (new_size[1] - size) // 2
    return resized[..., top:top + size, left:left + size].round().clamp(0, 255).to(torch.uint8)


# ---------------------------------------------------------------------------------------- sources
_CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def _decode_cifar(source: str, root: Path, image_size: int) -> ImageData:
    from torchvision import datasets

    official = datasets.CIFAR10 if source == "cifar10" else datasets.CIFAR100
    folder = root / _CIFAR_FOLDERS[source]
    label = "CIFAR-10" if source == "cifar10" else "CIFAR-100"
    files = [name for name, _ in official.train_list + official.test_list] + [official.meta["filename"]]
    if not all((folder / name).is_file() for name in files):
        try:  # torchvision downloads, checks the archive's md5 and extracts it
            official(str(root), download=True)
        except (OSError, RuntimeError) as error:  # offline, proxy, disk full, 404 …
            raise DatasetError(
                f"Cannot download {label} ({str(error).splitlines()[0] if str(error) else type(error).__name__}); "
                f"put the official {official.filename} or its extracted {folder.name} folder in {root} and run again, "
                "or pass an image folder instead.") from None
    # Read the files as torchvision does, without its md5 pass over 180 MB: files a user placed by hand
    # (or a test wrote in the official format) load too, and a damaged one fails to unpickle.
    try:
        splits = [_read_cifar_batches(folder, [name for name, _ in names])
                  for names in (official.train_list, official.test_list)]
        with open(folder / official.meta["filename"], "rb") as handle:
            classes = pickle.load(handle, encoding="latin1")[official.meta["key"]]
    except Exception as error:  # pickle, numpy and key errors from a damaged file
        raise DatasetError(f"Cannot read {label} from {folder} ({type(error).__name__}: {error}); delete that folder "
                           "to download it again.") from None
    (train_images, train_labels), (test_images, test_labels) = [
        (resize_square(images, image_size), labels) for images, labels in splits]
    return _with_statistics(source, classes, train_images, train_labels, test_images, test_labels)


def _read_cifar_batches(folder: Path, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name in names:
        with open(folder / name, "rb") as handle:
            entry = pickle.load(handle, encoding="latin1")
        images.append(torch.from_numpy(entry["data"]).reshape(-1, 3, 32, 32))  # rows: 1024 R, 1024 G, 1024 B
        labels += entry["labels"] if "labels" in entry else entry["fine_labels"]
    return torch.cat(images), torch.tensor(labels)


def _folder_dirs(folder: Path) -> list[Path]:
    dirs = [folder / "train", folder / "test"]
    return dirs + sorted(child for split in dirs if split.is_dir() for child in split.iterdir() if child.is_dir())


def _list_split(folder: Path, split: str) -> dict[str, list[Path]]:
    split_dir = folder / split
    if not split_dir.is_dir():
        raise DatasetError(f"Image folder {folder} has no {split}/ folder; it needs train/<class>/ and "
                           "test/<class>/ folders of images.")
    listing = {}
    for class_dir in sorted(path for path in split_dir.iterdir() if path.is_dir()):
        files = sorted(path for path in class_dir.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            listing[class_dir.name] = files
    if not listing:
        raise DatasetError(f"{split_dir} holds no images; put {', '.join(IMAGE_SUFFIXES)} files in one folder "
                           "per class, like train/cat/0001.jpg.")
    return listing


def _decode_folder(folder: Path, image_size: int) -> ImageData:
    from torchvision.io import ImageReadMode, decode_image

    train, test = _list_split(folder, "train"), _list_split(folder, "test")
    unknown = sorted(set(test) - set(train))
    if unknown:
        raise DatasetError(f"Classes {', '.join(unknown)} appear in {folder / 'test'} but not in "
                           f"{folder / 'train'}; every test class needs training images.")
    classes = sorted(train)
    splits = []
    for listing in (train, test):
        images, labels = [], []
        for label, name in enumerate(classes):
            for path in listing.get(name, []):
                try:
                    image = decode_image(str(path), mode=ImageReadMode.RGB)
                except Exception as error:
                    raise DatasetError(f"Cannot read image {path} ({str(error).splitlines()[0]}); image folders "
                                       "may hold only readable JPEG, PNG or WebP files.") from None
                images.append(resize_square(image.unsqueeze(0), image_size))
                labels.append(label)
        splits.append((torch.cat(images), torch.tensor(labels)))
    return _with_statistics(str(folder), classes, splits[0][0], splits[0][1], splits[1][0], splits[1][1])


def synthetic_data(train_size: int = 2048, test_size: int = 512, *, image_size: int = 32, num_classes: int = 10,
                   seed: int = 0) -> ImageData:
    """Ten classes of smooth colour patterns under heavy noise: no download, learnable in a few dozen
    iterations, and unlearnable without looking at the image (every class has the same mean brightness)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(num_classes, 3, 4, 4, generator=generator)
    templates = F.interpolate(coarse, size=(image_size, image_size), mode="bilinear", align_corners=False)
    templates = templates - templates.mean(dim=(1, 2, 3), keepdim=True)

    def draw(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(num_classes, (count,), generator=generator)
        noise = torch.randn(count, 3, image_size, image_size, generator=generator)
        images = 128 + 40 * templates[labels] + 50 * noise
        return images.round().clamp(0, 255).to(torch.uint8), labels

    train, test = draw(train_size), draw(test_size)
    return _with_statistics("synthetic", [f"pattern{i}" for i in range(num_classes)], *train, *test)


# ---------------------------------------------------------------------------------------- batches
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
                    scale_range: tuple[int, int] = (256, 480)) -> torch.Tensor:
    """§3.4: shorter side resized at random in `scale_range` (one scale per batch, so the batch stays one
    tensor), a random `crop`-square, flipped half the time: uint8 (B, 3, S, S) -> (B, 3, crop, crop)."""
    batch = images.shape[0]
    scale = int(torch.randint(scale_range[0], scale_range[1] + 1, (1,), generator=generator))
    scaled = resize_square(images, scale)
    top, left = torch.randint(scale - crop + 1, (2,), generator=generator).tolist()
    crops = scaled[..., top:top + crop, left:left + crop]
    flips = (torch.rand(batch, generator=generator) < 0.5).to(images.device)[:, None, None, None]
    return torch.where(flips, crops.flip(-1), crops)


def center_crop(images: torch.Tensor, crop: int) -> torch.Tensor:
    offset = (images.shape[-1] - crop) // 2
    return images[..., offset:offset + crop, offset:offset + crop]


def ten_crops(images: torch.Tensor, crop: int) -> torch.Tensor:
    """The standard 10-crop test (§3.4, [21]): four corners and the centre, and their mirrors: (10, B, 3, crop, crop)."""
    size = images.shape[-1]
    corners = [(0, 0), (0, size - crop), (size - crop, 0), (size - crop, size - crop)]
    crops = [images[..., top:top + crop, left:left + crop] for top, left in corners] + [center_crop(images, crop)]
    return torch.stack(crops + [view.flip(-1) for view in crops])


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 (x/255 - mean) / std; `mean` is (3,) per channel (§4.2) or (3, S, S) per pixel (§3.4)."""
    if mean.dim() == 1:
        mean = mean[:, None, None]
    return (images.float() / 255 - mean) / std[:, None, None]


@dataclass(frozen=True)
class Pipeline:
    """How a recipe turns uint8 images into a network's float input, on the images' device."""

    augmentation: str  # "pad-crop" (§4.2) or "scale-crop" (§3.4)
    crop: int  # network input side, pixels
    mean: torch.Tensor  # (3,) per channel or (3, crop, crop) per pixel, [0, 1] units
    std: torch.Tensor  # (3,)
    scale_range: tuple[int, int] = (256, 480)

    @classmethod
    def for_recipe(cls, recipe, data: ImageData, input_size: int) -> "Pipeline":
        if recipe.per_pixel_mean:  # §3.4 subtracts the mean image and does not divide
            return cls(recipe.augmentation, input_size, center_crop(data.pixel_mean, input_size),
                       torch.ones(3, device=data.pixel_mean.device), tuple(recipe.scale_range))
        return cls(recipe.augmentation, input_size, data.channel_mean, data.channel_std, tuple(recipe.scale_range))

    def train_batch(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.augmentation == "scale-crop":
            crops = scale_crop_flip(images, generator, self.crop, self.scale_range)
        else:
            crops = pad_crop_flip(center_crop(images, self.crop), generator)
        return normalize(crops, self.mean, self.std)

    def test_batch(self, images: torch.Tensor) -> torch.Tensor:
        return normalize(center_crop(images, self.crop), self.mean, self.std)

    def ten_crop_batch(self, images: torch.Tensor) -> torch.Tensor:
        """(10, B, 3, crop, crop): the views whose softmax scores 10-crop testing averages."""
        return normalize(ten_crops(images, self.crop), self.mean, self.std)
