"""The paper's recipes, their short-run scaling, and the ResNet-110 warm-up in a real loop."""
import pytest

from resnet_core.errors import UserError
from resnet_core.training.data import synthetic_data
import dataclasses

from resnet_core.nets.specs import get_spec
from resnet_core.training.recipe import (IMAGENET_RECIPE, Recipe, SHORT_RUN_WARMUP_ITERATIONS, paper_recipe,
                                         training_recipe)
from resnet_core.training.train import TrainMetrics, train


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


CIFAR = 50_000  # training images


def test_short_runs_warm_every_net_up_then_anneal_it_linearly():
    for model in ("plain20", "resnet20", "plain56", "resnet56"):  # a pair always trains alike
        recipe = training_recipe(get_spec(model), iterations=500, train_images=CIFAR)
        assert (recipe.kind, recipe.schedule, recipe.warmup_iterations, recipe.lr_milestones) == (
            "short", "linear-decay", SHORT_RUN_WARMUP_ITERATIONS, ())
        assert recipe.warmup_lr is None and recipe.eval_interval == 100  # 5 test points
        assert [recipe.lr_at(i) for i in (0, 149, 299, 300, 400, 499)] == pytest.approx(
            [0.1 / 300, 0.05, 0.1, 0.1, 0.05, 0.1 / 200])
    assert training_recipe(get_spec("resnet8"), iterations=40, train_images=CIFAR).warmup_iterations == 24  # 60 %
    deepest = training_recipe(get_spec("resnet110"), iterations=200, train_images=CIFAR)
    assert (deepest.warmup_lr, deepest.warmup_iterations) == (None, 120)  # the ramp replaces §4.2's 0.01 start
    twelve_epochs = training_recipe(get_spec("resnet56"), epochs=12, train_images=CIFAR)
    assert (twelve_epochs.iterations, twelve_epochs.warmup_iterations) == (4680, SHORT_RUN_WARMUP_ITERATIONS)
    assert twelve_epochs.eval_interval == 390  # once per epoch
    assert twelve_epochs.describe() == ("Short-run recipe: 4,680 iterations of 128; lr rising linearly to 0.1 over "
                                        "the first 300 iterations, then falling linearly to 0 at the end")


def test_the_full_recipe_stays_exactly_the_papers():
    for model in ("resnet20", "plain56", "resnet110"):
        spec = get_spec(model)
        full = training_recipe(spec, iterations=64_000, train_images=CIFAR)
        assert full.kind == "paper" and dataclasses.replace(full, eval_interval=None) == paper_recipe(spec)
    assert training_recipe(get_spec("resnet50"), iterations=1000, train_images=1_281_167) == \
        dataclasses.replace(IMAGENET_RECIPE, iterations=1000)  # ImageNet nets keep §3.4, tested once per epoch
    paper = training_recipe(get_spec("resnet56"), iterations=300, train_images=CIFAR, kind="paper")
    assert (paper.warmup_iterations, paper.lr_milestones, paper.lr_at(0)) == (0, (150, 225), 0.1)


def test_settings_override_the_recipe_and_bad_ones_say_what_is_allowed():
    recipe = training_recipe(get_spec("resnet20"), iterations=300, train_images=CIFAR, batch_size=64, lr=0.05,
                             eval_interval=7)
    assert (recipe.batch_size, recipe.lr, recipe.eval_interval, recipe.lr_at(179)) == (64, 0.05, 7, 0.05)
    for settings, message in (({"kind": "fast"}, "Unknown recipe 'fast'; allowed: short, paper"),
                              ({"batch_size": 0}, "batch_size must be a whole number of at least 1"),
                              ({"lr": 0.0}, "positive")):
        with pytest.raises(UserError, match=message):
            training_recipe(get_spec("resnet20"), iterations=300, train_images=CIFAR, **settings)
    with pytest.raises(UserError, match="short-run recipe is for CIFAR nets; resnet50 trains with §3.4's"):
        training_recipe(get_spec("resnet50"), iterations=300, train_images=CIFAR, kind="short")


def test_a_short_run_ramps_its_lr_up_then_anneals_it_in_a_real_loop():
    recipe = training_recipe(get_spec("resnet8"), iterations=20, train_images=64, batch_size=8, eval_interval=1000)
    records = [r for r in train(get_spec("resnet8"), synthetic_data(64, 8), recipe, precision="fp32")
               if isinstance(r, TrainMetrics)]
    assert [r.lr for r in records] == pytest.approx([0.1 * i / 12 for i in range(1, 13)] +
                                                    [0.1 * (20 - i) / 8 for i in range(12, 20)])


def test_the_paper_recipe_subtracts_the_mean_image_and_a_short_run_normalises_per_channel_unless_told():
    spec = get_spec("resnet56")
    assert training_recipe(spec, iterations=64_000, train_images=CIFAR).normalization == "per-pixel"  # §4.2
    assert training_recipe(spec, iterations=300, train_images=CIFAR, kind="paper").normalization == "per-pixel"
    short = training_recipe(spec, iterations=300, train_images=CIFAR)
    assert short.kind == "short" and short.normalization == "per-channel"  # as docs/SHORT_RUNS.md measured it
    for chosen in ("per-pixel", "per-channel"):
        assert training_recipe(spec, iterations=300, train_images=CIFAR, normalization=chosen).normalization == chosen
    with pytest.raises(UserError, match="Unknown normalisation 'zca'; allowed: per-pixel, per-channel"):
        training_recipe(spec, iterations=300, train_images=CIFAR, normalization="zca")
