"""`import resnet_core` is cheap and still behaves like an eagerly imported package."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_import_loads_neither_pandas_nor_torchinfo_nor_captum():
    assert run_fresh("import sys, resnet_core; "
                     "print(sorted(m for m in ('pandas', 'torchinfo', 'captum') if m in sys.modules))") == "[]"


def test_submodules_and_exports_resolve_in_a_fresh_interpreter():
    # The app reads `rc.specs.…` before anything else imported the submodule.
    assert run_fresh("import resnet_core as rc; print(rc.specs.CIFAR_PAPER_DEPTHS[0], rc.build_model.__name__, "
                     "rc.load_checkpoint.__name__, len(rc.__all__) == len(set(rc.__all__)))") == "20 build_model load_model True"


def imported_modules(path: Path) -> set[str]:
    """Every module a source file of resnet_core imports, absolute (`from .. import cli` counts as
    resnet_core.cli), wherever in the file the import is."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(filter(None, [base, node.module]))
            imported.add(module)
            imported.update(f"{module}.{alias.name}" for alias in node.names)
    return imported


def importers(prefix: str) -> set[str]:
    """The resnet_core source files that import `prefix` or a module under it."""
    return {str(path.relative_to(ROOT)) for path in (ROOT / "resnet_core").rglob("*.py")
            if any(name == prefix or name.startswith(prefix + ".") for name in imported_modules(path))}


def test_training_knows_no_run_store_and_nobody_imports_the_cli():
    assert not {path for path in importers("resnet_core.runs") if path.startswith("resnet_core/training/")}
    assert importers("resnet_core.cli") == {"resnet_core/__main__.py"}


def test_with_no_cluster_setting_nothing_imports_ray(tmp_path):
    """The default deployment (local processes, SQLite) dispatches, queues and trains without Ray."""
    code = f"""
import os, sys
os.environ["RESNET_EXPLORER_HOME"] = {str(tmp_path)!r}
os.environ["RESNET_EXPLORER_SPARES"] = "0"
from resnet_core.cli import main
from resnet_core.runs import admission, dispatch
from resnet_core.runs.store import Store
assert main(["train", "--model", "resnet8", "--data", "synthetic", "--iterations", "2", "--batch-size", "4"]) == 0
admission.submit("resnet8", "synthetic", iterations=2, store=Store())
dispatch.dispatch(cap=1)
print("ray" in sys.modules)
"""
    assert run_fresh(code).splitlines()[-1] == "False"
