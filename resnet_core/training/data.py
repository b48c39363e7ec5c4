"""Datasets decoded once into uint8 tensors; `augment` turns their batches into a network's input.

Decoding is the slow part (image folders are read by Pillow, as uploads are: ~16 s for CIFAR-10's 50k JPEGs on one
core), so a decoded dataset is cached as a safetensors file under the data folder and the next run loads it in well
under a second.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import pickle
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.nn import functional as F

from ..errors import DatasetError
from ..home import resolve_home
from .augment import eval_side, resize_shorter, resize_square, square_views
from .image_files import ALLOWED_EXTENSIONS, InvalidImageError, image_tensor

logger = logging.getLogger(__name__)

BUILTIN_SOURCES = ("cifar10", "cifar100", "synthetic")
# What load_image reads; anything else in a class folder is ignored, as ImageFolder does.
IMAGE_SUFFIXES = tuple(f".{extension}" for extension in ALLOWED_EXTENSIONS)
CACHE_FORMAT = 3  # bump when the cached tensors change meaning (2: image folders for ImageNet nets keep their
# aspect; 3: up to MAX_ASPECT)
# §3.4 samples shorter sides up to 480: image folders for ImageNet nets are stored with their shorter side brought down
# to this (a smaller one is kept: upsampling happens per batch, on the device), aspect ratio kept.
IMAGENET_SHORTER_SIDE = 480
# Every stored image gets the canvas of the tallest and the widest (`_canvas`): one 480 x 4000 panorama beside one
# portrait would make each image of the folder 4000 x 4000 (48 MB). Longer sides are cut to this many times the
# shorter one (2:1; photographs are 4:3 to 16:9), so a canvas stays within 960 x 960.
MAX_ASPECT = 2
SOURCE_HELP = "cifar10, cifar100, synthetic, or a folder with train/<class>/ and test/<class>/ images"


@dataclass(frozen=True)
class ImageData:
    """A labelled train/test pair held as uint8 tensors (N, 3, S, S) and int64 labels (N,).

    `name` labels every result made from it ("cifar10", "synthetic", or the folder's path).
    `pixel_mean` (3, S, S) and `channel_std` (3,) are training-set statistics in [0, 1] units.
    Images of different sizes (image folders for ImageNet nets) sit at the top left of their tensors, zero-padded
    to the largest; `train_sizes` and `test_sizes` (N, 2) hold each one's (height, width), and their statistics are
    those of AlexNet's 256 x 256 views (shorter side to S, centre square). None: every image fills its tensor.
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
    train_sizes: torch.Tensor | None = None
    test_sizes: torch.Tensor | None = None

    @property
    def image_size(self) -> int:
        return self.train_images.shape[-1]

    @property
    def channel_mean(self) -> torch.Tensor:
        return self.pixel_mean.mean(dim=(1, 2))

    def to(self, device: torch.device | str) -> "ImageData":
        return replace(self, **{key: getattr(self, key).to(device) for key in TENSORS if getattr(self, key) is not None})

    def with_validation_split(self, size: int = 5000, seed: int = 0) -> "ImageData":
        """Hold out `size` training images as the evaluation set (§4.2: a 45k/5k split); the test set is dropped."""
        count = len(self.train_labels)
        if not 0 < size < count:
            raise DatasetError(f"The validation split must hold between 1 and {count - 1} images; got {size}.")
        order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).to(self.train_labels.device)
        held, kept = order[:size], order[size:]
        sizes = self.train_sizes
        # §4.2's mean image is of the images trained on: the held-out ones leave the statistics too.
        pixel_mean, channel_std = statistics(self.train_images[kept], None if sizes is None else sizes[kept],
                                             self.pixel_mean.shape[-1])
        return replace(self, train_images=self.train_images[kept], train_labels=self.train_labels[kept],
                       test_images=self.train_images[held], test_labels=self.train_labels[held],
                       pixel_mean=pixel_mean.to(self.pixel_mean.device),
                       channel_std=channel_std.to(self.channel_std.device), test_split="validation",
                       train_sizes=None if sizes is None else sizes[kept],
                       test_sizes=None if sizes is None else sizes[held])


