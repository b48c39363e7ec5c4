"""Thirty runs write while thirty pages poll: the run store's write and poll latency, p50 / p95, and rows lost, for
today's store (the baseline: commit b9fee77, SQLite), the SQLAlchemy store on SQLite, and on PostgreSQL.

- A writer is a training process: it opens one store for its life and takes its queued run (`claim`), as the CLI
  does, then records one metric row a second, a new iteration each time, and renews its run's lease every
  LEASE_RENEW_S (the baseline has no leases).
- A reader is a page: once a second it opens the store, as a page's poll does, reads every run with its summary
  (`runs_and_summaries`) and the rows of its run it has not seen yet (`metrics(run_id, after_iteration=…)`), and
  closes the store. Readers follow the runs in turn.
- Every process starts, imports its store and opens it first; the clock starts when all are ready, and their seconds
  are spread evenly over the second, as independent processes' are.
- Lost: rows whose `add_metrics` returned (written) that the store does not hold at the end (found).

The processes run this file with `--role` and the backend's code on PYTHONPATH: the baseline from a worktree of
b9fee77 (added in /tmp/bench-baseline when missing), PostgreSQL a throwaway server (tests/services.py) that
$RESNET_EXPLORER_DATABASE_URL names.

    .venv/bin/python -m benchmarks.bench_store [--seconds 30] [--writers 30] [--readers 30]
                                               [--backends baseline,sqlite,postgresql]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE_COMMIT = "b9fee77"  # the last store on sqlite3 alone, before SQLAlchemy
BASELINE_TREE = Path("/tmp/bench-baseline")
BACKENDS = ("baseline", "sqlite", "postgresql")
SETTINGS_PREFIX = "RESNET_EXPLORER_"
# runs.settings.DATABASE_VARIABLE, written out: this file also runs on the baseline's code, which has none.
DATABASE_VARIABLE = "RESNET_EXPLORER_DATABASE_URL"
TARGET_POLL_P95_MS = 50


# ------------------------------------------------------------------------------------------- in each process
def ready() -> float:
    """Tell the parent this process is ready; the wall-clock time it then sends, when every process begins."""
    print("ready", flush=True)
    return float(sys.stdin.readline())


def wait_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def create_runs(count: int) -> list[int]:
    """`count` queued runs, for the writers to take (no dispatcher starts them); their ids."""
    from resnet_core.nets.specs import get_spec
    from resnet_core.runs.store import Store
    from resnet_core.training.recipe import Recipe

    run = dict(name="bench", spec=get_spec("resnet8").to_dict(), recipe=Recipe().to_dict(), data="synthetic",
               device="cpu", precision="fp32", seed=0)
    return Store().create_runs([dict(run, name=f"bench {index}") for index in range(count)])


def write(run_id: int, phase: float, seconds: int) -> dict:
    from resnet_core.runs.store import Store

    store = Store()
    if not store.claim(run_id, os.getpid()):  # as the CLI takes its run: the lease is then this process's
        raise RuntimeError(f"Run {run_id} was not left queued for this writer.")
    renew_every = lease_renew_ticks(store)
    start = ready() + phase
    latencies, errors = [], []
    for tick in range(seconds):
        wait_until(start + tick)
        row = dict(iteration=tick + 1, kind="train", epoch=0, loss=2.3 / (tick + 1), error=0.9, smoothed_loss=2.3,
                   smoothed_error=0.9, lr=0.1, images_per_s=300.0, elapsed_s=float(tick), eta_s=60.0)
        began = time.perf_counter()
        try:
            store.add_metrics(run_id, [row])
            latencies.append(time.perf_counter() - began)
        except Exception as error:  # counted and reported: a run whose write fails goes on training
            errors.append(f"add_metrics: {error}")
        if renew_every and tick % renew_every == 0:
            try:
                store.renew_lease(run_id)
            except Exception as error:
                errors.append(f"renew_lease: {error}")
    return dict(latencies=latencies, errors=errors)


def lease_renew_ticks(store) -> int:
    """Every how many seconds a run renews its lease; 0 for the baseline, which has no leases."""
    if not hasattr(store, "renew_lease"):
        return 0
    from resnet_core.runs.settings import LEASE_RENEW_S

    return max(1, round(LEASE_RENEW_S))


def read(run_id: int, phase: float, seconds: int) -> dict:
    from resnet_core.runs.store import Store

    Store()  # the first open in a process creates or migrates the tables; polls measure what a page's poll costs
    start = ready() + phase
    latencies, errors, last_seen = [], [], -1
    for tick in range(seconds):
        wait_until(start + tick)
        began = time.perf_counter()
        try:
            store = Store()  # the last poll's is released with its connection, as a page's thread's is
            store.runs_and_summaries()
            rows = store.metrics(run_id, after_iteration=last_seen)
            latencies.append(time.perf_counter() - began)
            if rows:
                last_seen = rows[-1]["iteration"]
        except Exception as error:  # counted and reported: a page shows the error and polls again
            errors.append(f"poll: {error}")
    return dict(latencies=latencies, errors=errors)


def count_rows(run_ids: list[int]) -> int:
    from resnet_core.runs.store import Store

    store = Store()
    return sum(len(store.metrics(run_id)) for run_id in run_ids)


def role_main(args: argparse.Namespace) -> None:
    if args.role == "setup":
        result = create_runs(args.runs)
    elif args.role == "count":
        result = count_rows(json.loads(args.run_ids))
    else:
        result = (write if args.role == "writer" else read)(args.run_id, args.phase, args.seconds)
    args.out.write_text(json.dumps(result))


# ------------------------------------------------------------------------------------------- the parent
@dataclass
class Measured:
    backend: str
    write_s: list[float] = field(default_factory=list)
    poll_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    written: int = 0
    found: int = 0
    load: float = 0.0  # the machine's 1-minute load average as the measurement ended: other work skews it
    note: str = ""


class Backend:
    """Where a backend's processes find their code and their database."""

    def __init__(self, name: str, folder: Path, database_url: str | None) -> None:
        self.name = name
        self.folder = folder
        code = BASELINE_TREE if name == "baseline" else REPO
        self.home = folder / "home"
        self.home.mkdir()
        # Only the settings chosen here: the developer's own RESNET_EXPLORER_* must not leak into the measurement.
        self.environment = {variable: value for variable, value in os.environ.items()
                            if not variable.startswith(SETTINGS_PREFIX)}
        self.environment.update(PYTHONPATH=str(code), RESNET_EXPLORER_HOME=str(self.home))
        if database_url:
            self.environment[DATABASE_VARIABLE] = database_url
        self.outputs = 0

    def start(self, role: str, *arguments: str) -> tuple[subprocess.Popen, Path]:
        self.outputs += 1
        out = self.folder / f"{role}-{self.outputs}.json"
        with out.with_suffix(".log").open("w") as log:
            # A script path, not -m: the baseline's tree has no copy of this file.
            process = subprocess.Popen([sys.executable, __file__, "--role", role, "--out", str(out), *arguments],
                                       env=self.environment, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=log, text=True)
        return process, out

    def finish(self, process: subprocess.Popen, out: Path):
        if process.wait() != 0:
            log = out.with_suffix(".log").read_text()
            raise RuntimeError(f"{self.name}: a process failed:\n{log}")
        return json.loads(out.read_text())

    def call(self, role: str, *arguments: str):
        process, out = self.start(role, *arguments)
        process.stdin.close()
        return self.finish(process, out)


