"""ToyShapes: coloured shapes rendered by ``tools/toy_world.py`` (the demo's offline dataset).

36 classes = 6 colours x 6 shapes, named "<colour> <shape>" ("red circle"). The label order puts
every colour and every shape in the base half (labels 0..17, what ``SUBSAMPLE_CLASSES base``
keeps) while the new half (labels 18..35) holds only colour-shape pairs never seen in base: the
new classes are novel combinations of seen attributes. Concretely, with colour index c and shape
index s, (c, s) is a base class when (s - c) mod 6 is 0, 1 or 2, so every colour meets three
base shapes and every shape three base colours.

The labels come from the split file, not from sorting the class folders (that would mix base
and new), so ``split_zhou_ToyShapes.json`` is required; ``python -m tools.toy_world --root ROOT``
writes the whole tree.
"""

from dassl.data.datasets import DATASET_REGISTRY

from .base import BenchmarkDataset

COLOURS = ("red", "orange", "yellow", "green", "blue", "purple")
SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")


def is_base_pair(colour_index, shape_index):
    """Whether (colour, shape) belongs to the base half: the three shapes "after" each colour."""
    return (shape_index - colour_index) % len(SHAPES) < len(SHAPES) // 2


def class_pairs():
    """(colour, shape) of every label in label order: 18 base pairs, then 18 new pairs.

    Within a half the order is colour-major, shape-minor.
    """
    grid = [(c, s) for c in range(len(COLOURS)) for s in range(len(SHAPES))]
    base = [(COLOURS[c], SHAPES[s]) for c, s in grid if is_base_pair(c, s)]
    new = [(COLOURS[c], SHAPES[s]) for c, s in grid if not is_base_pair(c, s)]
    return base + new


def classname(colour, shape):
    return f"{colour} {shape}"


def class_folder(colour, shape):
    return f"{colour}_{shape}"


CLASSNAMES = tuple(classname(colour, shape) for colour, shape in class_pairs())
NUM_BASE = (len(CLASSNAMES) + 1) // 2  # ceil(n/2), as subsample_classes splits the labels

GENERATE_COMMAND = "python -m tools.toy_world --root <DATASET.ROOT>"


@DATASET_REGISTRY.register()
class ToyShapes(BenchmarkDataset):
    """The toy world's dataset; constructor steps, few-shot caches and base/new as the others."""

    dataset_dir = "toy_shapes"
    image_dir = "images"
    split_file = "split_zhou_ToyShapes.json"
    LAYOUT = f"""\
toy_shapes/
    images/<colour>_<shape>/<n>.png     36 class folders, e.g. images/red_circle/0000.png
    split_zhou_ToyShapes.json           written with the images by: {GENERATE_COMMAND}
    split_fewshot/                      few-shot caches, written by the loader"""
    STANDARD_SIZES = {"classes": 36, "train": 864, "val": 288, "test": 864}
    IMAGE_DIR_FIX = f"generate the toy world: {GENERATE_COMMAND}"

    def read_raw_split(self):
        # The labels are the generator's class order, which no folder listing can recover.
        raise self.context.error(
            f"{self.split_file} not found",
            self.split_path,
            "the train/val/test split and the label order",
            fix=f"generate the toy world again: {GENERATE_COMMAND}",
        )

    def load_split(self):
        """The split file, checked to use this module's label order (base half first)."""
        (train, val, test), source = super().load_split()
        for key, items in (("train", train), ("val", val), ("test", test)):
            for index, item in enumerate(items):
                if not 0 <= item.label < len(CLASSNAMES) or item.classname != CLASSNAMES[item.label]:
                    raise self.context.error(
                        f'entry {index} of "{key}" has label {item.label} with class name '
                        f"{item.classname!r}; this version of "
                        f"ToyShapes expects the labels 0..{len(CLASSNAMES) - 1} to be {list(CLASSNAMES)}",
                        source,
                        "the label order (base classes first)",
                        fix=f"generate the toy world again: {GENERATE_COMMAND}",
                    )
        return (train, val, test), source
