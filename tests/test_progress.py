"""The live progress line of train, lesion, landscape and reproduce: drawn on a terminal (a pseudo-terminal here,
the child's stderr), absent with --quiet or when stderr is a pipe, where the output stays exactly what it was."""
from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from helpers import seed_speeds
from tqdm import tqdm

from resnet_core.cli import main
from resnet_core.progress import ProgressLine
from resnet_core.runs import reproduce, settings
from resnet_core.runs.store import Store
from resnet_core.speed.book import measurements

REPO = Path(__file__).resolve().parents[1]
DEADLINE_S = 120  # a child imports torch on two busy cores
TRAIN = ["train", "--model", "resnet8", "--data", "synthetic", "--iterations", "12", "--eval-every", "6",
         "--batch-size", "16", "--precision", "fp32", "--threads", "1"]
LESION = ["lesion", "reference:resnet20", "--data", "synthetic", "--images", "16"]
# What one redraw of the line looks like, e.g. "  8%|▌     | 1/12 it [00:02, 242 img/s, ETA 00:02, err 0.938"
TRAIN_LINE = re.compile(r"\d+/12 it \[\d\d:\d\d, [\d,]+ img/s, ETA \d\d:\d\d, err \d\.\d{3}")
LESION_LINE = re.compile(r"lesion: +\d+%\|.*\| \d+/10 steps \[\d\d:\d\d, [\d,]+ img/s, ETA [^,]+, err \d\.\d{3}")


class Terminal:
    """A child process whose stderr is a pseudo-terminal of 120 columns (a bare pty has 0, where tqdm draws
    nothing) and whose stdout is a pipe. Everything it draws is kept in `screen`."""

    def __init__(self, args: list[str], tmp_path: Path) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
        self.stdout = open(tmp_path / "stdout.txt", "w+")  # a file: nothing blocks while the pty is read
        self.process = subprocess.Popen([sys.executable, "-m", "resnet_core", *args], cwd=REPO,
                                        stdin=subprocess.DEVNULL, stdout=self.stdout, stderr=slave)
        os.close(slave)
        self.screen = ""
        self.closed = False

    def read_until(self, done, timeout: float = DEADLINE_S) -> str:
        """Read what the child draws until `done(screen)` or until it has closed the terminal (its exit)."""
        deadline = time.monotonic() + timeout
        while not done(self.screen) and not self.closed:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; the terminal showed {self.screen[-2000:]!r}"
            if select.select([self.master], [], [], left)[0]:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: every end of the slave is closed
                    chunk = b""
                self.closed = not chunk
                self.screen += chunk.decode(errors="replace")
        return self.screen

    def finish(self) -> tuple[int, str, str]:
        """(exit status, stdout, everything drawn on the terminal) once the child has exited."""
        self.read_until(lambda screen: False)
        status = self.process.wait(timeout=DEADLINE_S)
        os.close(self.master)
        self.stdout.seek(0)
        return status, self.stdout.read(), self.screen


def read_all(master: int) -> str:
    """Everything drawn on a pty whose other end is closed: one read may return only part of it."""
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other end is closed and everything has been read
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return b"".join(chunks).decode()


@pytest.fixture
def terminal(tmp_path):
    """Starts `Terminal`s; a child still running when the test ends (it failed part way) is killed, not left behind
    following a store forever."""
    started: list[Terminal] = []

    def start(args: list[str]) -> Terminal:
        started.append(Terminal(args, tmp_path))
        return started[-1]

    yield start
    for child in started:
        if child.process.poll() is None:
            child.process.kill()
            child.process.wait()