# ImageData's tensors, as the cache stores them (the sizes only where images differ in size).
TENSORS = ("train_images", "train_labels", "test_images", "test_labels", "pixel_mean", "channel_std", "train_sizes",
           "test_sizes")


def check_classes(data: ImageData, net: str, num_classes: int, classes: tuple[str, ...] | None = None) -> None:
    """Refuse in one line data whose classes are not the ones `net` learned: their number, and their names (in label
    order) where its checkpoint records them. A class folder added, removed or renamed since training would
    otherwise give labels that mean other classes."""
    if len(data.classes) != num_classes:
        raise DatasetError(f"{data.name} has {len(data.classes)} classes but {net} was trained on {num_classes}; "
                           "pass the dataset it was trained on.")
    if classes is not None and tuple(classes) != data.classes:
        new, gone = [name for name in data.classes if name not in classes], [name for name in classes
                                                                               if name not in data.classes]
        raise DatasetError(f"{data.name}'s classes are not the ones {net} was trained on (new: {', '.join(new)}; "
                           f"gone: {', '.join(gone)}); pass the dataset it was trained on.")


def stored_size(family: str, input_size: int) -> int:
    """Side of the cached square images: the input size for CIFAR nets; for ImageNet nets the 256/224 margin that
    the test-time center and 10 crops cut from (§3.4)."""
    return input_size if family == "cifar" else eval_side(input_size)


def storage(family: str, input_size: int) -> dict:
    """`load_data`'s size arguments for a net of `family` and `input_size`: CIFAR and synthetic images as squares of
    `stored_size`; image folders for ImageNet nets also keep their aspect, shorter side up to IMAGENET_SHORTER_SIDE
    (§3.4's scale jitter reads them at up to 480)."""
    sizes = {"image_size": stored_size(family, input_size)}
    return sizes if family == "cifar" else {**sizes, "shorter_side": IMAGENET_SHORTER_SIDE}


def load_data(source: str, *, image_size: int = 32, home: str | os.PathLike | None = None,
              synthetic_sizes: tuple[int, int] = (2048, 512), shorter_side: int | None = None) -> ImageData:
    """Load `source` (cifar10, cifar100, synthetic, or an image-folder path) as square images of `image_size`; with
    `shorter_side`, an image folder keeps each image's aspect ratio and its shorter side up to `shorter_side`
    (ImageData's sizes), with statistics of `image_size` squares. `storage(family, input_size)` gives both for a net.

    CIFAR downloads once into `<home>/datasets` (or reads the official files already there); decoded
    datasets are cached in `<home>/cache`. `synthetic_sizes` are its train and test image counts.
    """
    home_dir = resolve_home(home)
    if source == "synthetic":
        return synthetic_data(*synthetic_sizes, image_size=image_size)
    if source in ("cifar10", "cifar100"):
        return _cached(home_dir, f"{source}-{image_size}", [cifar_folder(source, home_dir)],
                       lambda: _decode_cifar(source, home_dir / "datasets", image_size), source)
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"Unknown dataset {source!r}; allowed: {SOURCE_HELP}.")
    folder = folder.resolve()
    return _cached(home_dir, f"folder-{image_size}-{shorter_side}-{folder}", _watched_paths(folder),
                   lambda: _decode_folder(folder, image_size, shorter_side), str(folder))


def _cached(home: Path, key: str, watched: list[Path], decode, name: str) -> ImageData:
    """Decode once; reuse while the watched folders and files keep their modification times and sizes."""
    from safetensors.torch import load_file, save_file

    stamps = [(str(path), *_stamp(path)) for path in watched]
    digest = hashlib.sha256(json.dumps([CACHE_FORMAT, key, stamps]).encode()).hexdigest()[:20]
    path = home / "cache" / f"{digest}.safetensors"
    if path.exists():
        try:
            tensors = load_file(path)  # no sizes stored: every image fills its tensor
            with open(path, "rb") as handle:  # the class names ride in the header's metadata
                header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
            classes = tuple(json.loads(header["__metadata__"]["classes"]))
            return ImageData(name=name, classes=classes, **tensors)
        except Exception as error:  # a cache torn by a crash is only a cache: decode again
            logger.warning("Decoding %s again: its cache %s cannot be read (%s: %s).", name, path,
                           type(error).__name__, error)
            path.unlink(missing_ok=True)
    data = replace(decode(), name=name)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One temporary file per thread: two sessions of the app (threads of one process) may decode the same data at
    # once; the second rename then replaces the first's file with the same bytes.
    tmp = path.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
    tensors = {key: getattr(data, key).contiguous() for key in TENSORS if getattr(data, key) is not None}
    save_file(tensors, tmp, metadata={"classes": json.dumps(list(data.classes)), "source": name})
    os.replace(tmp, path)
    return data


