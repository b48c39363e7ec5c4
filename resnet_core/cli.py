"""`python -m resnet_core train|reproduce|runs|models|evaluate|summary|lesion|landscape|shattering|segment`.

Exit status 0 on success, 2 on a user error (one line on stderr), 1 on a bug (with its traceback).
Under `torchrun` every process runs `train`; rank 0 alone writes the store and prints.
"""
from __future__ import annotations

import argparse
import os
import sys

from . import arguments
from .errors import UserError
from .json_output import json_text

EPILOG = """examples:
  python -m resnet_core train --model resnet20 --data cifar10 --epochs 10
  python -m resnet_core train --model plain20 --data synthetic --iterations 200 --name demo
  python -m resnet_core train --resume 3
  python -m resnet_core reproduce table6 --nets plain56 resnet56 --iterations 2000
  python -m resnet_core reproduce table6 --report
  python -m resnet_core runs
  python -m resnet_core models --json
  python -m resnet_core evaluate 3 --json
  python -m resnet_core segment train --backbone reference:resnet56 --scenes-from cifar10 --iterations 300
  python -m resnet_core segment evaluate 4 --json
  torchrun --nproc_per_node=2 -m resnet_core train --model resnet20 --data cifar10 --epochs 1

Runs, checkpoints and cached datasets live in the data folder: --home, else $RESNET_EXPLORER_HOME,
else ~/.resnet-explorer."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .explain.commands import add_commands
    from .pixels.commands import add_segment_command
    from .runs.commands import add_cluster_commands, add_db_command, add_reproduce_command
    from .speed.commands import add_speed_commands
    from .training.data import SOURCE_HELP
    from .training.recipe import NORMALIZATIONS, RECIPE_KINDS, SHORT_RUN_WARMUP_ITERATIONS, TEST_POINTS

    parser = _Parser(prog="python -m resnet_core", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="Train, evaluate and inspect the ResNets of He et al. (2015).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def with_home(sub):
        sub.add_argument("--home", metavar="DIR", help="data folder for runs and datasets (default: "
                         "$RESNET_EXPLORER_HOME, else ~/.resnet-explorer)")
        return sub

    train = with_home(commands.add_parser(
        "train", help="train a network and record it as a run", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train with the paper's recipe (§4.2 for CIFAR nets, §3.4 for ImageNet nets), its learning-rate "
                    "milestones scaled to the length you ask for. Prints the run id last."))
    train.add_argument("--model", metavar="NAME", help="resnet20, plain56, resnet110, resnet18, … (any resnet/plain "
                       "6n+2 for CIFAR, or 18/34/50/101/152 for ImageNet nets)")
    train.add_argument("--data", metavar="SOURCE", help=SOURCE_HELP)
    length = train.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, metavar="N", help="train for N passes over the training images")
    length.add_argument("--iterations", type=int, metavar="N", help="train for N batches (the paper: 64000)")
    train.add_argument("--batch-size", type=int, metavar="B", help="images per iteration (default 128; 256 for "
                       "ImageNet nets)")
    train.add_argument("--lr", type=float, metavar="LR", help="initial learning rate (default 0.1)")
    train.add_argument("--recipe", choices=RECIPE_KINDS, help="short: the lr rises linearly to its peak over the "
                       f"first {SHORT_RUN_WARMUP_ITERATIONS} iterations, then falls linearly to 0, for every net "
                       "(docs/SHORT_RUNS.md); paper: the paper's schedule exactly. Default: short for CIFAR runs "
                       "shorter than 64,000 iterations, paper otherwise; the Train page's Start uses the same rule")
    train.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    train.add_argument("--precision", choices=("fp32", "bf16"), help="default: bf16 where the hardware supports it")
    train.add_argument("--seed", type=arguments.seed, default=0,
                       help="seed of weights, data order and augmentation (default 0)")
    train.add_argument("--name", help="a label for the run (default: MODEL on SOURCE)")
    train.add_argument("--eval-every", type=int, metavar="N", help="iterations between test evaluations and "
                       f"checkpoints (default: once per epoch, or {TEST_POINTS} times in a shorter run)")
    train.add_argument("--normalization", choices=NORMALIZATIONS, help="per-pixel: subtract the training images' "
                       "mean image (§4.2, §3.4; the default of --recipe paper); per-channel: per-channel mean and std "
                       "(the default of a short run, whose effects were measured so; the reference nets')")
    train.add_argument("--validation-images", type=int, default=0, metavar="N",
                       help="evaluate on N held-out training images instead of the test set (§4.2 uses 5000)")
    train.add_argument("--compile", action="store_true", help="torch.compile the model (slow start, faster steps)")
    stored = train.add_mutually_exclusive_group()
    stored.add_argument("--resume", type=int, metavar="RUN_ID", help="continue a killed or cancelled run from its "
                        "last checkpoint, with its own settings")
    stored.add_argument("--run-id", type=int, metavar="RUN_ID", help="train a run that the job queue "
                        "(resnet_core.runs.dispatch) created and started for this process, with its own settings")
    train.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: the cores shared "
                       "evenly among the processes of a torchrun)")
    arguments.add_quiet(train)

    add_reproduce_command(commands, with_home)
    add_db_command(commands, with_home)
    add_cluster_commands(commands, with_home)
    add_speed_commands(commands, with_home)

    runs = with_home(commands.add_parser("runs", help="list the recorded runs"))
    runs.add_argument("--json", action="store_true", help="print a JSON list instead of a table")

    models = with_home(commands.add_parser(
        "models", help="list every trained model the app can use: the shipped reference and demo nets, finished "
        "runs, torchvision's ImageNet weights in the torch cache"))
    models.add_argument("--json", action="store_true", help="print a JSON list (name, model, source, test_error, "
                        "path, label) instead of a table")

    evaluate = with_home(commands.add_parser("evaluate", help="test a run's latest checkpoint"))
    evaluate.add_argument("run_id", type=int, metavar="RUN_ID")
    evaluate.add_argument("--json", action="store_true", help="print a JSON object instead of text")
    views = evaluate.add_mutually_exclusive_group()
    views.add_argument("--ten-crop", action="store_true", help="average 10 crops per image (§3.4, ImageNet nets)")
    views.add_argument("--multi-scale", action="store_true", help="average each whole image and its mirror at shorter "
                       "sides 224, 256, 384, 480 and 640, fully convolutional (§3.4, Table 4; ImageNet nets)")
    evaluate.add_argument("--device", choices=("cpu", "cuda"))

    add_commands(commands, with_home)  # lesion, landscape, shattering, with their handlers
    add_segment_command(commands, with_home)  # segment train|evaluate, with their handlers

    summary = commands.add_parser("summary", help="print a network's layer or stage table (Table 1)")
    summary.add_argument("model", metavar="NAME")
    summary.add_argument("--layers", action="store_true", help="one row per layer instead of per stage")
    summary.add_argument("--num-classes", type=int)
    for name, handler in {"train": _train, "runs": _runs, "models": _models,
                          "evaluate": _evaluate, "summary": _summary}.items():
        commands.choices[name].set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _spec(name: str, num_classes: int | None):
    from .nets.specs import get_spec

    try:
        return get_spec(name, num_classes=num_classes)
    except ValueError as error:  # the spec table's own messages name what is allowed
        raise UserError(str(error)) from None


# ------------------------------------------------------------------------------------------- train
def _train(args: argparse.Namespace) -> int:
    import torch

    from .progress import ProgressLine, show_training
    from .runs.executor import execute
    from .runs.job import configure_logging, report, take
    from .runs.admission import submit
    from .runs.store import Store
    from .shutdown import stop_requests
    from .training.data import load_data, storage
    from .training.device import pick_device, set_cpu_threads
    from .training.recipe import Recipe

    configure_logging()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    stored_run = args.resume if args.resume is not None else args.run_id
    if stored_run is not None:
        given = [flag for flag, value in (("--model", args.model), ("--data", args.data), ("--epochs", args.epochs),
                                          ("--iterations", args.iterations), ("--batch-size", args.batch_size),
                                          ("--lr", args.lr), ("--recipe", args.recipe),
                                          ("--normalization", args.normalization),
                                          ("--name", args.name)) if value is not None]
        if given:
            raise UserError(f"--resume and --run-id train a run with its own settings; drop {', '.join(given)}.")
    else:
        missing = [flag for flag, value in (("--model", args.model), ("--data", args.data)) if value is None]
        if args.epochs is None and args.iterations is None:
            missing.append("--epochs or --iterations")
        if missing:
            raise UserError(f"train needs {', '.join(missing)} (or --resume RUN_ID).")

    device = pick_device(args.device)
    if world > 1:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be at least 1; got {args.threads}.")
        torch.set_num_threads(args.threads)
    else:
        set_cpu_threads(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))

    data = None
    if stored_run is None:  # a new run: its data is read first, so a bad dataset is refused before it is recorded
        probe = _spec(args.model, None)
        data = load_data(args.data, **storage(probe.family, probe.input_size), home=args.home)
    store = Store(args.home) if rank == 0 else None  # under torchrun rank 0 alone records the run
    run_id = iterations = None
    if store is not None:
        # A run this process trains itself is recorded running for it in the same transaction that creates or
        # resumes it: a dispatcher in between (another run ending) would otherwise start it too.
        if args.resume is not None:
            run_id = store.requeue_for_resume(args.resume, taken_by=os.getpid()).id
        elif args.run_id is not None:  # started by the queue: confirm what a dispatcher launched this process for
            run_id = args.run_id
            take(store, run_id)
        else:  # submitted as the app's and Python's runs are
            run_id = submit(args.model, args.data, seed=args.seed, device=device.type, precision=args.precision,
                            name=args.name, store=store, iterations=args.iterations,
                            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, eval_every=args.eval_every,
                            recipe=args.recipe, validation_images=args.validation_images or None,
                            normalization=args.normalization, taken_by=os.getpid())
        run = store.run(run_id)
        if run.experiment is None:  # an experiment's steps have no bar to fill
            recipe = Recipe.from_dict(run.recipe)
            iterations = recipe.iterations
            print(f"run {run_id}: {run.spec['name']} on {run.data}, {iterations} iterations of {recipe.batch_size}, "
                  f"{device.type}; store {store.where}", flush=True)

    with stop_requests() as should_stop, ProgressLine("it", total=iterations, quiet=args.quiet or rank > 0) as line:
        outcome = execute(store, run_id, should_stop=should_stop, device=device.type, compile=args.compile,
                          data=data, on_event=show_training(line))
    if world > 1:
        torch.distributed.destroy_process_group()
    return report(store, run_id, outcome) if rank == 0 else 0


# ------------------------------------------------------------------------------------------- runs
def _runs(args: argparse.Namespace) -> int:
    from .runs.store import Store

    store = Store(args.home)
    summaries = store.summaries()
    for problem in store.damaged_runs().values():  # reported on stderr, so --json stays parseable
        print(f"warning: {problem}", file=sys.stderr)
    if args.json:
        print(json_text(summaries))
        return 0

    def percent(value):
        return "-" if value is None else f"{100 * value:.2f}%"

    print(f"{'id':>4}  {'status':<11}  {'iterations':>13}  {'train err':>9}  {'test err':>9}  model / data / name")
    for run in summaries:
        print(f"{run['id']:>4}  {run['status']:<11}  {run['iterations_done']:>6}/{run['iterations_total']:<6}  "
              f"{percent(run['train_error']):>9}  {percent(run['test_error']):>9}  "
              f"{run['model']} / {run['data']} / {run['name']}")
    return 0


# ------------------------------------------------------------------------------------------- models
def _models(args: argparse.Namespace) -> int:
    from .explain.catalog import available_models, references
    from .runs.store import Store

    for problem in references()[1]:  # on stderr, so --json stays parseable
        print(f"warning: {problem}", file=sys.stderr)
    entries = available_models(Store(args.home))
    if args.json:
        print(json_text([entry.to_dict() for entry in entries]))
        return 0
    print(f"{'name':<20}  {'source':<11}  {'test err':>8}  label / path")
    for entry in entries:
        error = "-" if entry.test_error is None else f"{100 * entry.test_error:.2f}%"
        print(f"{entry.name:<20}  {entry.source:<11}  {error:>8}  {entry.label} / {entry.path}")
    return 0


# ------------------------------------------------------------------------------------------- evaluate
def _evaluate(args: argparse.Namespace) -> int:
    from .runs.store import Store
    from .training.device import set_cpu_threads
    from .training.evaluate import evaluate_run

    set_cpu_threads()
    report = evaluate_run(Store(args.home), args.run_id, ten_crop=args.ten_crop, multi_scale=args.multi_scale,
                          device=args.device)
    if args.json:
        print(json_text(report.to_dict()))
        return 0
    print(f"{report.data} {report.split}: error {100 * report.test_error:.2f}% (top-5 {100 * report.top5_error:.2f}%), "
          f"loss {report.test_loss:.4f}" + (" (10-crop)" if report.ten_crop else "")
          + (" (multi-scale)" if report.multi_scale else ""))
    for name, accuracy in report.per_class_accuracy.items():
        print(f"  {name:<20} {100 * accuracy:6.2f}%")
    print("confusion matrix (rows: true class, columns: predicted):")
    for row in report.confusion_matrix:
        print("  " + " ".join(f"{count:5d}" for count in row))
    return 0


# ------------------------------------------------------------------------------------------- summary
def _refuse_weights_beyond_memory(spec) -> None:
    """A net whose weights alone exceed the free memory (a --num-classes of 10^8 makes a 800 GB fc layer) is refused
    in one line; counted on the meta device, which allocates nothing."""
    import torch

    from .nets.model import ResNet
    from .nets.summary import count_parameters
    from .training import memory

    with torch.device("meta"):
        parameters = count_parameters(ResNet(spec))
    needed, available = 4 * parameters, memory.available_bytes()
    if needed > available:
        raise UserError(f"{spec.name} with {spec.num_classes:,} classes has {parameters:,} weights, "
                        f"{memory.gigabytes(needed)}, but this machine has {memory.gigabytes(available)} free; "
                        "use fewer classes.")


def _summary(args: argparse.Namespace) -> int:
    from .nets.model import ResNet
    from .nets.summary import layer_table, stage_table

    spec = _spec(args.model, args.num_classes)
    _refuse_weights_beyond_memory(spec)
    model = ResNet(spec)
    table = layer_table(model) if args.layers else stage_table(model)
    print(table.to_string(index=False))
    return 0
