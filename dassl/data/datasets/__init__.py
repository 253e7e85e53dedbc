from .base_dataset import DatasetBase, DatasetLayoutError, Datum
from .build import DATASET_REGISTRY, build_dataset
