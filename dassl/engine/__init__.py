from .build import TRAINER_REGISTRY, build_trainer  # isort:skip
from .precision import SUPPORTED_PRECISIONS, Precision, resolve_precision
from .trainer import SimpleTrainer, TrainerBase, TrainerX
