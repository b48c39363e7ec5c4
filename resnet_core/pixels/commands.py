"""`python -m resnet_core segment train|evaluate`: train a segmenter on scenes of a dataset's images as a run of the
store, or score a segmentation run's saved segmenter on its test scenes.

    python -m resnet_core segment train --backbone reference:resnet56 --scenes-from cifar10 --iterations 300 --freeze
    python -m resnet_core segment train --backbone random:resnet56 --scenes-from synthetic --iterations 50
    python -m resnet_core segment evaluate 4 --json

`segment train` records the run as `train` records a classifier's (`pixels.jobs.submit_segmentation`, running for
this process at once), executes it here through `runs.executor` with the live progress line, and prints the run id
last. The parser takes its defaults and help from `pixels.jobs`; each handler imports what it runs.
"""
from __future__ import annotations

import argparse
import math
import os

from .. import arguments
from ..errors import UserError
from ..json_output import json_text


def add_segment_command(commands, with_home) -> None:
    """Add `segment train|evaluate`, each with its handler as the `handler` default, to `commands` (subparsers)."""
    from ..training.data import SOURCE_HELP
    from .jobs import BACKBONE_HELP, DEFAULT_TEST_SCENES, DEFAULT_TRAIN_SCENES
    from .segment_train import DEFAULT_BATCH_SIZE, DEFAULT_LR

    segment = commands.add_parser(
        "segment", help="train a segmenter (an FCN head on a CIFAR net) on scenes of CIFAR images, or score one",
        description="Scenes of 64 x 64 pixels, each one to three images of a dataset pasted at random sizes and "
                    "places on a noisy background, every pixel labelled with the class of the image on top (or "
                    "background); a fully convolutional head (Long et al. 2015) on the stem and stages of a CIFAR "
                    "net of the paper classifies every pixel.")
    actions = segment.add_subparsers(dest="action", required=True, metavar="ACTION")
    train = with_home(actions.add_parser(
        "train", help="train a segmenter and record it as a run",
        description="Train an FCN head (and, unless --freeze, its backbone) on composed scenes, recorded as a run "
                    "of the store: its curves (pixel error and mIoU at each test point) and, at each test point "
                    "and when cancelled, the segmenter as its checkpoint (a resumed run goes on from it). Trains in "
                    "this process; Ctrl-C cancels it. Prints the run id last."))
    train.add_argument("--backbone", required=True, metavar="SOURCE", help=BACKBONE_HELP)
    train.add_argument("--scenes-from", required=True, metavar="SOURCE",
                       help=f"the dataset whose images the scenes paste: {SOURCE_HELP} (each image as 32 x 32); "
                            "a source may be named as its scenes, e.g. cifar10-scenes")
    train.add_argument("--iterations", required=True, type=int, metavar="N", help="train for N batches of scenes")
    train.add_argument("--freeze", action="store_true", help="train the head alone: the backbone's weights and "
                       "batch-norm statistics stay as the backbone source has them")
    train.add_argument("--skip", action="store_true", help="FCN-16s: add class scores of the second-to-last stage "
                       "(twice the last one's resolution) before upsampling")
    train.add_argument("--seed", type=arguments.seed, default=0, help="seed of the head (and a random backbone), "
                       "the batch order and the flips (default 0)")
    train.add_argument("--scenes", type=int, default=DEFAULT_TRAIN_SCENES, metavar="N",
                       help=f"training scenes, of the dataset's training images (default {DEFAULT_TRAIN_SCENES:,})")
    train.add_argument("--test-scenes", type=int, default=DEFAULT_TEST_SCENES, metavar="N",
                       help=f"test scenes, of its test images (default {DEFAULT_TEST_SCENES:,})")
    train.add_argument("--scenes-seed", type=arguments.seed, default=0, metavar="S",
                       help="seed of the scenes, kept apart from --seed so runs compared over seeds see the same "
                            "scenes (default 0)")
    train.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="B",
                       help=f"scenes per iteration (default {DEFAULT_BATCH_SIZE})")
    train.add_argument("--lr", type=float, default=DEFAULT_LR, metavar="LR",
                       help=f"peak learning rate of the short-run schedule (default {DEFAULT_LR})")
    train.add_argument("--eval-every", type=int, metavar="N", help="iterations between test evaluations (default: "
                       "5 in the run, or once per pass over the scenes if that is more often)")
    train.add_argument("--name", help="a label for the run (default: the segmenter, backbone and scenes)")
    train.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    train.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: all the cores)")
    arguments.add_quiet(train)
    train.set_defaults(handler=_train)

    evaluate = with_home(actions.add_parser(
        "evaluate", help="score a segmentation run's segmenter on its test scenes",
        description="Compose the run's test scenes again and score its saved segmenter on them: pixel accuracy, "
                    "mIoU (the mean over the classes present in the targets or predictions) and each class's IoU, "
                    "beside the share of background pixels (the pixel accuracy of answering background "
                    "everywhere)."))
    evaluate.add_argument("run_id", type=int, metavar="RUN_ID")
    evaluate.add_argument("--json", action="store_true", help="print a JSON object: run, data, split, scenes, loss, "
                          "classes, pixel_accuracy, miou, iou (class name -> IoU, null for a class in neither "
                          "targets nor predictions), background_share, confusion_matrix")
    evaluate.add_argument("--device", choices=("cpu", "cuda"))
    evaluate.set_defaults(handler=_evaluate)


