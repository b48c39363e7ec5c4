"""Print, as Markdown, every number the shipped reference nets recorded: the measured half of docs/REFERENCE_NETS.md.

    PYTHONPATH=. .venv/bin/python scripts/describe_references.py

Everything comes from the files in resnet_core/reference/ (the export's metadata and each run's metric history),
so the page and the files cannot disagree: regenerate the section after replacing a file.
"""
from __future__ import annotations

import statistics

from resnet_core.explain import catalog
from resnet_core.nets.model import ResNet
from resnet_core.nets.specs import NetSpec
from resnet_core.nets.summary import count_parameters


def percent(fraction: float) -> str:
    return f"{100 * fraction:.2f} %"


def main() -> None:
    references, problems = catalog.references()
    for problem in problems:
        print(f"> **Missing:** {problem}\n")
    print("| net | parameters | test error | test loss | best test error (epoch) | training time | recipe |")
    print("|---|---|---|---|---|---|---|")
    for ref in references:
        history = ref.history()
        tests = history[history["kind"] == "test"]
        best = tests.loc[tests["error"].idxmin()]
        model = ResNet(NetSpec.from_dict(ref.metadata["spec"]))
        print(f"| {ref.label.removesuffix(' reference')} | {count_parameters(model):,} | {percent(ref.test_error)} | "
              f"{ref.metadata['report']['test_loss']:.3f} | {percent(best['error'])} ({int(best['epoch']) + 1}) | "
              f"{history['elapsed_s'].max() / 60:.0f} min | {ref.recipe_text} |")

    classes = references[0].metadata["classes"]
    print("\nPer-class test accuracy (%):\n")
    print("| net | " + " | ".join(classes) + " |")
    print("|---|" + "---|" * len(classes))
    for ref in references:
        accuracy = ref.metadata["report"]["per_class_accuracy"]
        print(f"| {ref.label.removesuffix(' reference')} | "
              + " | ".join(f"{100 * accuracy[name]:.1f}" for name in classes) + " |")

    print("\nFig. 7: standard deviation of each 3×3 layer's response (after BN, before addition/ReLU) on 2,000 test "
          "images, and the loss gradient's norm per weight layer on one batch of 128:\n")
    print("| net | mean std | first / last layer std | gradient norm: first conv / last conv / fc |")
    print("|---|---|---|---|")
    for ref in references:
        stds = ref.metadata["layer_response_stds"]["std"]
        norms = ref.metadata["gradient_norms"]
        conv = [norm for norm, kind in zip(norms["grad_norm"], norms["kind"]) if kind == "Conv2d"]
        fc = [norm for norm, kind in zip(norms["grad_norm"], norms["kind"]) if kind == "Linear"]
        print(f"| {ref.label.removesuffix(' reference')} | {statistics.fmean(stds):.2f} | {stds[0]:.2f} / "
              f"{stds[-1]:.2f} | {conv[0]:.3g} / {conv[-1]:.3g} / {fc[-1]:.3g} |")

    for ref in references:
        matrix = ref.metadata["report"]["confusion_matrix"]
        print(f"\nConfusion matrix of {ref.label.removesuffix(' reference')} (rows: true class, columns: predicted, "
              "in the order above):\n")
        print("| | " + " | ".join(name[:4] for name in classes) + " |")
        print("|---|" + "---|" * len(classes))
        for name, row in zip(classes, matrix):
            print(f"| {name} | " + " | ".join(str(count) for count in row) + " |")


if __name__ == "__main__":
    main()
