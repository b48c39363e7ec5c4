"""The data path: sources decoded once into uint8 tensors, the cache, batched augmentation, bad folders."""
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_core.errors import DatasetError
from resnet_core.training import data as data_module
from resnet_core.training.augment import Pipeline, epoch_order, iteration_generator, pad_crop_flip, ten_crops
from resnet_core.training.data import list_split, load_data, synthetic_data
from resnet_core.training.image_files import load_image
from resnet_core.training.recipe import Recipe


def write_folder(root, classes=("cat", "dog"), per_class=3, size=(40, 48), test_classes=None):
    rng = np.random.default_rng(0)
    for split, names in (("train", classes), ("test", test_classes or classes)):
        for name in names:
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(per_class):
                pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.{'png' if index % 2 else 'jpg'}")
    return root


def test_synthetic_data_is_labelled_and_shaped():
    data = synthetic_data(64, 32)
    assert data.name == "synthetic" and len(data.classes) == 10
    assert data.train_images.shape == (64, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.test_labels.shape == (32,) and data.test_labels.dtype == torch.int64
    assert torch.equal(synthetic_data(64, 32).train_images, data.train_images)  # no hidden randomness


def test_image_folder_is_resized_cached_and_reloaded_without_decoding(tmp_path, monkeypatch):
    folder = write_folder(tmp_path / "pets")
    data = load_data(str(folder), image_size=32, home=tmp_path / "home")
    assert data.classes == ("cat", "dog")
    assert data.train_images.shape == (6, 3, 32, 32) and data.test_images.shape == (6, 3, 32, 32)
    assert data.train_labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.name == str(folder.resolve())
    assert len(list((tmp_path / "home" / "cache").glob("*.safetensors"))) == 1

    def no_decoding(*args):
        raise AssertionError("decoded again although the cache is fresh")

    monkeypatch.setattr(data_module, "_decode_folder", no_decoding)
    cached = load_data(str(folder), image_size=32, home=tmp_path / "home")
    assert torch.equal(cached.train_images, data.train_images) and cached.classes == data.classes


def test_an_image_overwritten_in_place_is_decoded_again(tmp_path):
    import os

    folder = write_folder(tmp_path / "pets")
    before = load_data(str(folder), image_size=32, home=tmp_path / "home")
    image, class_dir = folder / "train" / "cat" / "0.jpg", folder / "train" / "cat"
    kept = class_dir.stat()
    Image.new("RGB", (48, 40), (0, 255, 0)).save(image)  # same name: the folder's own time may not move
    os.utime(class_dir, ns=(kept.st_atime_ns, kept.st_mtime_ns))
    after = load_data(str(folder), image_size=32, home=tmp_path / "home")
    assert not torch.equal(after.train_images[0], before.train_images[0])
    assert after.train_images[0, 1].float().mean() > 250 and torch.equal(after.train_images[1:], before.train_images[1:])


def test_odd_but_valid_files_in_an_image_folder_are_read_as_classify_reads_them(tmp_path):
    """EXIF rotation, 16-bit samples, alpha, palettes, CMYK, grey, GIF and BMP: the pixels training stores are
    load_image's (torchvision's decoder ignored the rotation and turned 16-bit PNGs white)."""
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    rotated = Image.fromarray(pixels)
    exif = rotated.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    files = {"exif.jpg": lambda path: rotated.save(path, exif=exif, quality=95),
             "deep.png": lambda path: Image.fromarray((rng.integers(0, 65536, (12, 16))).astype(np.uint16)).save(path),
             "alpha.png": lambda path: Image.fromarray(pixels).convert("RGBA").save(path),
             "palette.png": lambda path: Image.fromarray(pixels).convert("P").save(path),
             "cmyk.jpg": lambda path: Image.fromarray(pixels).convert("CMYK").save(path),
             "grey.jpg": lambda path: Image.fromarray(pixels).convert("L").save(path),
             "anim.gif": lambda path: Image.fromarray(pixels).save(path),
             "plain.bmp": lambda path: Image.fromarray(pixels).save(path)}
    for split in ("train", "test"):
        (tmp_path / "odd" / split / "things").mkdir(parents=True)
    for name, write in files.items():
        write(tmp_path / "odd" / "train" / "things" / name)
    write(tmp_path / "odd" / "test" / "things" / "one.bmp")
    data = load_data(str(tmp_path / "odd"), image_size=16, shorter_side=480, home=tmp_path / "home")
    paths = sorted((tmp_path / "odd" / "train" / "things").iterdir())
    assert len(paths) == len(data.train_images) == len(files)
    for index, path in enumerate(paths):
        expected = torch.from_numpy(np.array(load_image(path))).permute(2, 0, 1)
        height, width = data.train_sizes[index].tolist()
        assert torch.equal(data.train_images[index, :, :height, :width], expected), path.name
    assert data.train_sizes[paths.index(tmp_path / "odd" / "train" / "things" / "exif.jpg")].tolist() == [16, 12]
    deep = data.train_images[paths.index(tmp_path / "odd" / "train" / "things" / "deep.png")]
    assert 0 < deep.float().mean() < 250  # scaled to 8 bits, not clipped white


def test_what_macos_editors_and_moves_leave_in_an_image_folder_is_not_read(tmp_path):
    folder = write_folder(tmp_path / "pets")
    (folder / "train" / "cat" / "._0.jpg").write_bytes(b"\x00\x05\x16\x07 Mac OS X resource fork")
    (folder / "train" / "cat" / ".DS_Store").write_bytes(b"Bud1")
    (folder / "train" / "__MACOSX" / "cat").mkdir(parents=True)
    (folder / "train" / "__MACOSX" / "._1.jpg").write_bytes(b"\x00\x05\x16\x07")
    (folder / "train" / ".thumbnails").mkdir()
    (folder / "train" / ".thumbnails" / "0.png").write_bytes(b"not even a png")
    (folder / "train" / "cat" / "album.png").mkdir()  # a folder, not an image, whatever its name
    (folder / "train" / "dog" / "moved.jpg").symlink_to(tmp_path / "gone.jpg")  # a link to nothing
    data = load_data(str(folder), image_size=32, home=tmp_path / "home")
    assert data.classes == ("cat", "dog") and len(data.train_images) == 6


def test_images_in_a_class_folders_subfolders_belong_to_that_class_as_in_imagefolder(tmp_path):
    """torchvision's ImageFolder reads a class folder at any depth; so does this: `cat/indoor/0.jpg` is a cat."""
    import torchvision

    folder = write_folder(tmp_path / "pets")
    nested = folder / "train" / "cat" / "indoor" / "2024"
    nested.mkdir(parents=True)
    for name in ("0.jpg", "1.png"):
        (folder / "train" / "cat" / name).rename(nested / name)
    reference = torchvision.datasets.ImageFolder(str(folder / "train"))
    expected = {name: sorted(Path(path) for path, label in reference.samples if label == index)
                for index, name in enumerate(reference.classes)}
    (folder / "train" / "cat" / "indoor" / ".cache").mkdir()
    (folder / "train" / "cat" / "indoor" / ".cache" / "0.jpg").write_bytes(b"not an image")  # a dot folder's
    (folder / "train" / "dog" / "loop").symlink_to(folder / "train" / "dog")  # a link back up: read once
    assert list_split(folder, "train") == expected and len(expected["cat"]) == 3
    data = load_data(str(folder), image_size=32, home=tmp_path / "home")
    assert data.classes == ("cat", "dog") and data.train_labels.tolist() == [0, 0, 0, 1, 1, 1]
    (nested / "2.jpg").write_bytes((folder / "train" / "dog" / "0.jpg").read_bytes())  # the cache sees it
    assert load_data(str(folder), image_size=32, home=tmp_path / "home").train_labels.tolist() == [0] * 4 + [1] * 3


def test_a_camera_photo_over_the_upload_limit_is_a_folders_own_and_loads(tmp_path):
    # 45 MP: over the 40 MP Classify takes from anyone, an ordinary photo in the owner's own folder.
    folder = write_folder(tmp_path / "pets", size=(60, 80))
    Image.new("RGB", (7500, 6000), (200, 30, 30)).save(folder / "train" / "cat" / "camera.jpg", quality=90)
    data = load_data(str(folder), image_size=32, shorter_side=48, home=tmp_path / "home")
    camera = 3  # after the cat folder's 0.jpg, 1.png, 2.jpg
    assert data.train_sizes[camera].tolist() == [48, 60]  # shrunk to the stored shorter side, aspect kept
    assert data.train_images[camera, :, :48, :60].float().mean(dim=(1, 2)).round().tolist() == [200, 30, 30]


@pytest.mark.parametrize("problem, message", [
    ("empty", "holds no images"),
    ("unknown test class", "appear in"),
    ("unreadable", "Cannot read image"),
    ("no test folder", "has no test/ folder"),
])
def test_bad_image_folders_give_one_line_errors(tmp_path, problem, message):
    folder = tmp_path / "bad"
    if problem == "empty":
        (folder / "train" / "cat").mkdir(parents=True)
        (folder / "test" / "cat").mkdir(parents=True)
    elif problem == "unknown test class":
        write_folder(folder, classes=("cat",), test_classes=("cat", "zebra"))
    elif problem == "unreadable":
        write_folder(folder)
        (folder / "train" / "cat" / "broken.jpg").write_bytes(b"not a jpeg at all")
    else:
        write_folder(folder)
        for path in sorted((folder / "test").rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        (folder / "test").rmdir()
    with pytest.raises(DatasetError, match=message) as caught:
        load_data(str(folder), home=tmp_path / "home")
    assert "\n" not in str(caught.value)


def write_cifar10(root, per_batch=4):
    folder = root / "datasets" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for index, name in enumerate(names):
        batch = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 "labels": [(index + j) % 10 for j in range(per_batch)], "batch_label": name}
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle)
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": classes, "num_cases_per_batch": per_batch}, handle)
    return classes


