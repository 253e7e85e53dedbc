"""Tests of parse_test_res.py on logs written here in the engine's exact format (tests/log_fixtures.py:
whole logs with their val-result decoys, not bare result blocks). Expected numbers are computed by
hand with ``mean`` and ``pstd`` below (plain loops), never with the module under test.
"""

import argparse
import csv
import io
import json
import math
import os
import re
import subprocess
import sys

import pytest

import parse_test_res as ptr
from tests.log_fixtures import eval_only_log, result_block, training_log, write

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------------------------
# Hand references
# ------------------------------------------------------------------------------------------------


def mean(values):
    total = 0.0
    for value in values:
        total += value
    return total / len(values)


def pstd(values):
    """Population std (ddof 0)."""
    m = mean(values)
    total = 0.0
    for value in values:
        total += (value - m) ** 2
    return math.sqrt(total / len(values))


def hm(base, new):
    return 2 * base * new / (base + new)


def run_cli(capsys, *argv):
    """(exit status, stdout, stderr) of the command line, in-process."""
    status = ptr.cli([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def csv_rows(text):
    return list(csv.DictReader(io.StringIO(text)))


# ------------------------------------------------------------------------------------------------
# read_log
# ------------------------------------------------------------------------------------------------

ACCURACY = ptr.keyword_metric("accuracy")


@pytest.mark.parametrize(
    "end_lines",
    [("Finish training",), ("Finished training",), ("Finish training", "Finished training")],
)
def test_training_log_gives_the_final_test_not_the_val_decoys(tmp_path, end_lines):
    log = write(tmp_path / "log.txt", training_log("out/seed1", 90.4, end_lines=end_lines))
    assert ptr.read_log(log, [ACCURACY], ptr.TRAIN_END_SIGNALS) == ({"accuracy": 90.4}, None)


def test_last_match_after_the_signal_wins(tmp_path):
    text = training_log("out/seed1", 90.4) + result_block(77.7, 70.0)
    log = write(tmp_path / "log.txt", text)
    assert ptr.read_log(log, [ACCURACY], ptr.TRAIN_END_SIGNALS) == ({"accuracy": 77.7}, None)


def test_problems_are_reported_not_raised(tmp_path):
    unfinished = write(tmp_path / "a" / "log.txt", training_log("out", 90.4, finished=False))
    values, problem = ptr.read_log(unfinished, [ACCURACY], ptr.TRAIN_END_SIGNALS)
    assert values == {} and problem == 'no "Finish training" or "Finished training" line'

    no_metric = write(tmp_path / "b" / "log.txt", training_log("out", 90.4))
    values, problem = ptr.read_log(no_metric, [ptr.keyword_metric("error_rate")], ("=> result",))
    assert values == {} and problem == 'no "* error_rate: ...%" line after "=> result"'

    (tmp_path / "c").mkdir()
    assert ptr.read_log(str(tmp_path / "c" / "log.txt"), [ACCURACY], ("=> result",)) == (
        {},
        "no log.txt",
    )
    assert ptr.read_log(str(tmp_path / "d" / "log.txt"), [ACCURACY], ("=> result",)) == (
        {},
        "no run folder",
    )


def test_malformed_number_is_reported_naming_file_and_line(tmp_path):
    log = write(tmp_path / "log.txt", "=> result\n* accuracy: 9.1.2%\n")
    expected = f"{log}:2: expected a number in '* accuracy: 9.1.2%'"
    assert ptr.read_log(log, [ACCURACY], ("=> result",)) == ({}, expected)


# ------------------------------------------------------------------------------------------------
# Runs mode (the CoOp CLI)
# ------------------------------------------------------------------------------------------------


def make_experiment(root, accuracies, maker=training_log):
    for seed, accuracy in enumerate(accuracies, start=1):
        write(os.path.join(root, f"seed{seed}", "log.txt"), maker(f"{root}/seed{seed}", accuracy))
    return str(root)


def test_coop_output_is_unchanged(tmp_path, capsys):
    exp = make_experiment(tmp_path / "exp", [90.4, 92.0])
    status, out, err = run_cli(capsys, exp)
    assert status == 0
    assert out == (
        f"Parsing files in {exp}\n"
        f"file: {exp}/seed1/log.txt. accuracy: 90.40%. \n"
        f"file: {exp}/seed2/log.txt. accuracy: 92.00%. \n"
        "===\n"
        f"Summary of directory: {exp}\n"
        "* accuracy: 91.20% +- 0.80%\n"
        "===\n"
    )


def test_mean_std_and_ci95_match_hand_values(tmp_path, capsys):
    values = [90.4, 92.0, 91.1]
    exp = make_experiment(tmp_path / "exp", values)
    m, s = mean(values), pstd(values)
    ci = 1.96 * s / math.sqrt(3)

    _, out, _ = run_cli(capsys, exp)
    assert f"* accuracy: {m:.2f}% +- {s:.2f}%" in out.splitlines()
    _, out, _ = run_cli(capsys, exp, "--ci95")
    assert f"* accuracy: {m:.2f}% +- {ci:.2f}%" in out.splitlines()

    _, out, _ = run_cli(capsys, exp, "--ci95", "--format", "json")
    summary = json.loads(out)["experiments"][0]["summary"]["accuracy"]
    assert summary["mean"] == pytest.approx(m, abs=1e-12)
    assert summary["ci95"] == pytest.approx(ci, abs=1e-12)
    assert summary["n"] == 3 and "std" not in summary


def test_text_csv_json_agree(tmp_path, capsys):
    values = [90.4, 92.0, 91.1]
    exp = make_experiment(tmp_path / "exp", values)
    write(os.path.join(exp, "seed4", "log.txt"), training_log("x", 50.0, finished=False))

    _, text, _ = run_cli(capsys, exp)
    _, csv_text, _ = run_cli(capsys, exp, "--format", "csv")
    _, json_text, _ = run_cli(capsys, exp, "--format", "json")

    text_values = [float(v) for v in re.findall(r"^file: .*\. accuracy: ([\d.]+)%\. $", text, re.M)]
    summary_line = re.search(r"\* accuracy: ([\d.]+)% \+- ([\d.]+)%", text)
    text_mean, text_std = map(float, summary_line.groups())

    rows = csv_rows(csv_text)
    csv_values = [float(r["value"]) for r in rows if r["kind"] == "run"]
    (summary_row,) = [r for r in rows if r["kind"] == "summary"]
    (missing_row,) = [r for r in rows if r["kind"] == "missing"]

    document = json.loads(json_text)
    (experiment,) = document["experiments"]
    json_values = [run["values"]["accuracy"] for run in experiment["runs"]]

    assert text_values == csv_values == json_values == values
    for summary_mean, summary_std, n in [
        (float(summary_row["value"]), float(summary_row["std"]), int(summary_row["n"])),
        (
            experiment["summary"]["accuracy"]["mean"],
            experiment["summary"]["accuracy"]["std"],
            experiment["summary"]["accuracy"]["n"],
        ),
    ]:
        assert summary_mean == pytest.approx(mean(values), abs=1e-12)
        assert summary_std == pytest.approx(pstd(values), abs=1e-12)
        assert n == 3
        assert float(f"{summary_mean:.2f}") == text_mean
        assert float(f"{summary_std:.2f}") == text_std
    assert missing_row["run"] == "seed4" and "Finish training" in missing_row["note"]
    assert experiment["missing"] == [
        {"run": "seed4", "file": f"{exp}/seed4/log.txt", "reason": 'no "Finish training" or "Finished training" line'}
    ]


def test_the_newest_complete_log_gives_the_result(tmp_path, capsys):
    """A run started again in its folder logs to log.txt-<time>: the newest log with a complete
    result counts, an unfinished newer one does not hide an older result."""
    exp = make_experiment(tmp_path / "exp", [90.4, 92.0])
    # seed1: a resumed, finished run re-tested into a timestamped file; the newest log wins.
    write(os.path.join(exp, "seed1", "log.txt-2024-05-01-12-00-00"), training_log("x", 10.0))
    write(os.path.join(exp, "seed1", "log.txt-2024-05-02-08-00-00"), training_log("x", 20.0))
    # seed2: a later start that was killed before its result; log.txt's result stands.
    write(os.path.join(exp, "seed2", "log.txt-2024-05-01-12-00-00"), training_log("x", 30.0, finished=False))
    # seed3: only a timestamped log (log.txt was removed by hand), with a result.
    write(os.path.join(exp, "seed3", "log.txt-2024-05-01-12-00-00"), training_log("x", 40.0))
    status, out, _ = run_cli(capsys, exp)
    assert status == 0
    lines = out.splitlines()
    assert f"file: {exp}/seed1/log.txt-2024-05-02-08-00-00. accuracy: 20.00%. " in lines
    assert f"file: {exp}/seed2/log.txt. accuracy: 92.00%. " in lines
    assert f"file: {exp}/seed3/log.txt-2024-05-01-12-00-00. accuracy: 40.00%. " in lines
    values = [20.0, 92.0, 40.0]
    assert f"* accuracy: {mean(values):.2f}% +- {pstd(values):.2f}%" in lines


def test_missing_runs_are_listed_and_left_out(tmp_path, capsys):
    exp = make_experiment(tmp_path / "exp", [90.4, 92.0])
    (tmp_path / "exp" / "seed3").mkdir()  # crashed before the logger started
    write(os.path.join(exp, "seed4", "log.txt"), training_log("x", 50.0, finished=False))
    write(os.path.join(exp, "notes.txt"), "a plain file is not a run\n")
    status, out, _ = run_cli(capsys, exp)
    assert status == 0
    lines = out.splitlines()
    assert f"missing: {exp}/seed3/log.txt (no log.txt)" in lines
    unfinished = 'no "Finish training" or "Finished training" line'
    assert f"missing: {exp}/seed4/log.txt ({unfinished})" in lines
    assert "* accuracy: 91.20% +- 0.80%" in lines
    assert not any("notes.txt" in line for line in lines)


def test_seeds_option_reports_an_absent_seed_and_reads_only_those(tmp_path, capsys):
    exp = make_experiment(tmp_path / "exp", [90.4, 92.0])
    write(os.path.join(exp, "seed7", "log.txt"), training_log("x", 10.0))
    status, out, _ = run_cli(capsys, exp, "--seeds", "1,2,3")
    assert status == 0
    lines = out.splitlines()
    assert f"missing: {exp}/seed3/log.txt (no run folder)" in lines
    assert "* accuracy: 91.20% +- 0.80%" in lines
    assert not any("seed7" in line for line in lines)


def test_test_log_reads_eval_only_logs(tmp_path, capsys):
    values = [75.3, 76.9]
    exp = make_experiment(tmp_path / "exp", values, maker=eval_only_log)
    status, out, _ = run_cli(capsys, exp, "--test-log")
    assert status == 0
    assert f"* accuracy: {mean(values):.2f}% +- {pstd(values):.2f}%" in out.splitlines()

    # Without --test-log an eval-only log has no end-of-training line: nothing found.
    status, out, err = run_cli(capsys, exp)
    assert status == 1
    assert "Nothing found in" in err and "--test-log" in err


def test_keyword_macro_f1(tmp_path, capsys):
    root = tmp_path / "exp"
    f1 = {1: 88.8, 2: 90.1}
    for seed, accuracy in ((1, 90.4), (2, 92.0)):
        write(root / f"seed{seed}" / "log.txt", training_log("x", accuracy, macro_f1=f1[seed]))
    status, out, _ = run_cli(capsys, root, "--keyword", "macro_f1")
    assert status == 0
    lines = out.splitlines()
    assert f"file: {root}/seed1/log.txt. macro_f1: 88.80%. " in lines
    assert f"* macro_f1: {mean(f1.values()):.2f}% +- {pstd(f1.values()):.2f}%" in lines


def test_multi_exp_averages_the_means_and_lists_empty_experiments(tmp_path, capsys):
    a, b = [90.4, 92.0], [80.0, 81.0, 85.0]
    make_experiment(tmp_path / "all" / "exp_a", a)
    make_experiment(tmp_path / "all" / "exp_b", b)
    write(tmp_path / "all" / "exp_c" / "seed1" / "log.txt", training_log("x", 1.0, finished=False))
    root = str(tmp_path / "all")
    status, out, _ = run_cli(capsys, root, "--multi-exp")
    assert status == 0
    average = mean([mean(a), mean(b)])
    assert out.endswith(
        f"Average performance\n* accuracy: {average:.2f}%\nLeft out of the average (no results): {root}/exp_c\n"
    )
    summary_b = f"Summary of directory: {root}/exp_b\n* accuracy: {mean(b):.2f}% +- {pstd(b):.2f}%"
    assert summary_b in out

    _, json_text, _ = run_cli(capsys, root, "--multi-exp", "--format", "json")
    document = json.loads(json_text)
    assert document["average"]["accuracy"]["mean"] == pytest.approx(average, abs=1e-12)
    assert document["average"]["accuracy"]["n"] == 2
    assert document["left_out_of_average"] == [f"{root}/exp_c"]

    _, csv_text, _ = run_cli(capsys, root, "--multi-exp", "--format", "csv")
    (average_row,) = [r for r in csv_rows(csv_text) if r["kind"] == "average"]
    assert float(average_row["value"]) == pytest.approx(average, abs=1e-12)
    assert average_row["n"] == "2"


@pytest.mark.parametrize("layout", ["empty", "absent", "unfinished"])
def test_nothing_found_is_exit_status_1_with_a_message(tmp_path, capsys, layout):
    exp = tmp_path / "exp"
    if layout == "empty":
        exp.mkdir()
    elif layout == "unfinished":
        write(exp / "seed1" / "log.txt", training_log("x", 1.0, finished=False))
    status, _, err = run_cli(capsys, exp)
    assert status == 1
    assert err.startswith("parse_test_res.py: error: Nothing found")
    assert str(exp) in err


def test_script_exit_status_without_traceback(tmp_path):
    (tmp_path / "exp").mkdir()
    done = subprocess.run(
        [sys.executable, "parse_test_res.py", str(tmp_path / "exp")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "Nothing found in" in done.stderr and "Traceback" not in done.stderr


def test_coop_entry_points_keep_their_meaning(tmp_path, capsys):
    exp = make_experiment(tmp_path / "exp", [90.4, 92.0])
    upstream_args = argparse.Namespace(directory=exp, ci95=False, test_log=False, multi_exp=False, keyword="accuracy")
    result = ptr.parse_function(ACCURACY, directory=exp, args=upstream_args, end_signal="Finish training")
    assert result == {"accuracy": pytest.approx(91.2, abs=1e-12)}
    printed = capsys.readouterr().out
    assert printed.splitlines()[-2] == "* accuracy: 91.20% +- 0.80%"

    report = ptr.main(upstream_args, "Finish training")  # CoOp's namespace, no new options
    assert capsys.readouterr().out == printed
    (summary,) = report.of_kind("summary")
    assert summary.stats["accuracy"].n == 2

    with pytest.raises(ptr.NoResultsError, match="Nothing found"):
        ptr.parse_function(ACCURACY, directory=exp, args=upstream_args, end_signal="no such line")


def test_option_combinations_are_checked(tmp_path, capsys):
    for argv in (
        ["--base2new", "--test-log"],
        ["--base2new", "--multi-exp"],
        ["--datasets", "a"],
        ["--seeds", "1,x"],
        ["--format", "xml"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            ptr.cli([str(tmp_path)] + argv)
        assert exit_info.value.code == 2
    capsys.readouterr()


# ------------------------------------------------------------------------------------------------
# Base-to-new mode
# ------------------------------------------------------------------------------------------------

SETTING = ("shots_16", "ALIGN", "vit_b16_c2_ep5")
BASE = {
    "caltech101": {1: 97.2, 2: 97.8, 3: 97.5},
    "dtd": {1: 80.2, 2: 81.0, 3: 79.9},
    "eurosat": {1: 90.0, 2: 91.0, 3: 92.0},  # never tested on new classes
}
NEW = {
    "caltech101": {1: 94.1, 2: 94.7, 3: 93.9},
    "dtd": {1: 60.5, 2: 59.1},  # seed 3 not evaluated
}


def make_base2new(root, base=BASE, new=NEW, setting=SETTING):
    for dataset, by_seed in base.items():
        for seed, accuracy in by_seed.items():
            folder = os.path.join(root, "train_base", dataset, *setting, f"seed{seed}")
            write(os.path.join(folder, "log.txt"), training_log(folder, accuracy))
    for dataset, by_seed in new.items():
        for seed, accuracy in by_seed.items():
            folder = os.path.join(root, "test_new", dataset, *setting, f"seed{seed}")
            write(os.path.join(folder, "log.txt"), eval_only_log(folder, accuracy))
    return str(root)


def expected_table():
    """Per dataset (seeds with both results): Base, New means and stds, HM; then the average."""
    rows = {}
    for dataset in ("caltech101", "dtd"):
        seeds = sorted(set(BASE[dataset]) & set(NEW[dataset]))
        b = [BASE[dataset][s] for s in seeds]
        n = [NEW[dataset][s] for s in seeds]
        rows[dataset] = dict(
            seeds=seeds, base=mean(b), base_std=pstd(b), new=mean(n), new_std=pstd(n), hm=hm(mean(b), mean(n))
        )
    avg_base = mean([rows[d]["base"] for d in rows])
    avg_new = mean([rows[d]["new"] for d in rows])
    return rows, dict(base=avg_base, new=avg_new, hm=hm(avg_base, avg_new))


def parse_text_table(text):
    """{first cell: cells} of the table rows in the text output (columns split on 2+ spaces)."""
    table = {}
    for line in text.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells[0] in ("caltech101", "dtd", "eurosat") or cells[0].startswith("Average"):
            table[cells[0]] = cells
    return table


def test_base2new_numbers_match_hand_values_in_all_formats(tmp_path, capsys):
    root = make_base2new(tmp_path / "base2new")
    rows, average = expected_table()
    # Hand arithmetic for the average, spelled out for the reader:
    assert average["base"] == pytest.approx((97.5 + (80.2 + 81.0) / 2) / 2)
    assert average["new"] == pytest.approx(((94.1 + 94.7 + 93.9) / 3 + (60.5 + 59.1) / 2) / 2)
    # Papers take the HM of the averages, not the average of the per-dataset HMs.
    mean_of_hms = mean([rows["caltech101"]["hm"], rows["dtd"]["hm"]])
    assert average["hm"] != pytest.approx(mean_of_hms, abs=1e-3)

    status, text, _ = run_cli(capsys, root, "--base2new")
    assert status == 0
    table = parse_text_table(text)
    for dataset, row in rows.items():
        assert table[dataset] == [
            dataset,
            ",".join(map(str, row["seeds"])),
            f"{row['base']:.2f} +- {row['base_std']:.2f}",
            f"{row['new']:.2f} +- {row['new_std']:.2f}",
            f"{row['hm']:.2f}",
        ]
    assert table["Average (2 datasets)"] == [
        "Average (2 datasets)",
        *(f"{average[key]:.2f}" for key in ("base", "new", "hm")),
    ]
    assert "eurosat" not in table

    _, csv_text, _ = run_cli(capsys, root, "--base2new", "--format", "csv")
    csv_table = csv_rows(csv_text)
    for dataset, row in rows.items():
        (csv_row,) = [r for r in csv_table if r["kind"] == "dataset" and r["dataset"] == dataset]
        assert csv_row["seeds"] == " ".join(map(str, row["seeds"]))
        assert int(csv_row["n"]) == len(row["seeds"])
        for key in ("base", "base_std", "new", "new_std", "hm"):
            assert float(csv_row[key]) == pytest.approx(row[key], abs=1e-12)
        seed_rows = [r for r in csv_table if r["kind"] == "seed" and r["dataset"] == dataset]
        assert [(int(r["seeds"]), float(r["base"]), float(r["new"])) for r in seed_rows] == [
            (s, BASE[dataset][s], NEW[dataset][s]) for s in row["seeds"]
        ]
    (csv_average,) = [r for r in csv_table if r["kind"] == "average"]
    for key in ("base", "new", "hm"):
        assert float(csv_average[key]) == pytest.approx(average[key], abs=1e-12)
    assert (csv_average["n"], csv_average["note"]) == ("2", "caltech101 dtd")

    _, json_text, _ = run_cli(capsys, root, "--base2new", "--format", "json")
    (setting,) = json.loads(json_text)["settings"]
    assert (setting["shots"], setting["trainer"], setting["cfg"]) == SETTING
    assert [r["dataset"] for r in setting["rows"]] == ["caltech101", "dtd"]
    for json_row in setting["rows"]:
        row = rows[json_row["dataset"]]
        assert json_row["seeds"] == row["seeds"]
        assert json_row["base"]["mean"] == pytest.approx(row["base"], abs=1e-12)
        assert json_row["base"]["std"] == pytest.approx(row["base_std"], abs=1e-12)
        assert json_row["new"]["mean"] == pytest.approx(row["new"], abs=1e-12)
        assert json_row["new"]["std"] == pytest.approx(row["new_std"], abs=1e-12)
        assert json_row["hm"] == pytest.approx(row["hm"], abs=1e-12)
    assert setting["average"]["datasets"] == ["caltech101", "dtd"]
    for key in ("base", "new", "hm"):
        assert setting["average"][key] == pytest.approx(average[key], abs=1e-12)


def test_base2new_lists_missing_seeds_and_one_sided_datasets(tmp_path, capsys):
    root = make_base2new(tmp_path / "base2new")
    status, text, _ = run_cli(capsys, root, "--base2new")
    assert status == 0
    missing = text[text.index("Missing (") :].splitlines()[1:]
    new_folder = os.path.join(root, "test_new")
    assert missing == [
        f"  dtd seed3 new: no run folder ({new_folder}/dtd/shots_16/ALIGN/vit_b16_c2_ep5/seed3/log.txt)",
        *[
            f"  eurosat seed{s} new: no run folder ({new_folder}/eurosat/shots_16/ALIGN/vit_b16_c2_ep5/seed{s}/log.txt)"
            for s in (1, 2, 3)
        ],
        "  eurosat: only base runs; left out of the average",
    ]

    _, json_text, _ = run_cli(capsys, root, "--base2new", "--format", "json")
    json_missing = json.loads(json_text)["settings"][0]["missing"]
    assert [(m["dataset"], m["seed"], m["side"]) for m in json_missing] == [
        ("dtd", 3, "new"),
        ("eurosat", 1, "new"),
        ("eurosat", 2, "new"),
        ("eurosat", 3, "new"),
        ("eurosat", None, None),
    ]
    _, csv_text, _ = run_cli(capsys, root, "--base2new", "--format", "csv")
    csv_missing = [r for r in csv_rows(csv_text) if r["kind"] == "missing"]
    assert [(r["dataset"], r["seeds"], r["side"], r["note"]) for r in csv_missing] == [
        (m["dataset"], "" if m["seed"] is None else str(m["seed"]), m["side"] or "", m["reason"]) for m in json_missing
    ]


def test_base2new_datasets_and_seeds_options(tmp_path, capsys):
    root = make_base2new(tmp_path / "base2new")
    status, text, _ = run_cli(capsys, root, "--base2new", "--datasets", "dtd,imagenet,caltech101", "--seeds", "1,2")
    assert status == 0
    table = parse_text_table(text)
    first_cells = [line.split()[0] for line in text.splitlines() if line.strip()]
    order = [cell for cell in first_cells if cell in ("dtd", "caltech101")]
    assert order == ["dtd", "caltech101"]
    b, n = [97.2, 97.8], [94.1, 94.7]
    assert table["caltech101"][1:] == [
        "1,2",
        f"{mean(b):.2f} +- {pstd(b):.2f}",
        f"{mean(n):.2f} +- {pstd(n):.2f}",
        f"{hm(mean(b), mean(n)):.2f}",
    ]
    places = " or ".join(
        os.path.join(root, side, "imagenet", *SETTING) for side in ("train_base", "test_base", "test_new")
    )
    assert f"  imagenet: no runs; left out of the average ({places})" in text.splitlines()
    assert "eurosat" not in text and "seed3" not in text


def test_base2new_ci95(tmp_path, capsys):
    root = make_base2new(tmp_path / "base2new")
    rows, _ = expected_table()
    _, csv_text, _ = run_cli(capsys, root, "--base2new", "--ci95", "--format", "csv")
    (dtd,) = [r for r in csv_rows(csv_text) if r["kind"] == "dataset" and r["dataset"] == "dtd"]
    assert "base_std" not in dtd
    assert float(dtd["base_ci95"]) == pytest.approx(1.96 * rows["dtd"]["base_std"] / math.sqrt(2))
    assert float(dtd["new_ci95"]) == pytest.approx(1.96 * rows["dtd"]["new_std"] / math.sqrt(2))


def test_base2new_one_table_per_setting(tmp_path, capsys):
    root = make_base2new(tmp_path / "base2new")
    other = ("shots_16", "CoOp", "vit_b16_ep50")
    make_base2new(root, base={"dtd": {1: 70.0}}, new={"dtd": {1: 50.0}}, setting=other)
    status, json_text, _ = run_cli(capsys, root, "--base2new", "--format", "json")
    assert status == 0
    settings = json.loads(json_text)["settings"]
    assert [(s["shots"], s["trainer"], s["cfg"]) for s in settings] == [SETTING, other]  # sorted
    assert [r["dataset"] for r in settings[0]["rows"]] == ["caltech101", "dtd"]
    coop = settings[1]
    assert coop["average"] == {"datasets": ["dtd"], "base": 70.0, "new": 50.0, "hm": hm(70.0, 50.0)}
    # The CoOp table expects only its own seed (1): nothing of ALIGN's seeds leaks into it.
    assert coop["missing"] == []


def test_base2new_with_no_pair_is_exit_status_1(tmp_path, capsys):
    root = make_base2new(tmp_path / "base2new", new={})
    status, out, err = run_cli(capsys, root, "--base2new")
    assert status == 1
    assert "only base runs; left out of the average" in out
    assert err.startswith("parse_test_res.py: error: Nothing found in")

    status, _, err = run_cli(capsys, tmp_path / "nowhere", "--base2new")
    assert status == 1 and "is not a folder" in err


def test_base2new_reads_eval_only_base_runs_for_methods_without_training(tmp_path, capsys):
    """Zero-shot CLIP has no training log: its base accuracy is an eval-only run in test_base/."""
    root = make_base2new(tmp_path / "base2new")
    zero_shot = ("shots_16", "ZeroshotCLIP", "vit_b16")
    for seed, (base, new) in {1: (70.0, 74.0), 2: (72.0, 76.0)}.items():
        for side, accuracy in (("test_base", base), ("test_new", new)):
            folder = os.path.join(root, side, "caltech101", *zero_shot, f"seed{seed}")
            write(os.path.join(folder, "log.txt"), eval_only_log(folder, accuracy))

    status, json_text, _ = run_cli(capsys, root, "--base2new", "--format", "json")
    assert status == 0
    settings = {(s["trainer"], s["cfg"]): s for s in json.loads(json_text)["settings"]}
    (row,) = settings[("ZeroshotCLIP", "vit_b16")]["rows"]
    assert (row["dataset"], row["seeds"]) == ("caltech101", [1, 2])
    assert row["base"]["mean"] == pytest.approx(71.0) and row["new"]["mean"] == pytest.approx(75.0)
    assert row["hm"] == pytest.approx(hm(71.0, 75.0))
    # The ALIGN setting beside it still reads its training logs.
    assert [r["dataset"] for r in settings[("ALIGN", "vit_b16_c2_ep5")]["rows"]] == ["caltech101", "dtd"]
