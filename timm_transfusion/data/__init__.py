"""Dataset specs -> ``datasets.Dataset`` (columns ``image``, ``label``) and timm transforms."""

from .errors import DatasetSpecError, LabelError, PipelineError
from .labels import LabelInfo, check_labels, label_info
from .pipeline import PIPELINES, InputPipeline, ModelInputs, PipelineChoice, build_pipeline, choose_pipeline
from .specs import SPEC_KINDS, load_dataset_spec, parse_spec
from .synthetic import TASKS as SYNTHETIC_TASKS
from .transforms import TransformedDataset, build_transform, data_config_for, normalize_on_device

__all__ = [
    "PIPELINES",
    "InputPipeline",
    "ModelInputs",
    "PipelineChoice",
    "PipelineError",
    "build_pipeline",
    "choose_pipeline",
    "SPEC_KINDS",
    "SYNTHETIC_TASKS",
    "DatasetSpecError",
    "LabelError",
    "LabelInfo",
    "TransformedDataset",
    "build_transform",
    "check_labels",
    "data_config_for",
    "label_info",
    "load_dataset_spec",
    "normalize_on_device",
    "parse_spec",
]