def baseline_tree() -> None:
    if not (BASELINE_TREE / "resnet_core").is_dir():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(BASELINE_TREE), BASELINE_COMMIT],
                       check=True, capture_output=True)


def measure(backend: Backend, args: argparse.Namespace) -> Measured:
    run_ids = backend.call("setup", "--runs", str(args.writers))
    workers = [("writer", run_ids[index], index / args.writers) for index in range(args.writers)]
    workers += [("reader", run_ids[index % len(run_ids)], index / args.readers) for index in range(args.readers)]
    started = [(role, *backend.start(role, "--run-id", str(run_id), "--phase", str(phase), "--seconds",
                                     str(args.seconds))) for role, run_id, phase in workers]
    for _, process, out in started:
        if process.stdout.readline().strip() != "ready":  # it exited before it was ready
            backend.finish(process, out)  # raises with its log
    begin = f"{time.time() + 1.0}\n"  # a second for the parent to tell them all
    for _, process, _ in started:
        process.stdin.write(begin)
        process.stdin.close()
    measured = Measured(backend.name)
    for role, process, out in started:
        result = backend.finish(process, out)
        measured.errors += result["errors"]
        if role == "writer":
            measured.write_s += result["latencies"]
            measured.written += len(result["latencies"])
        else:
            measured.poll_s += result["latencies"]
    measured.load = os.getloadavg()[0]
    measured.found = backend.call("count", "--run-ids", json.dumps(run_ids))
    if backend.name == "postgresql" and (backend.home / "runs.sqlite").exists():
        measured.note = f"not measured on PostgreSQL: the store ignored ${DATABASE_VARIABLE} and wrote runs.sqlite"
    return measured


