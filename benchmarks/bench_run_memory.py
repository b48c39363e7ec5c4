"""The memory guard's estimate against the peak RSS of real training processes (issue 7).

Each case trains a few iterations on the synthetic set in its own `python -m resnet_core train` process and
reads that process's peak RSS. Baseline in the same run: the smallest case (ResNet-8, batch 16), whose RSS is
almost all process overhead. The guard must never under-estimate (ratio estimate / measured >= 1).

    .venv/bin/python -m benchmarks.bench_run_memory
"""
import argparse
import resource
import subprocess
import sys
import tempfile

from resnet_core import get_spec
from resnet_core.runs import admission
from resnet_core.training import memory

CASES = [("resnet8", 16), ("resnet20", 128), ("resnet110", 128), ("resnet20", 1024), ("resnet56", 512)]


def peak_rss_bytes(model: str, batch_size: int, home: str) -> int:
    """Peak RSS of one training process: getrusage of children is the maximum over all of them, so a small
    wrapper process runs each case and reports its own child's."""
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
               "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    command = [sys.executable, "-m", "resnet_core", "train", "--model", model, "--data", "synthetic",
               "--iterations", "3", "--batch-size", str(batch_size), "--home", home, "--threads", "1"]
    output = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True, check=True)
    return int(output.stdout) * 1024  # Linux reports KiB


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    images = admission.SOURCE_SIZES["synthetic"][1]
    print(f"{'net':>10} {'batch':>6} {'measured':>10} {'estimate':>10} {'estimate/measured':>18}")
    with tempfile.TemporaryDirectory() as home:
        baseline = None
        for model, batch in CASES:
            measured = peak_rss_bytes(model, batch, home)
            estimate = memory.training_bytes(get_spec(model), batch, images)
            baseline = baseline or measured
            print(f"{model:>10} {batch:>6} {measured / 1e9:>7.2f} GB {estimate / 1e9:>7.2f} GB "
                  f"{estimate / measured:>17.2f}x   ({measured / baseline:.1f}x the baseline's RSS)")
    print(f"free now: {memory.gigabytes(memory.available_bytes())}; "
          f"this benchmark's own peak: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
