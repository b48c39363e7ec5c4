"""The README's set-up installs resnet_core from this checkout (editable): it imports, and runs as `python -m
resnet_core` and as the `resnet-explorer` command, from any folder and without PYTHONPATH."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUP = ("run the README's set-up in this checkout (`.venv/bin/pip install -r requirements.txt`; its last line, "
         "`-e .`, installs resnet_core)")


def run_elsewhere(folder: Path, *commands: list) -> list[subprocess.CompletedProcess]:
    """Runs the commands at once in `folder`, outside the checkout, with PYTHONPATH removed, so that resnet_core is
    found only where it is installed; at once because each one imports torch (seconds)."""
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    processes = [subprocess.Popen([str(part) for part in command], cwd=folder, env=environment, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for command in commands]
    finished = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=60)
        finished.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    return finished


def console_script() -> Path:
    # Not next to the interpreter the suite runs in: the package was never installed in that environment.
    script = Path(sys.executable).parent / "resnet-explorer"
    if not script.is_file():
        pytest.fail(f"The console script {script} is missing; {SETUP}.")
    return script


def test_resnet_core_imports_from_any_folder_and_is_this_checkout(tmp_path):
    where = "import resnet_core, pathlib; print(pathlib.Path(resnet_core.__file__).resolve())"
    found, = run_elsewhere(tmp_path, [sys.executable, "-c", where])
    assert found.returncode == 0, f"import resnet_core fails outside the checkout ({found.stderr.strip()}); {SETUP}."
    assert Path(found.stdout.strip()) == ROOT / "resnet_core" / "__init__.py", (
        f"resnet_core is imported from {found.stdout.strip()}, not from this checkout; {SETUP}.")


def test_console_script_prints_what_python_m_resnet_core_prints(tmp_path):
    script = console_script()
    ours, reference = run_elsewhere(tmp_path, [script, "summary", "resnet20"],
                                    [sys.executable, "-m", "resnet_core", "summary", "resnet20"])
    assert reference.returncode == 0, reference.stderr
    assert (ours.returncode, ours.stdout, ours.stderr) == (0, reference.stdout, reference.stderr)
    assert "conv4_x" in ours.stdout  # a real summary, not two identical empty outputs


def test_console_script_help_exits_0(tmp_path):
    help_text, = run_elsewhere(tmp_path, [console_script(), "--help"])
    assert help_text.returncode == 0, help_text.stderr
    assert "summary" in help_text.stdout


def test_console_script_fails_on_a_user_error_as_python_m_resnet_core_does(tmp_path):
    script = console_script()
    mistake, reference = run_elsewhere(tmp_path, [script, "summary", "nosuchnet"],
                                       [sys.executable, "-m", "resnet_core", "summary", "nosuchnet"])
    assert mistake.returncode == 2
    assert mistake.stderr.startswith("error: ") and len(mistake.stderr.splitlines()) == 1, mistake.stderr
    assert (mistake.returncode, mistake.stdout, mistake.stderr) == (reference.returncode, reference.stdout,
                                                                    reference.stderr)
