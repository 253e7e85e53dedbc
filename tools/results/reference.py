"""Published numbers beside the measured ones (``parse_test_res.py --base2new --reference FILE``).

FILE is a CSV whose ``#`` lines name the source (printed with the table) and whose columns are::

    method,cfg,dataset,base,new,hm,name

- method: the trainer name as in the output folders (ZeroshotCLIP, CoOp, MaPLe, ...);
- cfg: empty, or a piece of the config name that singles a variant out (``language_only`` for
  language prompting, which runs the IVLP trainer); a row with a cfg wins over one without;
- dataset: ``average`` (the average over datasets) or a dataset name;
- base, new, hm: accuracies in %; name: how the source calls the method.

docs/published_base2new.csv holds the averages of MaPLe's README and of PromptSRC's.
"""

import csv
import dataclasses

from .records import Published

COLUMNS = ("method", "cfg", "dataset", "base", "new", "hm", "name")
AVERAGE = "average"


class ReferenceFileError(ValueError):
    """A reference file that cannot be used; the message names the file and what is wrong."""


@dataclasses.dataclass(frozen=True)
class Reference:
    path: str
    source: str  # the file's comment lines, joined
    rows: tuple  # (method, cfg, dataset, Published)

    def find(self, trainer, cfg, dataset):
        """The Published numbers for a table row, or None (the most specific matching row).

        cfg: the row's recipe, or several (a method's average over datasets with their own
        recipes): a row's cfg piece matches when it is in one of them."""
        cfgs = (cfg,) if isinstance(cfg, str) else tuple(cfg)
        matches = [
            (bool(row_cfg), published)
            for method, row_cfg, row_dataset, published in self.rows
            if method.lower() == trainer.lower() and row_dataset == dataset and any(row_cfg in c for c in cfgs)
        ]
        return max(matches, key=lambda match: match[0])[1] if matches else None


def load_reference(path):
    """Read a reference file (see the module docstring); raises ReferenceFileError."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            lines = f.read().splitlines()
    except OSError as error:
        raise ReferenceFileError(f"cannot read {path}: {error.strerror or error}") from None
    source = " ".join(line.lstrip("#").strip() for line in lines if line.startswith("#"))
    table = [line for line in lines if line.strip() and not line.startswith("#")]
    reader = csv.DictReader(table)
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise ReferenceFileError(
            f"{path}: expected the header {','.join(COLUMNS)}, got {','.join(reader.fieldnames or [])}"
        )
    rows = []
    for number, row in enumerate(reader, start=2):
        try:
            values = [float(row[key]) for key in ("base", "new", "hm")]
        except (TypeError, ValueError):
            raise ReferenceFileError(
                f"{path}: data row {number - 1}: base, new and hm must be numbers, got {row}"
            ) from None
        if not row["method"] or not row["dataset"]:
            raise ReferenceFileError(f"{path}: data row {number - 1}: method and dataset must not be empty")
        rows.append((row["method"], row["cfg"], row["dataset"], Published(*values, name=row["name"])))
    return Reference(path, source, tuple(rows))


def attach(report, reference):
    """The report with published numbers on its dataset rows and averages, printed as a comparison."""
    records = []
    for record in report.records:
        if record.kind in ("dataset", "average"):
            setting = record.setting
            if record.kind == "dataset":
                published = reference.find(setting.trainer, setting.cfg_of(record.dataset), record.dataset)
            else:
                published = reference.find(setting.trainer, setting.cfgs, AVERAGE)
            record = dataclasses.replace(record, published=published)
        records.append(record)
    return dataclasses.replace(
        report, records=records, comparison=True, reference=f"{reference.source} ({reference.path})"
    )
