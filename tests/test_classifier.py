"""resnet_core.explain.classifier: demo checkpoints and torchvision's ImageNet weights as ready-to-use classifiers."""
import math

import pytest
import torch
from PIL import Image

import resnet_core as rc
from resnet_core.explain import classifier as clf


@pytest.mark.parametrize("name", clf.DEMO_NAMES)
def test_demo_models_load_in_eval_mode_with_cifar_classes(name):
    model = clf.demo_classifier(name)
    assert model.model.spec == rc.get_spec(name) and not model.model.training
    assert model.classes == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    assert 0 < model.test_error < 0.5  # trained for a few epochs: far better than chance (0.9)
    x = model.model_input(Image.new("RGB", (50, 40), (200, 30, 30)))
    assert x.shape == (1, 3, 32, 32)
    top = model.top_k(x)
    assert len(top) == 5 and math.isclose(sum(p for _, p in model.top_k(x, 10)), 1, rel_tol=1e-4)
    assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)


@pytest.fixture
def fake_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path


def test_imagenet_weights_missing_offline_say_where_to_put_them(fake_torch_home):
    with pytest.raises(clf.WeightsUnavailableError) as caught:
        clf.imagenet_classifier("resnet18")
    message = str(caught.value)
    expected = fake_torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert "\n" not in message and str(expected) in message and "download.pytorch.org" in message


def test_imagenet_weights_from_the_torch_cache_load_into_our_torchvision_variant(fake_torch_home):
    from torchvision.models import resnet18

    torch.manual_seed(0)
    reference = resnet18().eval()  # torchvision's own net, randomly initialised: stands in for the real file
    path = clf.imagenet_weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    model = clf.imagenet_classifier("resnet18")
    assert model.model.spec.variant == "torchvision" and not model.model.training
    assert len(model.classes) == 1000 and model.classes[0] == "tench"
    x = model.model_input(Image.new("RGB", (300, 260), (10, 120, 30)))
    assert x.shape == (1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(model.model(x), reference(x), atol=1e-5)


def test_a_damaged_imagenet_file_is_refused(fake_torch_home):
    path = clf.imagenet_weights_path("resnet50")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(rc.InvalidCheckpointError, match="is not torchvision's resnet50 ImageNet weights"):
        clf.imagenet_classifier("resnet50")