def _train(args: argparse.Namespace) -> int:
    import torch

    from ..progress import ProgressLine, show_training
    from ..runs.executor import execute
    from ..runs.job import configure_logging, report
    from ..runs.store import Store
    from ..shutdown import stop_requests
    from ..training.device import pick_device, set_cpu_threads
    from .jobs import submit_segmentation

    configure_logging()
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be at least 1; got {args.threads}.")
        torch.set_num_threads(args.threads)
    else:
        set_cpu_threads()
    device = pick_device(args.device)
    store = Store(args.home)
    # Recorded running for this process in the transaction that creates it: no dispatcher can start it too.
    run_id = submit_segmentation(args.backbone, args.scenes_from, iterations=args.iterations, freeze=args.freeze,
                                 skip=args.skip, seed=args.seed, train_scenes=args.scenes,
                                 test_scenes=args.test_scenes, scenes_seed=args.scenes_seed,
                                 batch_size=args.batch_size, lr=args.lr, eval_every=args.eval_every,
                                 device=device.type, name=args.name, store=store, taken_by=os.getpid())
    run = store.run(run_id)
    iterations = run.recipe["iterations"]
    print(f"run {run_id}: {run.name}, {iterations} iterations of {run.recipe['batch_size']} scenes, {device.type}; "
          f"store {store.where}", flush=True)
    with stop_requests() as should_stop, ProgressLine("it", total=iterations, quiet=args.quiet) as line:
        outcome = execute(store, run_id, should_stop=should_stop, device=device.type, on_event=show_training(line))
    return report(store, run_id, outcome)


def _evaluate(args: argparse.Namespace) -> int:
    from ..runs.store import Store
    from ..training.device import set_cpu_threads
    from .jobs import evaluate_segmentation_run

    set_cpu_threads()
    report = evaluate_segmentation_run(Store(args.home), args.run_id, device=args.device)
    if args.json:
        print(json_text({"run": args.run_id, **report.to_dict()}))
        return 0
    scores = report.scores
    print(f"run {args.run_id} on {report.scenes} {report.split} scenes of {report.data}: pixel accuracy "
          f"{100 * scores.pixel_accuracy:.2f}% (background everywhere: {100 * scores.background_share:.2f}%), "
          f"mIoU {100 * scores.miou:.2f}%, loss {report.loss:.4f}")
    print(f"  {'class':<14} {'IoU':>7}")
    for name, value in scores.iou.items():
        print(f"  {name:<14} {'-' if math.isnan(value) else f'{100 * value:.2f}%':>7}")
    return 0
