"""tools.results through parse_test_res.py: the method comparison table (exact numbers against hand
arithmetic), published numbers beside it, the newest-complete-log rule, and unreadable or
malformed runs that are listed while the rest is aggregated."""

import csv
import io
import json
import math
import os
import re

import pytest

import parse_test_res as ptr
from tests.log_fixtures import eval_only_log, training_log, write
from tools.methods import load_methods
from tools.results import logs
from tools.results.base2new import group_settings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PUBLISHED = os.path.join(REPO, "docs", "published_base2new.csv")
ALIGN = ("shots_16", "ALIGN", "vit_b16_c2_ep20")
ZERO_SHOT = ("shots_16", "ZeroshotCLIP", "vit_b16")
# ALIGN: three seeds on two datasets; zero-shot CLIP: one seed (it draws nothing).
ALIGN_BASE = {"caltech101": {1: 97.2, 2: 97.8, 3: 97.5}, "dtd": {1: 80.2, 2: 81.0, 3: 79.9}}
ALIGN_NEW = {"caltech101": {1: 94.1, 2: 94.7, 3: 93.9}, "dtd": {1: 60.5, 2: 59.1, 3: 61.0}}
ZERO_SHOT_BASE = {"caltech101": {1: 96.8}, "dtd": {1: 53.2}}
ZERO_SHOT_NEW = {"caltech101": {1: 94.0}, "dtd": {1: 59.9}}


def mean(values):
    values = list(values)
    return sum(values) / len(values)


def pstd(values):
    values = list(values)
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / len(values))


def hm(base, new):
    return 2 * base * new / (base + new)


def run_folder(root, side, dataset, setting, seed):
    return os.path.join(root, side, dataset, *setting, f"seed{seed}")


def make_runs(root, base, new, setting, trained=True):
    for dataset, by_seed in base.items():
        for seed, accuracy in by_seed.items():
            side, maker = ("train_base", training_log) if trained else ("test_base", eval_only_log)
            folder = run_folder(root, side, dataset, setting, seed)
            write(os.path.join(folder, "log.txt"), maker(folder, accuracy))
    for dataset, by_seed in new.items():
        for seed, accuracy in by_seed.items():
            folder = run_folder(root, "test_new", dataset, setting, seed)
            write(os.path.join(folder, "log.txt"), eval_only_log(folder, accuracy))


@pytest.fixture
def two_methods(tmp_path):
    root = str(tmp_path / "base2new")
    make_runs(root, ALIGN_BASE, ALIGN_NEW, ALIGN)
    make_runs(root, ZERO_SHOT_BASE, ZERO_SHOT_NEW, ZERO_SHOT, trained=False)
    return root