def test_cifar10_loader_reads_the_official_pickle_format(tmp_path):
    classes = write_cifar10(tmp_path)
    data = load_data("cifar10", home=tmp_path)
    assert data.name == "cifar10" and list(data.classes) == classes
    assert data.train_images.shape == (20, 3, 32, 32) and data.test_images.shape == (4, 3, 32, 32)
    assert data.train_labels[:4].tolist() == [0, 1, 2, 3] and data.test_labels.tolist() == [5, 6, 7, 8]
    with open(tmp_path / "datasets" / "cifar-10-batches-py" / "data_batch_1", "rb") as handle:
        first = pickle.load(handle)["data"][0]
    # Rows are 1024 red, then green, then blue values, row-major (the official layout).
    assert torch.equal(data.train_images[0].flatten(), torch.from_numpy(first))


def test_cifar_offline_gives_a_way_to_provide_the_files(tmp_path, monkeypatch):
    import torchvision.datasets.cifar

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", offline)
    with pytest.raises(DatasetError, match="put the official cifar-10-python.tar.gz") as caught:
        load_data("cifar10", home=tmp_path)
    assert "\n" not in str(caught.value)


def test_two_runs_starting_together_download_cifar_once(tmp_path, monkeypatch):
    """The second loader waits for the first one's download instead of writing into the same archive."""
    import threading

    import torchvision.datasets.cifar

    downloads, first_started = [], threading.Event()

    def slow_download(url, download_root, *args, **kwargs):
        downloads.append(url)
        first_started.set()
        time_for_the_other_loader_to_arrive.wait(10)
        write_cifar10(Path(download_root).parent)

    time_for_the_other_loader_to_arrive = threading.Event()
    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", slow_download)
    # The stand-in files are not the real ones: torchvision's md5 check sees only whether they are there.
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())
    results = []
    first = threading.Thread(target=lambda: results.append(load_data("cifar10", home=tmp_path)))
    first.start()
    assert first_started.wait(10)
    second = threading.Thread(target=lambda: results.append(load_data("cifar10", home=tmp_path)))
    second.start()
    second.join(0.5)
    assert second.is_alive()  # held at the lock while the first download runs
    time_for_the_other_loader_to_arrive.set()
    first.join(30)
    second.join(30)
    assert len(downloads) == 1 and len(results) == 2
    assert torch.equal(results[0].train_images, results[1].train_images)


