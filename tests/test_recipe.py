"""The paper's recipes, their short-run scaling, and the ResNet-110 warm-up in a real loop."""
import pytest

from resnet_core.data import synthetic_data
from resnet_core.errors import UserError
from resnet_core.recipe import IMAGENET_RECIPE, Recipe, paper_recipe
from resnet_core.specs import get_spec
from resnet_core.train import TrainMetrics, train


def test_defaults_are_section_4_2():
    recipe = Recipe()
    assert (recipe.batch_size, recipe.lr, recipe.momentum, recipe.weight_decay) == (128, 0.1, 0.9, 1e-4)
    assert recipe.lr_milestones == (32_000, 48_000) and recipe.iterations == 64_000
    assert [recipe.lr_at(i) for i in (0, 31_999, 32_000, 47_999, 48_000, 63_999)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_resnet110_warms_up_and_imagenet_nets_get_section_3_4():
    assert paper_recipe(get_spec("resnet56")).warmup_lr is None
    warm = paper_recipe(get_spec("resnet110"))
    assert warm.warmup_lr == 0.01 and warm.lr_at(0, warming_up=True) == 0.01 and warm.lr_at(0) == 0.1
    assert paper_recipe(get_spec("resnet50")) == IMAGENET_RECIPE
    assert (IMAGENET_RECIPE.batch_size, IMAGENET_RECIPE.iterations, IMAGENET_RECIPE.schedule) == (256, 600_000, "plateau")
    assert IMAGENET_RECIPE.scale_range == (256, 480) and IMAGENET_RECIPE.per_pixel_mean


def test_short_runs_keep_milestones_at_half_and_three_quarters():
    assert Recipe().shortened(iterations=100).lr_milestones == (50, 75)
    ten_epochs = Recipe().shortened(epochs=10, train_images=50_000)
    assert ten_epochs.iterations == 3900 and ten_epochs.lr_milestones == (1950, 2925)  # 390 iterations per epoch
    assert Recipe.from_dict(ten_epochs.to_dict()) == ten_epochs


@pytest.mark.parametrize("call, message", [
    (lambda: Recipe().shortened(iterations=10, epochs=1, train_images=1000), "either"),
    (lambda: Recipe().shortened(epochs=1, train_images=100), "must not exceed"),
    (lambda: Recipe(lr=-1.0), "positive"),
    (lambda: Recipe(batch_size=0), "at least 1"),
])
def test_bad_recipes_say_what_is_allowed(call, message):
    with pytest.raises(UserError, match=message):
        call()


def test_warm_up_holds_0_01_until_training_error_is_below_80_percent():
    recipe = Recipe(batch_size=32, warmup_lr=0.01, eval_interval=1000).shortened(iterations=80)
    records = [r for r in train(get_spec("resnet8"), synthetic_data(256, 32), recipe, precision="fp32")
               if isinstance(r, TrainMetrics)]
    ended = next(i for i, r in enumerate(records) if r.smoothed_error < 0.8)
    assert 0 < ended < 39  # the first milestone is at 40
    assert all(r.lr == 0.01 for r in records[:ended + 1])
    assert all(r.lr == 0.1 for r in records[ended + 1:40])
    assert records[40].lr == pytest.approx(0.01) and records[60].lr == pytest.approx(0.001)
