from .data_manager import DataManager, DatasetWrapper, build_data_loader
from .samplers import build_sampler
