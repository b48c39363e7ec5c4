"""The experiments' subcommands of `python -m resnet_core`: lesion, landscape, shattering.

    python -m resnet_core lesion reference:resnet56 --data cifar10 --images 1000 --random-k 10 --json
    python -m resnet_core landscape 3 --data synthetic --dims 2 --points 21 --json
    python -m resnet_core shattering --depths 8,20,56,110 --json

MODEL is a run id, `reference:NET` (a shipped reference net) or a checkpoint path (`explain.trained`). The
parsers are built without importing torch (the `runs` command must stay quick); each handler imports its
experiment. Progress goes to stderr, so `--json` stays parseable. Nothing here writes to the store.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import TYPE_CHECKING

from .. import arguments
from ..errors import UserError
from ..json_output import json_text

if TYPE_CHECKING:
    from ..progress import ProgressLine

MODEL_HELP = "a run id, reference:NET (plain20, resnet20, plain56, resnet56) or a checkpoint path"


def add_commands(commands, with_home) -> None:
    """Add the three subcommands, each with its handler as the `handler` default, to `commands` (subparsers)."""
    lesion = with_home(commands.add_parser(
        "lesion", help="delete blocks of a trained net at test time and measure its error (Veit et al. 2016)"))
    lesion.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    lesion.add_argument("--data", required=True, metavar="SOURCE", help="the dataset the net was trained on")
    lesion.add_argument("--images", type=int, metavar="N", help="test images (default 1000, or all of a smaller set)")
    lesion.add_argument("--random-k", type=int, default=0, metavar="K",
                        help="also delete k = 1…K random blocks at once (default 0: single blocks only)")
    lesion.add_argument("--draws", type=int, default=10, metavar="D", help="random draws per k (default 10)")
    lesion.add_argument("--seed", type=arguments.seed, default=0)
    lesion.add_argument("--json", action="store_true", help="print the result as JSON (errors as fractions)")
    arguments.add_quiet(lesion)

    landscape = with_home(commands.add_parser(
        "landscape", help="training loss around a trained net's weights along filter-normalised random directions "
                          "(Li et al. 2018)"))
    landscape.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    landscape.add_argument("--data", required=True, metavar="SOURCE", help="the dataset the net was trained on")
    landscape.add_argument("--dims", type=int, choices=(1, 2), default=1, help="a 1-D slice or a 2-D surface")
    landscape.add_argument("--points", type=int, default=41, metavar="P", help="points per axis (default 41)")
    landscape.add_argument("--span", type=float, default=1.0, metavar="S",
                           help="step sizes from -S to S along each direction (default 1)")
    landscape.add_argument("--images", type=int, metavar="N",
                           help="training images, a fixed subset (default 1000, or all of a smaller set)")
    landscape.add_argument("--seed", type=arguments.seed, default=0, help="seed of the directions and the subset")
    landscape.add_argument("--json", action="store_true", help="print the result as JSON")
    arguments.add_quiet(landscape)

    shattering = commands.add_parser(
        "shattering", help="gradient autocorrelation of plain and residual nets at initialisation "
                           "(Balduzzi et al. 2017)")
    shattering.add_argument("--depths", default="8,20,56,110", metavar="D,D,…",
                            help="CIFAR depths 6n+2 (default 8,20,56,110)")
    shattering.add_argument("--points", type=int, default=256, metavar="P", help="inputs along the line (256)")
    shattering.add_argument("--seed", type=arguments.seed, default=0)
    shattering.add_argument("--json", action="store_true", help="print the result as JSON")
    arguments.add_quiet(shattering)
    for parser, handler in ((lesion, _lesion), (landscape, _landscape), (shattering, _shattering)):
        parser.set_defaults(handler=handler)


def _step_progress(line: ProgressLine, images_per_step: int = 0):
    """A library's progress callback(done, total[, error]) drawing `line`; with `images_per_step`, the images
    evaluated per second over the steps so far (the clock starts here, just before the work)."""
    started = time.perf_counter()

    def update(done: int, total: int, error: float | None = None) -> None:
        elapsed = time.perf_counter() - started
        rate = images_per_step * done / elapsed if images_per_step and done and elapsed else None
        line.update(done, total=total, images_per_s=rate, error=error)

    return update


def _lesion(args: argparse.Namespace) -> int:
    from ..progress import ProgressLine
    from ..training.device import set_cpu_threads
    from .lesion import image_count, lesion_study
    from .trained import trained_with_data

    set_cpu_threads()
    model, data = trained_with_data(args.model, args.data, args.home)
    with ProgressLine("steps", quiet=args.quiet, label="lesion") as line:
        # Each step (the intact net, a deletion) classifies every chosen test image.
        result = lesion_study(model, data, images=args.images, random_k=args.random_k, draws=args.draws,
                              seed=args.seed, progress=_step_progress(line, image_count(data, args.images)))
    if args.json:
        print(json_text(result.to_dict()))
        return 0
    print(f"{model.spec.name} on {result.images} test images of {data.name}: intact {100 * result.baseline_error:.2f}% "
          "error")
    print(f"{'deleted block':<14} {'error':>8}")
    for block in result.blocks:
        print(f"{block.block:<14} {100 * block.error:>7.2f}%{'  (downsampling)' if block.downsampling else ''}")
    for draw in result.random:
        blocks = "block" if draw.k == 1 else "blocks"
        print(f"{draw.k} random {blocks} deleted: median {100 * statistics.median(draw.errors):.2f}% over "
              f"{len(draw.errors)} draws")
    return 0


def _landscape(args: argparse.Namespace) -> int:
    from ..progress import ProgressLine
    from ..training.device import set_cpu_threads
    from .landscape import image_count, loss_landscape
    from .trained import trained_with_data

    set_cpu_threads()
    model, data = trained_with_data(args.model, args.data, args.home)
    with ProgressLine("steps", quiet=args.quiet, label="landscape") as line:
        # Each step (a point) classifies every image of the training subset.
        result = loss_landscape(model, data, dims=args.dims, points=args.points, span=args.span, images=args.images,
                                seed=args.seed, progress=_step_progress(line, image_count(data, args.images)))
    if args.json:
        print(json_text(result.to_dict()))
        return 0
    if args.dims == 1:
        print(f"{'alpha':>7} {'loss':>8} {'error':>7}")
        for alpha, loss, error in zip(result.alphas, result.loss, result.error):
            print(f"{alpha:>7.3f} {loss:>8.4f} {100 * error:>6.2f}%")
    else:
        print(f"{len(result.betas)}×{len(result.alphas)} surface; loss from {min(map(min, result.loss)):.4f} to "
              f"{max(map(max, result.loss)):.4f}; --json prints it")
    return 0


def _shattering(args: argparse.Namespace) -> int:
    from ..progress import ProgressLine
    from ..training.device import set_cpu_threads
    from .shattering import shattering

    try:
        depths = [int(depth) for depth in args.depths.split(",") if depth.strip()]
    except ValueError:
        raise UserError(f"--depths takes CIFAR depths like 8,20,56; got {args.depths!r}.") from None
    set_cpu_threads()
    with ProgressLine("nets", quiet=args.quiet, label="shattering") as line:
        points = shattering(depths, points=args.points, seed=args.seed, progress=_step_progress(line))
    if args.json:
        print(json_text([point.to_dict() for point in points]))
        return 0
    print(f"{'model':<10} {'depth':>5} {'lag-1 autocorrelation':>22}")
    for point in points:
        print(f"{point.model:<10} {point.depth:>5} {point.lag1_autocorrelation:>22.3f}")
    return 0
