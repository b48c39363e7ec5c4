"""A real Ray cluster on this machine for the tests, with the deployment's dispatcher: a head with no CPUs and two
worker nodes of one CPU, each with a data folder of its own; the store is whatever RESNET_EXPLORER_DATABASE_URL
names (a PostgreSQL server on a Unix socket, which every namespace reaches). It runs inside a private network
namespace with only loopback, because Ray outside one binds to the machine's own address, which tests must never use:

    unshare -n python tests/ray_cluster.py READY STOP

It starts the deployment's dispatcher (`python -m resnet_core dispatch`), writes READY once that has recorded both
workers in the store, and stops both when STOP appears.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).with_name("ray")
HEAD_PORT = 6390
ADDRESS = f"127.0.0.1:{HEAD_PORT}"
WORKERS = 2


def start_cluster(root: Path) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    common = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO)}
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    subprocess.run([RAY, "start", "--head", "--num-cpus", "0", "--port", str(HEAD_PORT), "--node-ip-address",
                    "127.0.0.1", "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir",
                    str(root / "ray")], env=common, **quiet)
    for index in range(WORKERS):
        home = root / f"worker-{index}"  # a data folder of its own: nothing is shared but the database
        subprocess.run([RAY, "start", "--address", ADDRESS, "--num-cpus", "1", "--node-ip-address", "127.0.0.1"],
                       env={**common, "RESNET_EXPLORER_HOME": str(home)}, **quiet)


def main(ready: Path, stop_file: Path) -> None:
    os.environ["RESNET_EXPLORER_RAY_ADDRESS"] = ADDRESS
    start_cluster(Path(os.environ["RESNET_EXPLORER_HOME"]))
    dispatcher = None
    try:
        from resnet_core.runs.launchers.cluster import recorded_capacity
        from resnet_core.runs.store import Store

        # The deployment's dispatcher as a teacher starts it: the Ray driver, in the foreground of its own process.
        dispatcher = subprocess.Popen([sys.executable, "-m", "resnet_core", "dispatch"], cwd=REPO,
                                      env={**os.environ, "PYTHONPATH": str(REPO)})
        while recorded_capacity(Store()) != (WORKERS, WORKERS):
            if dispatcher.poll() is not None:
                raise RuntimeError(f"the dispatcher exited with {dispatcher.returncode}")
            time.sleep(0.2)
        ready.write_text(str(os.getpid()))
        while not stop_file.exists():
            time.sleep(0.2)
    finally:
        if dispatcher is not None:
            dispatcher.send_signal(signal.SIGINT)  # Ctrl-C: it stops after the tick in progress
            dispatcher.wait(60)
        subprocess.run([RAY, "stop", "--force"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