def _stamp(path: Path) -> tuple[int, int] | tuple[None]:
    try:
        status = path.stat()
    except FileNotFoundError:  # e.g. CIFAR not downloaded yet
        return (None,)
    return status.st_mtime_ns, status.st_size


def statistics(train_images: torch.Tensor, sizes: torch.Tensor | None = None,
               size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean image (3, S, S) and the per-channel standard deviation (3,) of uint8 images, [0, 1] units; images of
    `sizes` (see ImageData) count by their `size`-square views."""
    if sizes is not None:
        train_images = square_views(train_images, sizes, size)
    pixel_mean = torch.zeros(train_images.shape[1:], dtype=torch.float64)
    square_mean = torch.zeros(3, dtype=torch.float64)
    for chunk in train_images.split(4096):  # float copies of 50k images would cost 600 MB at once
        scaled = chunk.double().cpu() / 255
        pixel_mean += scaled.sum(0)
        square_mean += scaled.pow(2).sum(dim=(0, 2, 3))
    count = len(train_images)
    pixel_mean /= count
    square_mean /= count * train_images.shape[2] * train_images.shape[3]
    channel_std = (square_mean - pixel_mean.mean(dim=(1, 2)).pow(2)).sqrt()
    return pixel_mean.float(), channel_std.float()


def _with_statistics(name: str, classes, train_images, train_labels, test_images, test_labels,
                     train_sizes: torch.Tensor | None = None, test_sizes: torch.Tensor | None = None,
                     size: int | None = None) -> ImageData:
    return ImageData(name, tuple(classes), train_images, train_labels.long(), test_images, test_labels.long(),
                     *statistics(train_images, train_sizes, size), train_sizes=train_sizes, test_sizes=test_sizes)


# ---------------------------------------------------------------------------------------- sources
# The folders of the official Python versions, as their archives extract them.
CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def cifar_folder(source: str, home: Path) -> Path:
    """Where `load_data` keeps, or looks for, the official files of `source` (cifar10 or cifar100) under `home`."""
    return home / "datasets" / CIFAR_FOLDERS[source]


def _decode_cifar(source: str, root: Path, image_size: int) -> ImageData:
    from torchvision import datasets

    official = datasets.CIFAR10 if source == "cifar10" else datasets.CIFAR100
    folder = root / CIFAR_FOLDERS[source]
    label = "CIFAR-10" if source == "cifar10" else "CIFAR-100"
    files = [name for name, _ in official.train_list + official.test_list] + [official.meta["filename"]]
    root.mkdir(parents=True, exist_ok=True)
    # Two runs started together would both download into the same archive file: the second waits for the first,
    # then finds the files there.
    with open(root / f".{source}-download.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not all((folder / name).is_file() for name in files):
            try:  # torchvision downloads, checks the archive's md5 and extracts it
                official(str(root), download=True)
            except (OSError, RuntimeError) as error:  # offline, proxy, disk full, 404 …
                raise DatasetError(
                    f"Cannot download {label} ({str(error).splitlines()[0] if str(error) else type(error).__name__})"
                    f"; put the official {official.filename} or its extracted {folder.name} folder in {root} and run "
                    "again, or pass an image folder instead.") from None
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


def _watched_paths(folder: Path) -> list[Path]:
    """What an image folder's cache depends on: its split and class folders (a file added or removed changes their
    modification time) and every image file (one overwritten in place changes only its own)."""
    splits = [folder / "train", folder / "test"]
    classes = [class_dir for split in splits if split.is_dir() for class_dir in _class_dirs(split)]
    return splits + classes + [path for class_dir in classes for path in _image_files(class_dir)]


def _class_dirs(split_dir: Path) -> list[Path]:
    return sorted(path for path in split_dir.iterdir() if path.is_dir() and not _hidden(path.name))


def _image_files(class_dir: Path) -> list[Path]:
    """The images of a class folder and of its subfolders at any depth, as torchvision's ImageFolder finds them
    (links followed, each folder once), by suffix: not folders or dangling links named like images, not dot files
    or dot folders."""
    found, seen = [], set()
    for folder, subfolders, names in os.walk(class_dir, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link back up the tree: walked already
            subfolders.clear()
            continue
        seen.add(real)
        subfolders[:] = [name for name in subfolders if not _hidden(name)]
        found += [path for path in (Path(folder, name) for name in names if not _hidden(name))
                  if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()]
    return sorted(found)


def _hidden(name: str) -> bool:
    """Dot files and folders: e.g. the `._0001.jpg` resource forks a zip from a Mac holds (in `__MACOSX/`, which is
    then a folder without images, and beside the photos), not images, which would stop the whole folder loading."""
    return name.startswith(".")


def list_split(folder: Path, split: str) -> dict[str, list[Path]]:
    """Class name -> image files of `folder`'s `split` (train or test), checked as `load_data` checks them; nothing
    is decoded."""
    split_dir = folder / split
    if not split_dir.is_dir():
        raise DatasetError(f"Image folder {folder} has no {split}/ folder; it needs train/<class>/ and "
                           "test/<class>/ folders of images.")
    listing = {}
    for class_dir in _class_dirs(split_dir):
        files = _image_files(class_dir)
        if files:
            listing[class_dir.name] = files
    if not listing:
        raise DatasetError(f"{split_dir} holds no images; put {', '.join(IMAGE_SUFFIXES)} files in one folder "
                           "per class, like train/cat/0001.jpg.")
    return listing


def _decode_folder(folder: Path, image_size: int, shorter_side: int | None = None) -> ImageData:
    train, test = list_split(folder, "train"), list_split(folder, "test")
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
                try:  # as Classify reads an upload: EXIF orientation, alpha on white, 16-bit scaled, size capped
                    image = image_tensor(path)
                except InvalidImageError as error:
                    raise DatasetError(f"Cannot read image {path}: {error}") from None
                images.append(resize_square(image, image_size) if shorter_side is None else _shrunk(image, shorter_side))
                labels.append(label)
        if shorter_side is None:
            splits.append((torch.cat(images), torch.tensor(labels), None))
        else:
            canvas, sizes = _canvas(images)
            splits.append((canvas, torch.tensor(labels), sizes))
    (train_images, train_labels, train_sizes), (test_images, test_labels, test_sizes) = splits
    return _with_statistics(str(folder), classes, train_images, train_labels, test_images, test_labels,
                            train_sizes, test_sizes, image_size)


def _shrunk(image: torch.Tensor, shorter_side: int) -> torch.Tensor:
    """uint8 (1, 3, H, W) with its shorter side brought down to `shorter_side` (a smaller one kept), aspect kept up to
    MAX_ASPECT: a longer side beyond that is cut to its centre."""
    if min(image.shape[-2:]) > shorter_side:
        image = resize_shorter(image, shorter_side).round().clamp(0, 255).to(torch.uint8)
    height, width = image.shape[-2:]
    longest = MAX_ASPECT * min(height, width)
    top, left = max(0, (height - longest) // 2), max(0, (width - longest) // 2)
    return image[..., top:top + min(height, longest), left:left + min(width, longest)]


def _canvas(images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, H, W) uint8 with each (1, 3, h, w) image at its top left, zeros around, and the sizes (N, 2)."""
    sizes = torch.tensor([image.shape[-2:] for image in images])
    canvas = torch.zeros(len(images), 3, *sizes.max(0).values.tolist(), dtype=torch.uint8)
    for index, image in enumerate(images):
        canvas[index, :, :image.shape[-2], :image.shape[-1]] = image[0]
    return canvas, sizes


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
