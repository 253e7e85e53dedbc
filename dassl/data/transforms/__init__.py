from .transforms import AVAI_CHOICES, INTERPOLATION_MODES, SUPPORTED_CHOICES, build_transform, check_transform_choices