def run_backend(name: str, args: argparse.Namespace) -> Measured:
    with tempfile.TemporaryDirectory(prefix=f"bench-store-{name}-") as folder, ExitStack() as stack:
        database_url = None
        if name == "baseline":
            baseline_tree()
        elif name == "postgresql":
            sys.path.insert(0, str(REPO / "tests"))
            from services import PostgresServer  # the tests' throwaway server (it imports pytest: a dev tool)

            server = PostgresServer.throwaway()
            stack.callback(server.close)
            database_url = server.create_database()
        return measure(Backend(name, Path(folder), database_url), args)


def ms(values: list[float], percent: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0] * 1000
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1] * 1000


def report(results: list[Measured], args: argparse.Namespace) -> None:
    print(f"{args.writers} writers (1 row/s), {args.readers} readers (1 poll/s), {args.seconds} s; "
          f"target: poll p95 <= {TARGET_POLL_P95_MS} ms, nothing lost")
    print(f"{'':<11}{'write ms':>14}{'poll ms':>14}{'rows':>20}{'':>7}{'p95 / baseline':>16}")
    print(f"{'backend':<11}{'p50':>7}{'p95':>7}{'p50':>7}{'p95':>7}{'written':>8}{'found':>6}{'lost':>6}{'failed':>7}"
          f"{'write':>8}{'poll':>8}{'load':>6}{'target':>8}")
    baseline = next((result for result in results if result.backend == "baseline"), None)
    for result in results:
        lost = result.written - result.found
        ratios = ""
        if baseline is not None and result is not baseline:
            ratios = (f"{ms(result.write_s, 95) / ms(baseline.write_s, 95):>7.1f}x"
                      f"{ms(result.poll_s, 95) / ms(baseline.poll_s, 95):>7.1f}x")
        met = ms(result.poll_s, 95) <= TARGET_POLL_P95_MS and lost == 0 and not result.errors
        print(f"{result.backend:<11}{ms(result.write_s, 50):>7.1f}{ms(result.write_s, 95):>7.1f}"
              f"{ms(result.poll_s, 50):>7.1f}{ms(result.poll_s, 95):>7.1f}{result.written:>8}{result.found:>6}"
              f"{lost:>6}{len(result.errors):>7}{ratios:>16}{result.load:>6.1f}{'met' if met else 'MISSED':>8}")
    for result in results:
        first_of_each = {}
        for error in result.errors:
            first_of_each.setdefault(error.split(":")[0], error)
        for kind, error in first_of_each.items():
            failed = sum(other.startswith(f"{kind}:") for other in result.errors)
            print(f"{result.backend}: {failed} failed, the first: {error.splitlines()[0]}")
        if result.note:
            print(f"{result.backend}: {result.note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--writers", type=int, default=30)
    parser.add_argument("--readers", type=int, default=30)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    # One process of the benchmark (the parent starts them):
    parser.add_argument("--role", choices=("setup", "writer", "reader", "count"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--run-id", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--run-ids", help=argparse.SUPPRESS)
    parser.add_argument("--phase", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        role_main(args)
        return
    backends = args.backends.split(",")
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backend {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    report([run_backend(name, args) for name in backends], args)


if __name__ == "__main__":
    main()
