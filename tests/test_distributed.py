"""`torchrun --nproc_per_node=2 -m resnet_core train …` on gloo: replicas stay identical, rank 0 alone records."""
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from resnet_core.runs.store import Store
from resnet_core.training.checkpoint import read_metadata

REPO = Path(__file__).resolve().parents[1]


def test_two_cpu_processes_train_one_run_with_identical_weights(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not installed next to this Python")
    command = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "resnet_core", "train", "--model", "resnet8",
               "--data", "synthetic", "--iterations", "6", "--batch-size", "32", "--eval-every", "3", "--device", "cpu",
               "--precision", "fp32", "--home", str(tmp_path)]
    # Its own process group, so a hung rendezvous cannot leave orphaned ranks behind.
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    assert result.returncode == 0, result.stderr
    store = Store(tmp_path)
    [run] = store.runs()  # rank 1 created nothing
    assert result.stdout.strip().splitlines()[-1] == str(run.id)
    assert run.status == "finished"
    assert [row["iteration"] for row in store.metrics(run.id, "train")] == list(range(1, 7))
    iteration, path = store.latest_checkpoint(run.id)
    fingerprints = read_metadata(path)["trainer"]["replica_fingerprints"]
    assert iteration == 6 and len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