def test_pad_crop_flip_takes_shifted_windows_reproducibly():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.int64).reshape(2, 3, 8, 8).to(torch.uint8)
    crops = pad_crop_flip(images, torch.Generator().manual_seed(1), padding=2)
    assert crops.shape == images.shape and crops.dtype == torch.uint8
    assert torch.equal(crops, pad_crop_flip(images, torch.Generator().manual_seed(1), padding=2))
    padded = torch.nn.functional.pad(images, (2,) * 4)
    for crop, source in zip(crops, padded):
        windows = [source[:, r:r + 8, c:c + 8] for r in range(5) for c in range(5)]
        assert any(torch.equal(crop, w) or torch.equal(crop, w.flip(-1)) for w in windows)


def test_orders_and_augmentation_depend_only_on_seed_epoch_and_iteration():
    assert torch.equal(epoch_order(100, 3, 7), epoch_order(100, 3, 7))
    assert not torch.equal(epoch_order(100, 3, 7), epoch_order(100, 3, 8))
    assert sorted(epoch_order(100, 3, 7).tolist()) == list(range(100))
    assert torch.equal(torch.rand(4, generator=iteration_generator(0, 5)),
                       torch.rand(4, generator=iteration_generator(0, 5)))


def test_per_channel_test_batches_have_zero_mean_and_unit_std():
    data = synthetic_data(256, 256)
    batch = Pipeline.for_recipe(Recipe(per_pixel_mean=False), data, 32).test_batch(data.train_images)
    assert batch.dtype == torch.float32
    assert batch.mean(dim=(0, 2, 3)).abs().max() < 1e-3
    assert (batch.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-2


def test_validation_split_holds_out_training_images():
    data = synthetic_data(100, 10).with_validation_split(20)
    assert data.test_split == "validation" and len(data.train_labels) == 80 and len(data.test_labels) == 20
    with pytest.raises(DatasetError, match="between 1 and"):
        synthetic_data(100, 10).with_validation_split(100)


def test_ten_crops_are_corners_centre_and_mirrors():
    images = torch.arange(1 * 3 * 10 * 10).reshape(1, 3, 10, 10)
    crops = ten_crops(images, 8)
    assert crops.shape == (10, 1, 3, 8, 8)
    assert torch.equal(crops[0], images[..., :8, :8]) and torch.equal(crops[5], crops[0].flip(-1))
