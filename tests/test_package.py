"""`import resnet_core` is cheap and still behaves like an eagerly imported package."""
import subprocess
import sys


def run_fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_import_loads_neither_pandas_nor_torchinfo_nor_captum():
    assert run_fresh("import sys, resnet_core; "
                     "print(sorted(m for m in ('pandas', 'torchinfo', 'captum') if m in sys.modules))") == "[]"


def test_submodules_and_exports_resolve_in_a_fresh_interpreter():
    # The app reads `rc.specs.…` before anything else imported the submodule.
    assert run_fresh("import resnet_core as rc; print(rc.specs.CIFAR_PAPER_DEPTHS[0], rc.build_model.__name__, "
                     "rc.load_checkpoint.__name__, len(rc.__all__) == len(set(rc.__all__)))") == "20 build_model load_model True"