def piped(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resnet_core", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=DEADLINE_S)


def test_the_line_shows_the_callers_eta_and_errors_and_writes_results_above_it(monkeypatch, capsys):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    with open(slave, "w") as terminal:
        monkeypatch.setattr(sys, "stderr", terminal)
        with ProgressLine("it", total=300, label="demo") as line:
            assert line.shown
            line.write("iteration 100: test error 0.3800, loss 1.2000")
            line.update(120, images_per_s=1234.5, eta_s=3725, error=0.4123, test_error=0.38)
    drawn = read_all(master)
    assert "demo:  40%|" in drawn and "120/300 it [" in drawn
    assert drawn.endswith(", 1,234 img/s, ETA 1:02:05, err 0.412, test err 0.380]\r\n")  # the caller's ETA
    assert capsys.readouterr().out == "iteration 100: test error 0.3800, loss 1.2000\n"

    with ProgressLine("it", total=300, quiet=True) as line:  # --quiet: nothing drawn, results still printed
        assert not line.shown
        line.update(5, eta_s=1)
        line.write("iteration 5")
    assert capsys.readouterr() == ("iteration 5\n", "")


def test_train_draws_iterations_speed_eta_and_errors_on_a_terminal(tmp_path, terminal):
    status, stdout, screen = terminal([*TRAIN, "--home", str(tmp_path)]).finish()
    assert status == 0, screen
    assert TRAIN_LINE.search(screen), screen
    assert re.search(r"12/12 it \[.*, test err \d\.\d{3}\]", screen), screen  # the last test error, once there is one
    assert "iteration 6: test error " in stdout and stdout.endswith("\n1\n")


def test_train_into_a_pipe_prints_what_it_always_did_and_no_line(tmp_path):
    result = piped([*TRAIN, "--home", str(tmp_path)])
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == f"run 1: resnet8 on synthetic, 12 iterations of 16, cpu; store {tmp_path / 'runs.sqlite'}"
    assert [re.sub(r"\d\.\d{4}", "X", line) for line in lines[1:]] == [
        "iteration 6: test error X, loss X", "iteration 12: test error X, loss X", "run 1 finished at iteration 12",
        "1"]


def test_train_quiet_draws_nothing_on_a_terminal(tmp_path, terminal):
    status, stdout, screen = terminal([*TRAIN, "--quiet", "--home", str(tmp_path)]).finish()
    assert status == 0 and screen == "", screen
    assert stdout.endswith("run 1 finished at iteration 12\n1\n")


def test_lesion_draws_steps_speed_and_error_on_a_terminal_and_nothing_into_a_pipe(tmp_path, terminal):
    status, drawn_out, screen = terminal([*LESION, "--home", str(tmp_path)]).finish()
    assert status == 0, screen
    assert LESION_LINE.search(screen), screen
    result = piped([*LESION, "--home", str(tmp_path)])
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout == drawn_out and result.stdout.startswith("resnet20 on 16 test images of synthetic: intact ")


REPRODUCE = ["reproduce", "table6", "--nets", "plain20", "resnet20", "--iterations", "2", "--data", "synthetic",
             "--device", "cpu"]


def train_row(iteration: int) -> dict:
    return dict(iteration=iteration, kind="train", epoch=0, error=0.5, loss=2.0, images_per_s=300.0, eta_s=65.0)


def evaluation_row(iteration: int, error: float) -> dict:
    return dict(iteration=iteration, kind="test", epoch=0, error=error, loss=1.0)


@pytest.fixture
def table_runs(tmp_path, monkeypatch) -> Store:
    """Two runs of table6 in tmp_path, started by no process: plain20 running in this test's process (its first
    iteration and a test recorded), resnet20 queued behind it (a cap of 1, no warm spares: a child queuing the
    table again launches nothing). The lease outlasts a slow child's start, so plain20 never reads interrupted; the
    canned speeds spare every process calibrating the server."""
    monkeypatch.setenv(settings.SPARES_VARIABLE, "0")
    monkeypatch.setenv(settings.CAP_VARIABLE, "1")
    monkeypatch.setenv(settings.LEASE_VARIABLE, "600")
    monkeypatch.setattr(reproduce, "dispatch", lambda store: [])
    seed_speeds(tmp_path)
    assert main(REPRODUCE + ["--home", str(tmp_path)]) == 0
    store = Store(tmp_path)
    assert store.claim(1, os.getpid())
    store.add_metrics(1, [train_row(1), evaluation_row(1, 0.25)])
    return store


def test_reproduce_into_a_pipe_returns_at_once_as_it_always_did(table_runs, tmp_path):
    result = piped(REPRODUCE + ["--home", str(tmp_path)])
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout == (
        "Queued no new run. Kept runs 1 (plain20, running), 2 (resnet20, queued): the same settings, already queued, "
        f"training or done. Watch them with `python -m resnet_core runs --home {tmp_path}` or on the app's Runs page; "
        f"print the table with `python -m resnet_core reproduce table6 --report --home {tmp_path}`.\n")


def test_reproduce_follows_its_runs_on_a_terminal_until_they_end(table_runs, tmp_path, terminal):
    child = terminal(REPRODUCE + ["--home", str(tmp_path)])
    child.read_until(lambda screen: "test err 0.250]" in screen)
    # ETA: plain20's own 65 s, then resnet20's time at the server's (canned) speed on the one slot.
    waiting_s = reproduce.seconds_once_started(table_runs.run(2), measurements(tmp_path))
    eta = tqdm.format_interval(65 + waiting_s)
    assert re.search(rf"table6: +25%\|.*\| 1/4 it \[\d\d:\d\d, 300 img/s, ETA {eta}, test err 0.250\]",
                     child.screen), child.screen
    table_runs.add_metrics(1, [train_row(2)])
    table_runs.finish(1, "finished")
    assert table_runs.claim(2, os.getpid())
    table_runs.add_metrics(2, [train_row(1), train_row(2), evaluation_row(2, 0.125)])
    table_runs.finish(2, "finished")
    status, stdout, screen = child.finish()  # it ends by itself, once both runs have
    assert status == 0 and stdout.startswith("Queued no new run. Kept runs 1 (plain20, running)")
    assert re.search(r"table6: 100%\|.*\| 4/4 it \[\d\d:\d\d, ETA [^,]+, test err 0.125\]\r\n$", screen), screen


def test_ctrl_c_stops_following_and_the_runs_go_on(table_runs, tmp_path, terminal):
    child = terminal(REPRODUCE + ["--home", str(tmp_path)])
    child.read_until(lambda screen: "test err 0.250]" in screen)
    child.process.send_signal(signal.SIGINT)
    status, stdout, _ = child.finish()
    assert status == 0
    assert stdout.splitlines()[-1] == ("Stopped following; the runs go on: watch them with "
                                       f"`python -m resnet_core runs --home {tmp_path}`.")
    assert [run.status for run in table_runs.runs()] == ["running", "queued"]
