"""Export a finished run as a demo checkpoint in resnet_core/demo/ (see docs/DEMO_MODELS.md).

    python scripts/export_demo_model.py --home data/demo-home --run 1 --name resnet20

The file holds only the network, plus what the app shows without the dataset: class names, normalisation,
the test report (error, per-class accuracy, confusion matrix) and Fig. 7's layer responses and the gradient
norms, measured on the run's test images.
"""
import argparse
import dataclasses

import torch

import resnet_core as rc
from resnet_core.explain.classifier import DEMO_NAMES, demo_path, export_classifier, run_classifier
from resnet_core.runs.store import Store
from resnet_core.training.augment import Pipeline
from resnet_core.training.data import load_data
from resnet_core.training.evaluate import evaluate_run
from resnet_core.training.recipe import Recipe

# Fig. 7 is over the whole test set; 2,000 images give the same stds to 3 digits and keep the export quick.
RESPONSE_IMAGES = 2000
GRADIENT_BATCH = 128  # one training batch (§4.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", required=True)
    parser.add_argument("--run", type=int, required=True)
    parser.add_argument("--name", choices=DEMO_NAMES, required=True)
    args = parser.parse_args()

    store = Store(args.home)
    run = store.run(args.run)
    report = evaluate_run(store, args.run, device="cpu")
    classifier = dataclasses.replace(run_classifier(store, args.run), label=f"{args.name} demo (CIFAR-10)",
                                     test_error=report.test_error)
    data = load_data(run.data, home=store.home)
    pipeline = Pipeline.for_recipe(Recipe.from_dict(run.recipe), data, classifier.input_size)
    images = pipeline.test_batch(data.test_images[:RESPONSE_IMAGES])
    torch.manual_seed(0)
    batch = torch.randperm(len(data.test_labels))[:GRADIENT_BATCH]
    responses = rc.layer_response_stds(classifier.model, images)
    gradients = rc.gradient_norms(classifier.model, pipeline.test_batch(data.test_images[batch]),
                                  data.test_labels[batch])
    export_classifier(demo_path(args.name), classifier, data=run.data, run={"name": run.name, "recipe": run.recipe,
                                                           "precision": run.precision, "seed": run.seed},
                      report={"per_class_accuracy": report.per_class_accuracy,
                              "confusion_matrix": report.confusion_matrix, "test_loss": report.test_loss},
                      layer_response_stds=responses.to_dict("list"), gradient_norms=gradients.to_dict("list"))
    print(f"{demo_path(args.name)}: test error {report.test_error:.4f}")


if __name__ == "__main__":
    main()
