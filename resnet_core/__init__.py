"""ResNet Explorer's library: the networks of He et al. (2015), their training, evaluation and explanation.

Never imports Streamlit; everything the app shows is reachable from Python and `python -m resnet_core`.
"""
from .model import ResNet, build_model
from .specs import NetSpec, cifar_spec, get_spec, imagenet_spec, list_models
from .paper import PaperFact, paper_facts
from .summary import activation_bytes, count_parameters, layer_table, stage_table

__all__ = [
    "NetSpec", "PaperFact", "activation_bytes", "paper_facts", "ResNet", "build_model", "cifar_spec", "count_parameters", "get_spec", "imagenet_spec",
    "layer_table", "list_models", "stage_table",
]

from .images import InvalidImageError, load_image, model_input_to_image, to_model_input  # noqa: E402

__all__ += ["InvalidImageError", "load_image", "model_input_to_image", "to_model_input"]

from .attribution import Attribution, attribute  # noqa: E402

__all__ += ["Attribution", "attribute"]

from .analysis import gradient_norms, layer_response_stds  # noqa: E402

__all__ += ["gradient_norms", "layer_response_stds"]

from .checkpoint import InvalidCheckpointError, load_model as load_checkpoint, save_model  # noqa: E402

__all__ += ["InvalidCheckpointError", "load_checkpoint", "save_model"]

from .data import ImageData, load_data, synthetic_data  # noqa: E402
from .errors import DatasetError, StoreError, UserError  # noqa: E402
from .evaluate import EvaluationReport, evaluate, evaluate_run, evaluation_report  # noqa: E402
from .recipe import Recipe, paper_recipe  # noqa: E402
from .store import Store  # noqa: E402
from .train import RunEnd, TestMetrics, TrainMetrics, train  # noqa: E402

__all__ += ["DatasetError", "EvaluationReport", "ImageData", "Recipe", "RunEnd", "Store", "StoreError", "TestMetrics",
            "TrainMetrics", "UserError", "evaluate", "evaluate_run", "evaluation_report", "load_data", "paper_recipe",
            "synthetic_data", "train"]

from .classifier import Classifier, WeightsUnavailableError, demo_classifier, imagenet_classifier  # noqa: E402

__all__ += ["Classifier", "WeightsUnavailableError", "demo_classifier", "imagenet_classifier"]