def run_cli(capsys, *argv):
    status = ptr.cli([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def table_rows(text):
    """{first cell: cells} of the comparison table's rows (columns split on 2+ spaces)."""
    rows = {}
    for line in text.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if re.fullmatch(r"ALIGN|ZeroshotCLIP|caltech101|dtd", cells[0]):
            key = cells[0] if not line.startswith("  ") else "  " + cells[0]
            rows.setdefault(key, []).append(cells)
    return rows


def expected_method(base, new):
    """A method's row by hand: average over datasets of the per-dataset means, and the std over
    seeds of the per-seed averages over datasets (the seeds every dataset has)."""
    datasets = sorted(base)
    avg_base = mean(mean(base[d].values()) for d in datasets)
    avg_new = mean(mean(new[d].values()) for d in datasets)
    seeds = sorted(set.intersection(*(set(base[d]) & set(new[d]) for d in datasets)))
    per_seed_base = [mean(base[d][s] for d in datasets) for s in seeds]
    per_seed_new = [mean(new[d][s] for d in datasets) for s in seeds]
    return dict(
        seeds=seeds,
        base=avg_base,
        new=avg_new,
        hm=hm(avg_base, avg_new),
        base_std=pstd(per_seed_base),
        new_std=pstd(per_seed_new),
    )


def test_comparison_table_numbers_are_the_hand_values(two_methods, capsys):
    align = expected_method(ALIGN_BASE, ALIGN_NEW)
    zero_shot = expected_method(ZERO_SHOT_BASE, ZERO_SHOT_NEW)
    # The HM of the averages, not the mean of the per-dataset HMs (papers' definition).
    mean_of_hms = mean(hm(mean(ALIGN_BASE[d].values()), mean(ALIGN_NEW[d].values())) for d in ALIGN_BASE)
    assert align["hm"] != pytest.approx(mean_of_hms, abs=1e-3)

    status, text, _ = run_cli(capsys, two_methods, "--base2new")
    assert status == 0
    assert text.startswith(f"Base-to-new comparison in {two_methods} (accuracy %")
    rows = table_rows(text)
    for name, row in (("ALIGN", align), ("ZeroshotCLIP", zero_shot)):
        assert rows[name] == [
            [
                name,
                ",".join(map(str, row["seeds"])),
                "2",
                f"{row['base']:.2f} +- {row['base_std']:.2f}",
                f"{row['new']:.2f} +- {row['new_std']:.2f}",
                f"{row['hm']:.2f}",
            ]
        ]
    assert "  caltech101" not in rows  # datasets only with --per-dataset

    _, json_text, _ = run_cli(capsys, two_methods, "--base2new", "--format", "json")
    comparison = {entry["method"]: entry for entry in json.loads(json_text)["comparison"]}
    for name, row in (("ALIGN", align), ("ZeroshotCLIP", zero_shot)):
        entry = comparison[name]
        assert entry["seeds"] == row["seeds"] and entry["datasets"] == ["caltech101", "dtd"]
        for side in ("base", "new"):
            assert entry[side]["mean"] == pytest.approx(row[side], abs=1e-12)
            assert entry[side]["std"] == pytest.approx(row[f"{side}_std"], abs=1e-12)
        assert entry["hm"] == pytest.approx(row["hm"], abs=1e-12)
        assert entry["published"] is None

    _, csv_text, _ = run_cli(capsys, two_methods, "--base2new", "--format", "csv")
    (average,) = [r for r in csv.DictReader(io.StringIO(csv_text)) if r["kind"] == "average" and r["method"] == "ALIGN"]
    for key in ("base", "base_std", "new", "new_std", "hm"):
        assert float(average[key]) == pytest.approx(align[key], abs=1e-12)
    assert average["seeds"] == "1 2 3"


def test_per_dataset_rows_and_method_order(two_methods, capsys):
    status, text, _ = run_cli(capsys, two_methods, "--base2new", "--per-dataset", "--methods", "ZeroshotCLIP,ALIGN")
    assert status == 0
    first_cells = [re.split(r"\s{2,}", line.strip())[0] for line in text.splitlines()[3:7]]
    assert first_cells == ["ZeroshotCLIP", "caltech101", "dtd", "ALIGN"]
    rows = table_rows(text)
    b, n = list(ALIGN_BASE["dtd"].values()), list(ALIGN_NEW["dtd"].values())
    assert rows["  dtd"][1] == [
        "dtd",
        "1,2,3",
        f"{mean(b):.2f} +- {pstd(b):.2f}",
        f"{mean(n):.2f} +- {pstd(n):.2f}",
        f"{hm(mean(b), mean(n)):.2f}",
    ]
    # A single method with --per-dataset is a comparison too.
    _, text, _ = run_cli(capsys, two_methods, "--base2new", "--methods", "ALIGN", "--per-dataset")
    assert text.startswith("Base-to-new comparison") and "ZeroshotCLIP" not in text
    # A trainer named twice (two methods may share one) gives its rows once.
    _, json_text, _ = run_cli(
        capsys, two_methods, "--base2new", "--methods", "ALIGN,ZeroshotCLIP,ALIGN", "--format", "json"
    )
    assert [entry["method"] for entry in json.loads(json_text)["comparison"]] == ["ALIGN", "ZeroshotCLIP"]
    # An absent method is said so, the others are printed.
    status, text, _ = run_cli(capsys, two_methods, "--base2new", "--methods", "ALIGN,MaPLe")
    assert status == 0
    assert "Not read:\n  no runs of MaPLe (" in text and "ALIGN" in table_rows(text)


def test_seeds_common_to_all_datasets_give_the_std(tmp_path, capsys):
    """dtd's seed 3 has no new result: the mean stays the mean of the per-dataset means (caltech101
    over 3 seeds, dtd over 2), the std is over the seeds both datasets have (1, 2)."""
    root = str(tmp_path / "base2new")
    new = {"caltech101": ALIGN_NEW["caltech101"], "dtd": {1: 60.5, 2: 59.1}}
    make_runs(root, ALIGN_BASE, new, ALIGN)
    base_caltech, base_dtd = ALIGN_BASE["caltech101"], ALIGN_BASE["dtd"]
    avg_base = (mean(base_caltech.values()) + mean([base_dtd[1], base_dtd[2]])) / 2
    per_seed = [(base_caltech[s] + base_dtd[s]) / 2 for s in (1, 2)]
    _, json_text, _ = run_cli(capsys, root, "--base2new", "--per-dataset", "--format", "json")
    (entry,) = json.loads(json_text)["comparison"]
    assert entry["seeds"] == [1, 2]
    assert entry["base"]["mean"] == pytest.approx(avg_base, abs=1e-12)
    assert entry["base"]["std"] == pytest.approx(pstd(per_seed), abs=1e-12)


def test_reference_prints_published_numbers_beside(two_methods, capsys, tmp_path):
    status, text, _ = run_cli(capsys, two_methods, "--base2new", "--reference", PUBLISHED)
    assert status == 0
    rows = table_rows(text)
    assert rows["ZeroshotCLIP"][0][-3:] == ["69.34", "74.22", "71.70"]  # MaPLe's README: CLIP
    assert len(rows["ALIGN"][0]) == 6  # no published average for ALIGN: blank cells
    assert "Published Base" in text and "Source: MaPLe's README" in text.replace("\n  ", " ")

    # A variant is picked by its cfg: language prompting runs the IVLP trainer.
    reference = ptr.reference.load_reference(PUBLISHED)
    assert reference.find("IVLP", "vit_b16_c2_ep5_batch4_4ctx_language_only", "average").base == 81.72
    assert reference.find("IVLP", "vit_b16_c2_ep5_batch4_2+2ctx", "average").base == 82.15
    assert reference.find("ALIGN", "vit_b16", "average") is None

    bad = tmp_path / "bad.csv"
    bad.write_text("method,base,new\nCoOp,1,2\n")
    with pytest.raises(SystemExit) as exit_info:
        ptr.cli([two_methods, "--base2new", "--reference", str(bad)])
    assert exit_info.value.code == 2
    assert f"--reference: {bad}: expected the header method,cfg,dataset,base,new,hm,name" in capsys.readouterr().err
    bad.write_text("method,cfg,dataset,base,new,hm,name\nCoOp,,average,8x,1,1,CoOp\n")
    with pytest.raises(SystemExit):
        ptr.cli([two_methods, "--base2new", "--reference", str(bad)])
    assert f"{bad}: data row 1: base, new and hm must be numbers" in capsys.readouterr().err


def test_published_file_holds_mapple_readme_averages():
    reference = ptr.reference.load_reference(PUBLISHED)
    published = {(method, cfg): (p.base, p.new, p.hm) for method, cfg, dataset, p in reference.rows}
    maple_readme = {
        ("ZeroshotCLIP", ""): (69.34, 74.22, 71.70),
        ("CoOp", ""): (82.69, 63.22, 71.66),
        ("CoCoOp", ""): (80.47, 71.69, 75.83),
        ("VPT", ""): (80.24, 73.43, 76.68),
        ("IVLP", "language_only"): (81.72, 73.81, 77.56),
        ("IVLP", ""): (82.15, 74.07, 77.90),
        ("MaPLe", ""): (82.28, 75.14, 78.55),
        ("KgCoOp", ""): (80.73, 73.60, 77.00),  # KgCoOp's README
    }
    assert {key: published[key] for key in maple_readme if key in published} == maple_readme
    assert len(published) == len(reference.rows)  # one row per method and variant
    assert all(dataset == "average" for _, _, dataset, _ in reference.rows)
    for base, new, hm_value in published.values():  # the typed HMs are the HMs of the averages
        assert hm(base, new) == pytest.approx(hm_value, abs=0.005)
    assert "MaPLe's README" in reference.source and "KgCoOp's README" in reference.source


def labels(keys, methods):
    return [s.label for s in group_settings({key: set(datasets) for key, datasets in keys.items()}, methods)]


def test_a_method_is_one_row_over_its_per_dataset_recipes_and_variants_stay_apart():
    """Rows come from the registry: a method's per-dataset recipes are one row (ALIGN on SUN397,
    CoOp on ImageNet), two methods of one trainer stay apart by their names, runs no method claims
    keep a trainer row (MMP, all its recipes) or a trainer-and-recipe row (IVLP with another
    recipe)."""
    methods = load_methods()
    keys = {
        ("shots_16", "ALIGN", "vit_b16_c2_ep20_batch4_2ctx"): ["caltech101", "dtd"],
        ("shots_16", "ALIGN", "vit_b16_c2_ep20_batch4_2ctx_sun397"): ["sun397"],
        ("shots_16", "CoOp", "vit_b16_ctxv1"): ["dtd"],
        ("shots_16", "CoOp", "vit_b16_ep50_ctxv1"): ["imagenet"],
        ("shots_16", "IVLP", "vit_b16_c2_ep5_batch4_2+2ctx"): ["dtd"],
        ("shots_16", "IVLP", "vit_b16_c2_ep5_batch4_4ctx_language_only"): ["dtd"],
        ("shots_16", "IVLP", "my_variant"): ["dtd"],
        ("shots_16", "MMP", "vit_b16_c2_ep5_batch4_2ctx"): ["dtd"],
        ("shots_16", "MMP", "sun397"): ["sun397"],
    }
    settings = group_settings({key: set(datasets) for key, datasets in keys.items()}, methods)
    by_label = {s.label: s for s in settings}
    assert sorted(by_label) == ["ALIGN", "CoOp", "IVLP", "IVLP (my_variant)", "LanguagePrompting", "MMP"]
    align = by_label["ALIGN"]
    assert align.cfgs == ("vit_b16_c2_ep20_batch4_2ctx", "vit_b16_c2_ep20_batch4_2ctx_sun397")
    assert align.cfg_of("sun397") == "vit_b16_c2_ep20_batch4_2ctx_sun397" and align.cfg_of("dtd") == align.cfgs[0]
    assert align.describe_cfgs() == "vit_b16_c2_ep20_batch4_2ctx (sun397: vit_b16_c2_ep20_batch4_2ctx_sun397)"
    assert by_label["LanguagePrompting"].method == "LanguagePrompting" and by_label["MMP"].method is None
    assert by_label["MMP"].cfg_of("sun397") == "sun397" and by_label["IVLP (my_variant)"].method is None

    # A dataset run under two recipes of a method: the method's own recipe keeps the method's row.
    keys = {
        ("shots_16", "ALIGN", "vit_b16_c2_ep20_batch4_2ctx"): ["caltech101", "dtd"],
        ("shots_16", "ALIGN", "ablation"): ["dtd"],
    }
    assert labels(keys, methods) == ["ALIGN", "ALIGN (ablation)"]
    # The same method at two shot counts; without a registry, a row per trainer and recipe.
    keys = {("shots_4", "CoOp", "x"): ["dtd"], ("shots_16", "CoOp", "x"): ["dtd"]}
    assert labels(keys, methods) == ["CoOp [shots_16]", "CoOp [shots_4]"]
    keys = {("shots_16", "IVLP", "a_language_only"): ["dtd"], ("shots_16", "IVLP", "b_2+2ctx"): ["dtd"]}
    assert labels(keys, None) == ["IVLP (a_language_only)", "IVLP (b_2+2ctx)"]


def test_a_dataset_with_its_own_recipe_is_in_its_methods_row(tmp_path, capsys):
    """ALIGN runs SUN397 with its own recipe: the table has one ALIGN row over the three datasets
    (not a 2-dataset row and a 1-dataset row with "sun397: no runs"); --methods takes method
    names (LanguagePrompting runs the IVLP trainer) and still takes trainer names."""
    root = str(tmp_path / "base2new")
    make_runs(root, ALIGN_BASE, ALIGN_NEW, ("shots_16", "ALIGN", "vit_b16_c2_ep20_batch4_2ctx"))
    sun_base, sun_new = {"sun397": {1: 78.0, 2: 79.0, 3: 80.0}}, {"sun397": {1: 76.0, 2: 77.0, 3: 78.0}}
    make_runs(root, sun_base, sun_new, ("shots_16", "ALIGN", "vit_b16_c2_ep20_batch4_2ctx_sun397"))
    lp = ("shots_16", "IVLP", "vit_b16_c2_ep5_batch4_4ctx_language_only")
    make_runs(root, {"dtd": {1: 70.0}}, {"dtd": {1: 50.0}}, lp)
    make_runs(root, {"dtd": {1: 72.0}}, {"dtd": {1: 52.0}}, ("shots_16", "IVLP", "vit_b16_c2_ep5_batch4_2+2ctx"))

    datasets = "caltech101,dtd,sun397"
    status, text, _ = run_cli(capsys, root, "--base2new", "--datasets", datasets, "--methods", "ALIGN")
    assert status == 0 and "no runs" not in text
    assert "shots_16 / ALIGN / vit_b16_c2_ep20_batch4_2ctx (sun397: vit_b16_c2_ep20_batch4_2ctx_sun397)" in text
    assert "Average (3 datasets)" in text
    base = {**ALIGN_BASE, **sun_base}
    new = {**ALIGN_NEW, **sun_new}
    align = expected_method(base, new)
    _, json_text, _ = run_cli(capsys, root, "--base2new", "--format", "json")
    comparison = {entry["method"]: entry for entry in json.loads(json_text)["comparison"]}
    assert sorted(comparison) == ["ALIGN", "IVLP", "LanguagePrompting"]
    assert comparison["ALIGN"]["datasets"] == ["caltech101", "dtd", "sun397"]
    assert comparison["ALIGN"]["base"]["mean"] == pytest.approx(align["base"], abs=1e-12)
    assert comparison["ALIGN"]["hm"] == pytest.approx(align["hm"], abs=1e-12)
    assert comparison["LanguagePrompting"]["base"]["mean"] == 70.0 and comparison["IVLP"]["base"]["mean"] == 72.0
    _, csv_text, _ = run_cli(capsys, root, "--base2new", "--format", "csv", "--methods", "ALIGN")
    (sun_row,) = [
        r for r in csv.DictReader(io.StringIO(csv_text)) if r["kind"] == "dataset" and r["dataset"] == "sun397"
    ]
    assert sun_row["cfg"] == "vit_b16_c2_ep20_batch4_2ctx_sun397" and sun_row["method"] == "ALIGN"

    _, text, _ = run_cli(capsys, root, "--base2new", "--methods", "LanguagePrompting,ALIGN")
    lines = text.splitlines()
    assert lines[3].startswith("LanguagePrompting ") and lines[4].startswith("ALIGN ")
    # The fixture's logs are of the older form, without the model file lines: said in one note.
    assert lines[5:] == [
        "Note: 10 new results of trained models record no model file (logs of an older version): not checked "
        "against their base run's model"
    ]
    _, json_text, _ = run_cli(capsys, root, "--base2new", "--methods", "LanguagePrompting,IVLP", "--format", "json")
    assert [e["method"] for e in json.loads(json_text)["comparison"]] == ["LanguagePrompting", "IVLP"]
    # A trainer name that is no method's (the official MMP): all its recipes in one row.
    make_runs(root, {"dtd": {1: 80.0}}, {"dtd": {1: 60.0}}, ("shots_16", "MMP", "vit_b16_c2_ep5_batch4_2ctx"))
    make_runs(root, {"sun397": {1: 78.0}}, {"sun397": {1: 76.0}}, ("shots_16", "MMP", "sun397"))
    _, json_text, _ = run_cli(capsys, root, "--base2new", "--methods", "MMP", "--per-dataset", "--format", "json")
    ((entry,), settings) = (json.loads(json_text)["comparison"], json.loads(json_text)["settings"])
    assert (entry["method"], entry["datasets"]) == ("MMP", ["dtd", "sun397"])
    assert [row["cfg"] for row in settings[0]["rows"]] == ["vit_b16_c2_ep5_batch4_2ctx", "sun397"]


# ------------------------------------------------------------------------------------------------
# The newest complete log of a folder
# ------------------------------------------------------------------------------------------------

ACCURACY = logs.keyword_metric("accuracy")


def test_read_run_takes_the_newest_complete_log(tmp_path):
    folder = tmp_path / "seed1"
    write(folder / "log.txt", training_log("x", 50.0))
    write(folder / "log.txt-2024-05-01-12-00-00", training_log("x", 60.0))
    write(folder / "log.txt-2024-05-03-09-00-00", training_log("x", 70.0, finished=False))
    read = logs.read_run(str(folder), [ACCURACY], logs.TRAIN_END_SIGNALS)
    assert (read.status, read.values, read.path) == (
        logs.FOUND,
        {"accuracy": 60.0},
        str(folder / "log.txt-2024-05-01-12-00-00"),
    )
    # Newer than every complete log and still without a result: the result stays the older one.
    assert logs.run_logs(str(folder)) == [
        str(folder / "log.txt-2024-05-03-09-00-00"),
        str(folder / "log.txt-2024-05-01-12-00-00"),
        str(folder / "log.txt"),
    ]


def test_read_run_without_a_complete_log_reports_the_newest(tmp_path):
    folder = tmp_path / "seed1"
    write(folder / "log.txt", training_log("x", 50.0, finished=False))
    write(folder / "log.txt-2024-05-01-12-00-00", training_log("x", 60.0, finished=False))
    read = logs.read_run(str(folder), [ACCURACY], logs.TRAIN_END_SIGNALS)
    assert read.status == logs.MISSING and read.path == str(folder / "log.txt-2024-05-01-12-00-00")
    assert read.problem == 'no "Finish training" or "Finished training" line; none in the 1 earlier log either'


def test_a_malformed_newest_log_is_not_replaced_by_an_older_result(tmp_path):
    folder = tmp_path / "seed1"
    write(folder / "log.txt", eval_only_log("x", 50.0))
    write(folder / "log.txt-2024-05-01-12-00-00", "=> result\n* accuracy: 7.7.7%\n")
    read = logs.read_run(str(folder), [ACCURACY], (logs.TEST_END_SIGNAL,))
    assert read.status == logs.MALFORMED
    assert read.problem == f"{folder}/log.txt-2024-05-01-12-00-00:2: expected a number in '* accuracy: 7.7.7%'"


# ------------------------------------------------------------------------------------------------
# One bad run does not abort the table
# ------------------------------------------------------------------------------------------------


def test_malformed_and_unreadable_runs_are_listed_and_the_rest_aggregated(two_methods, capsys, monkeypatch):
    malformed = run_folder(two_methods, "test_new", "dtd", ALIGN, 2)
    write(os.path.join(malformed, "log.txt"), "=> result\n* accuracy: 6.0.1%\n")
    unreadable = run_folder(two_methods, "test_new", "caltech101", ALIGN, 3)
    os.remove(os.path.join(unreadable, "log.txt"))
    os.mkdir(os.path.join(unreadable, "log.txt"))  # not a file: reading it fails
    hidden = os.path.join(two_methods, "train_base", "dtd")  # a folder that cannot be listed
    real_listdir = os.listdir

    def listdir(path):
        if str(path) == hidden:
            raise PermissionError(13, "Permission denied")
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir)
    status, text, _ = run_cli(capsys, two_methods, "--base2new", "--methods", "ALIGN", "--per-dataset")
    assert status == 0
    lines = text.splitlines()
    log = f"{malformed}/log.txt"
    assert f"  ALIGN: dtd seed2 new: malformed: {log}:2: expected a number in '* accuracy: 6.0.1%' ({log})" in lines
    assert any(line.startswith("  ALIGN: caltech101 seed3 new: unreadable: cannot read it: ") for line in lines)
    assert f"  unreadable: cannot list it: Permission denied ({hidden})" in lines
    # The rest aggregates: caltech101 over seeds 1, 2; dtd over seeds 1, 3 (found through test_new/,
    # its base runs are read where they are even though their dataset folder could not be listed).
    base = {
        "caltech101": {s: ALIGN_BASE["caltech101"][s] for s in (1, 2)},
        "dtd": {s: ALIGN_BASE["dtd"][s] for s in (1, 3)},
    }
    new = {
        "caltech101": {s: ALIGN_NEW["caltech101"][s] for s in (1, 2)},
        "dtd": {s: ALIGN_NEW["dtd"][s] for s in (1, 3)},
    }
    align = expected_method(base, new)
    assert align["seeds"] == [1]
    assert table_rows(text)["ALIGN"][0] == [
        "ALIGN",
        "1",
        "2",
        f"{align['base']:.2f} +- {align['base_std']:.2f}",
        f"{align['new']:.2f} +- {align['new_std']:.2f}",
        f"{align['hm']:.2f}",
    ]


def test_runs_mode_lists_unreadable_and_malformed_runs(tmp_path, capsys, monkeypatch):
    exp = tmp_path / "exp"
    for seed, accuracy in ((1, 90.4), (2, 92.0)):
        write(exp / f"seed{seed}" / "log.txt", training_log("x", accuracy))
    write(exp / "seed3" / "log.txt", training_log("x", 1.0).replace("* accuracy: 1.0%", "* accuracy: 1..0%"))
    (exp / "seed4").mkdir()
    real_listdir = os.listdir

    def listdir(path):
        if str(path).endswith("seed4"):
            raise OSError(5, "I/O error")
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir)
    status, out, _ = run_cli(capsys, exp)
    assert status == 0
    lines = out.splitlines()
    assert f"malformed: {exp}/seed3/log.txt ({exp}/seed3/log.txt:" in "\n".join(lines)
    assert f"unreadable: {exp}/seed4/log.txt (cannot list the run folder: I/O error)" in lines
    assert "* accuracy: 91.20% +- 0.80%" in lines

    _, csv_text, _ = run_cli(capsys, exp, "--format", "csv")
    kinds = [(r["run"], r["kind"]) for r in csv.DictReader(io.StringIO(csv_text)) if r["run"]]
    assert ("seed3", "malformed") in kinds and ("seed4", "unreadable") in kinds
    _, json_text, _ = run_cli(capsys, exp, "--format", "json")
    (experiment,) = json.loads(json_text)["experiments"]
    assert [r["run"] for r in experiment["malformed"]] == ["seed3"]
    assert [r["run"] for r in experiment["unreadable"]] == ["seed4"]
