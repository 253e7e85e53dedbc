"""A report (``records.Report``) as CSV (one row per record and metric, column ``kind``) or JSON
(the documents of docs/results.md), at full float precision."""

import csv
import io
import json

RUN_PROBLEM_KINDS = ("missing", "unreadable", "malformed")
PROBLEM_KINDS = RUN_PROBLEM_KINDS + ("stale",)  # base-to-new: "stale", a new result of another model
NOTE_KINDS = ("unchecked",)  # base-to-new: a pair that was used, with a note


def csv_text(columns, rows):
    """rows: dicts keyed by ``columns``; absent keys are written as empty cells."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().rstrip("\n")


def render_csv(report):
    return runs_csv(report) if report.mode == "runs" else base2new_csv(report)


def render_json(report):
    document = runs_json(report) if report.mode == "runs" else base2new_json(report)
    return json.dumps(document, indent=2)


# ------------------------------------------------------------------------------------------------
# Runs mode
# ------------------------------------------------------------------------------------------------


def runs_csv(report):
    """One row per value; kind: run, missing / unreadable / malformed, summary or average."""
    spread = report.spread
    rows = []
    for record in report.records:
        if record.kind == "run":
            where = {"experiment": record.experiment, "run": record.run, "file": record.file}
            rows += [dict(where, kind="run", metric=name, value=value) for name, value in record.values.items()]
        elif record.kind in RUN_PROBLEM_KINDS:
            rows.append(
                dict(
                    kind=record.kind, experiment=record.experiment, run=record.run, file=record.file, note=record.reason
                )
            )
        elif record.kind == "summary":
            for name, stats in record.stats.items():
                values = {"value": stats.mean, spread: stats.spread(spread), "n": stats.n}
                rows.append(dict(kind="summary", experiment=record.experiment, metric=name, **values))
        elif record.kind == "average":
            note = "left out (no results): " + " ".join(record.left_out) if record.left_out else ""
            rows.append({"kind": "average", "metric": record.metric, "value": record.mean, "n": record.n, "note": note})
    return csv_text(["kind", "experiment", "run", "file", "metric", "value", spread, "n", "note"], rows)


def runs_json(report):
    spread = report.spread
    experiments = []
    for summary in report.of_kind("summary"):
        mine = [record for record in report.records if getattr(record, "experiment", None) == summary.experiment]
        entry = {
            "directory": summary.experiment,
            "runs": [{"run": r.run, "file": r.file, "values": r.values} for r in mine if r.kind == "run"],
        }
        for kind in RUN_PROBLEM_KINDS:
            entry[kind] = [{"run": r.run, "file": r.file, "reason": r.reason} for r in mine if r.kind == kind]
        entry["summary"] = {
            name: {"mean": stats.mean, spread: stats.spread(spread), "n": stats.n}
            for name, stats in summary.stats.items()
        }
        experiments.append(entry)
    document = {"metrics": list(report.metric_names), "spread": spread, "experiments": experiments}
    if report.multi_exp:
        averages = report.of_kind("average")
        document["average"] = {average.metric: {"mean": average.mean, "n": average.n} for average in averages}
        left_out = averages[0].left_out if averages else [s.experiment for s in report.of_kind("summary")]
        document["left_out_of_average"] = list(left_out)
    return document


# ------------------------------------------------------------------------------------------------
# Base-to-new mode
# ------------------------------------------------------------------------------------------------


def _published(record):
    published = record.published
    return None if published is None else {"base": published.base, "new": published.new, "hm": published.hm}


def _published_cells(record):
    published = _published(record)
    return {} if published is None else {f"published_{key}": value for key, value in published.items()}


def base2new_csv(report):
    """One row per seed, dataset, average (a method's row) and problem (column kind)."""
    spread = report.spread
    base_spread, new_spread = "base_" + spread, "new_" + spread
    columns = ["kind", "shots", "trainer", "cfg", "dataset", "seeds", "n", "base", base_spread, "new", new_spread]
    columns += ["hm", "side", "path", "note", "method", "published_base", "published_new", "published_hm"]
    rows = []
    for record in report.records:
        setting = record.setting
        where = {} if setting is None else {"shots": setting.shots, "trainer": setting.trainer, "cfg": setting.cfg}
        if setting is not None and getattr(record, "dataset", "") not in ("", None):
            where["cfg"] = setting.cfg_of(record.dataset)  # a dataset's rows: its own recipe
        if record.kind == "seed":
            values = {"seeds": record.seed, "n": 1, "base": record.base, "new": record.new}
            rows.append(dict(where, kind="seed", dataset=record.dataset, **values))
        elif record.kind == "dataset":
            values = {"seeds": " ".join(map(str, record.seeds)), "n": len(record.seeds), "hm": record.hm}
            values.update(base=record.base.mean, new=record.new.mean, method=setting.label)
            values.update({base_spread: record.base.spread(spread), new_spread: record.new.spread(spread)})
            rows.append(dict(where, kind="dataset", dataset=record.dataset, **values, **_published_cells(record)))
        elif record.kind == "average":
            values = {"n": len(record.datasets), "base": record.base, "new": record.new, "hm": record.hm}
            values.update(seeds=" ".join(map(str, record.seeds)), note=" ".join(record.datasets), method=setting.label)
            if record.base_seeds is not None:
                values.update(
                    {base_spread: record.base_seeds.spread(spread), new_spread: record.new_seeds.spread(spread)}
                )
            rows.append(dict(where, kind="average", dataset="Average", **values, **_published_cells(record)))
        elif record.kind in PROBLEM_KINDS + NOTE_KINDS:
            values = {"dataset": record.dataset, "seeds": record.seed, "side": record.side}
            if setting is not None:
                values["method"] = setting.label
            rows.append(dict(where, kind=record.kind, path=record.path, note=record.reason, **values))
    return csv_text(columns, rows)


def _problem(record):
    return {
        "kind": record.kind,
        "dataset": record.dataset,
        "seed": record.seed,
        "side": record.side,
        "path": record.path,
        "reason": record.reason,
    }


def _setting_entry(report, setting, spread):
    mine = [record for record in report.records if record.setting == setting]
    rows = []
    for row in (record for record in mine if record.kind == "dataset"):
        pairs = [record for record in mine if record.kind == "seed" and record.dataset == row.dataset]
        rows.append(
            {
                "dataset": row.dataset,
                "cfg": setting.cfg_of(row.dataset),
                "seeds": list(row.seeds),
                "n": len(row.seeds),
                "base": {"mean": row.base.mean, spread: row.base.spread(spread)},
                "new": {"mean": row.new.mean, spread: row.new.spread(spread)},
                "hm": row.hm,
                "published": _published(row),
                "per_seed": [
                    {"seed": p.seed, "base": p.base, "new": p.new, "base_log": p.base_log, "new_log": p.new_log}
                    for p in pairs
                ],
            }
        )
    averages = [record for record in mine if record.kind == "average"]
    average = None
    if averages:
        a = averages[0]
        average = {"datasets": list(a.datasets), "base": a.base, "new": a.new, "hm": a.hm}
    return {
        "method": setting.label,
        "shots": setting.shots,
        "trainer": setting.trainer,
        "cfg": setting.cfg,
        "cfgs": list(setting.cfgs),
        "rows": rows,
        "average": average,
        "missing": [_problem(record) for record in mine if record.kind in PROBLEM_KINDS],
        "unchecked": [_problem(record) for record in mine if record.kind in NOTE_KINDS],
    }


def _comparison_entry(average, spread):
    setting = average.setting

    def side(mean, seed_stats):
        return {"mean": mean, spread: None if seed_stats is None else seed_stats.spread(spread)}

    return {
        "method": setting.label,
        "shots": setting.shots,
        "trainer": setting.trainer,
        "cfg": setting.cfg,
        "cfgs": list(setting.cfgs),
        "datasets": list(average.datasets),
        "seeds": list(average.seeds),
        "base": side(average.base, average.base_seeds),
        "new": side(average.new, average.new_seeds),
        "hm": average.hm,
        "published": _published(average),
    }


def base2new_json(report):
    spread = report.spread
    return {
        "directory": report.directory,
        "keyword": report.keyword,
        "spread": spread,
        "settings": [_setting_entry(report, setting, spread) for setting in report.settings],
        "comparison": [_comparison_entry(average, spread) for average in report.of_kind("average")],
        "reference": report.reference,
        "not_read": [_problem(record) for record in report.of_kind(*PROBLEM_KINDS) if record.setting is None],
    }
