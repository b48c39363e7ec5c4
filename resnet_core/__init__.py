"""ResNet Explorer's library: the networks of He et al. (2015), their training, evaluation and explanation.

Never imports Streamlit; everything the app shows is reachable from Python and `python -m resnet_core`.
Exports load on first use (PEP 562): a training process started by the app must show its first point
within seconds, so `import resnet_core` must not pull in pandas, torchinfo or captum.
"""
import importlib
import importlib.util

# Where each module lives, by job; `resnet_core.specs` and friends resolve through it, as they did before the
# modules were grouped into subpackages.
_MODULES = {
    **{name: f"nets.{name}" for name in ("specs", "blocks", "model", "summary", "paper")},
    **{name: f"training.{name}" for name in ("recipe", "data", "augment", "train", "evaluate", "checkpoint", "device",
                                             "memory", "image_files")},
    **{name: f"runs.{name}" for name in ("store", "schema", "admission", "dispatch", "control", "executor",
                                         "settings")},
    **{name: f"explain.{name}" for name in ("attribution", "analysis", "images", "classifier")},
}
# public name -> (module, attribute)
_EXPORTS = {
    **{name: ("specs", name) for name in ("NetSpec", "cifar_spec", "get_spec", "imagenet_spec", "list_models")},
    **{name: ("model", name) for name in ("ResNet", "build_model")},
    **{name: ("paper", name) for name in ("PaperFact", "paper_facts")},
    **{name: ("summary", name) for name in ("activation_bytes", "count_parameters", "layer_table", "stage_table")},
    **{name: ("image_files", name) for name in ("InvalidImageError", "load_image")},
    **{name: ("images", name) for name in ("model_input_to_image", "to_model_input")},
    **{name: ("attribution", name) for name in ("Attribution", "attribute")},
    **{name: ("analysis", name) for name in ("gradient_norms", "layer_response_stds")},
    "InvalidCheckpointError": ("checkpoint", "InvalidCheckpointError"),
    "load_checkpoint": ("checkpoint", "load_model"),
    "save_model": ("checkpoint", "save_model"),
    **{name: ("data", name) for name in ("ImageData", "load_data", "synthetic_data")},
    **{name: ("errors", name) for name in ("DatasetError", "StoreError", "UserError")},
    **{name: ("evaluate", name) for name in ("EvaluationReport", "evaluate", "evaluate_run", "evaluation_report")},
    **{name: ("recipe", name) for name in ("Recipe", "paper_recipe", "training_recipe")},
    "Normalization": ("augment", "Normalization"),
    "Store": ("store", "Store"),
    **{name: ("train", name) for name in ("CheckpointDue", "RunEnd", "TestMetrics", "TrainMetrics", "train")},
    **{name: ("classifier", name) for name in ("Classifier", "WeightsUnavailableError", "demo_classifier",
                                               "imagenet_classifier")},
}
__all__ = sorted(_EXPORTS)


def _module(name: str):
    return importlib.import_module(f".{_MODULES.get(name, name)}", __name__)


def __getattr__(name: str):
    if name not in _EXPORTS:
        # `resnet_core.specs`, `resnet_core.runs` and friends, as an eager package would have them.
        if name not in _MODULES and importlib.util.find_spec(f"{__name__}.{name}") is None:
            raise AttributeError(f"module 'resnet_core' has no attribute {name!r}")
        return _module(name)
    module, attribute = _EXPORTS[name]
    value = getattr(_module(module), attribute)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return __all__
