"""The 15 benchmark datasets of CoOp/MaPLe/ALIGN (and the demo's ToyShapes); importing this
package registers them all.

Layouts, split files and standard sizes: docs/datasets.md. ``BENCHMARKS`` lists the classes in
the order of its summary table; the yaml name of each (configs/datasets/<name>.yaml) is its
module name.

The shared pieces live in modules with one job each: ``annotations`` (reading annotation files,
error messages), ``splits`` (split files and split algorithms), ``caches`` (few-shot caches and
ImageNet's preprocessed.pkl) and ``base`` (the dataset base classes).
"""

from .caltech101 import Caltech101
from .dtd import DescribableTextures
from .eurosat import EuroSAT
from .fgvc_aircraft import FGVCAircraft
from .food101 import Food101
from .imagenet import ImageNet
from .imagenet_a import ImageNetA
from .imagenet_r import ImageNetR
from .imagenet_sketch import ImageNetSketch
from .imagenetv2 import ImageNetV2
from .oxford_flowers import OxfordFlowers
from .oxford_pets import OxfordPets
from .stanford_cars import StanfordCars
from .sun397 import SUN397
from .toy_shapes import ToyShapes  # noqa: F401  (the demo's offline dataset, not a benchmark)
from .ucf101 import UCF101

BENCHMARKS = (
    ImageNet,
    Caltech101,
    OxfordPets,
    StanfordCars,
    OxfordFlowers,
    Food101,
    FGVCAircraft,
    SUN397,
    DescribableTextures,
    EuroSAT,
    UCF101,
    ImageNetV2,
    ImageNetSketch,
    ImageNetA,
    ImageNetR,
)


def yaml_name(dataset_class):
    """configs/datasets/<yaml_name>.yaml configures ``dataset_class`` (= its module name)."""
    return dataset_class.__module__.rsplit(".", 1)[-1]
