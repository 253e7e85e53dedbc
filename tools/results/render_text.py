"""A report (``records.Report``) as the text that parse_test_res.py prints.

Runs mode prints CoOp's lines; base-to-new mode prints one table per setting or, for a
comparison, one table with a row per method (docs/results.md shows both).
"""

import textwrap

SPREAD_LABELS = {"std": "std", "ci95": "95% CI"}


def render(report):
    return "\n".join(runs_lines(report) if report.mode == "runs" else base2new_lines(report))


# ------------------------------------------------------------------------------------------------
# Runs mode
# ------------------------------------------------------------------------------------------------


def runs_lines(report):
    lines = []
    opened = None  # the experiment whose "Parsing files in" line was printed last
    for record in report.records:
        experiment = getattr(record, "experiment", None)
        if experiment is not None and experiment != opened:
            lines.append(f"Parsing files in {experiment}")
            opened = experiment
        if record.kind == "run":
            values = "".join(f"{name}: {value:.2f}%. " for name, value in record.values.items())
            lines.append(f"file: {record.file}. {values}")
        elif record.kind in ("missing", "unreadable", "malformed"):
            lines.append(f"{record.kind}: {record.file} ({record.reason})")
        elif record.kind == "summary":
            lines += ["===", f"Summary of directory: {record.experiment}"]
            for name, stats in record.stats.items():
                lines.append(f"* {name}: {stats.mean:.2f}% +- {stats.spread(report.spread):.2f}%")
            if not record.stats:
                lines.append("* no run with a result")
            lines.append("===")
    averages = report.of_kind("average")
    if averages:
        lines.append("Average performance")
        lines += [f"* {average.metric}: {average.mean:.2f}%" for average in averages]
        if averages[0].left_out:
            lines.append(f"Left out of the average (no results): {', '.join(averages[0].left_out)}")
    return lines


# ------------------------------------------------------------------------------------------------
# Base-to-new mode
# ------------------------------------------------------------------------------------------------


def aligned(header, rows, footer=None, left=2):
    """Text table: the first ``left`` columns left-aligned, the others right-aligned."""
    every = [header] + rows + ([footer] if footer else [])
    widths = [max(len(cells[i]) for cells in every) for i in range(len(header))]
    rule = "  ".join("-" * width for width in widths)

    def line(cells):
        padded = [cell.ljust(w) if i < left else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths))]
        return "  ".join(padded).rstrip()

    return [line(header), rule] + [line(row) for row in rows] + ([rule, line(footer)] if footer else [])


def mean_spread(stats, spread):
    return f"{stats.mean:.2f} +- {stats.spread(spread):.2f}"


def describe(problem):
    """One line about a Problem record (without its setting)."""
    reason = problem.reason if problem.kind == "missing" else f"{problem.kind}: {problem.reason}"
    if problem.setting is None:
        return f"{reason} ({problem.path})"
    if problem.seed is None:
        where = f" ({problem.path})" if problem.path else ""
        return f"{problem.dataset}: {reason}{where}"
    return f"{problem.dataset} seed{problem.seed} {problem.side}: {reason} ({problem.path})"


def of_setting(report, setting, *kinds):
    return [record for record in report.of_kind(*kinds) if record.setting == setting]


def published_cells(record, with_reference):
    if not with_reference:
        return []
    published = record.published
    return [f"{value:.2f}" for value in (published.base, published.new, published.hm)] if published else ["", "", ""]


def setting_table(report, setting):
    """Today's table of one setting: a row per dataset and the average."""
    spread = report.spread
    lines = [
        "",
        f"{setting.shots} / {setting.trainer} / {setting.describe_cfgs()} ({report.keyword} %, mean +- "
        f"{SPREAD_LABELS[spread]} over seeds; HM of the mean Base and New)",
    ]
    rows = of_setting(report, setting, "dataset")
    averages = of_setting(report, setting, "average")
    if not averages:
        return lines + ["No dataset has a seed with both a base and a new result."]
    average = averages[0]
    cells = [
        [row.dataset, ",".join(map(str, row.seeds)), mean_spread(row.base, spread), mean_spread(row.new, spread)]
        + [f"{row.hm:.2f}"]
        for row in rows
    ]
    count = len(average.datasets)
    footer = ["Average ({} dataset{})".format(count, "" if count == 1 else "s"), ""]
    footer += [f"{value:.2f}" for value in (average.base, average.new, average.hm)]
    return lines + aligned(["Dataset", "Seeds", "Base", "New", "HM"], cells, footer)


def comparison_table(report):
    """One table, a row per method (its average over datasets), with --per-dataset the datasets
    under it, with --reference the published numbers beside."""
    spread = report.spread
    with_reference = report.reference is not None
    header = ["Method", "Seeds", "Datasets", "Base", "New", "HM"]
    if with_reference:
        header += ["Published Base", "Published New", "Published HM"]
    cells = []
    for setting in report.settings:
        averages = of_setting(report, setting, "average")
        if not averages:
            cells.append([setting.label, "-", "0", "-", "-", "-"] + (["", "", ""] if with_reference else []))
            continue
        average = averages[0]
        seeds = ",".join(map(str, average.seeds)) or "-"
        base = mean_spread_of(average.base, average.base_seeds, spread)
        new = mean_spread_of(average.new, average.new_seeds, spread)
        cells.append(
            [setting.label, seeds, str(len(average.datasets)), base, new, f"{average.hm:.2f}"]
            + published_cells(average, with_reference)
        )
        if report.per_dataset:
            for row in of_setting(report, setting, "dataset"):
                cells.append(
                    ["  " + row.dataset, ",".join(map(str, row.seeds)), ""]
                    + [mean_spread(row.base, spread), mean_spread(row.new, spread), f"{row.hm:.2f}"]
                    + published_cells(row, with_reference)
                )
    title = (
        f"Base-to-new comparison in {report.directory} ({report.keyword} %: each method's Base and New averaged "
        f"over its datasets, mean +- {SPREAD_LABELS[spread]} over seeds; HM of the average Base and New)"
    )
    lines = [title] + aligned(header, cells)
    if with_reference:
        lines += textwrap.wrap(f"Published: {report.reference}", width=100, subsequent_indent="  ")
    return lines


def mean_spread_of(mean, seed_stats, spread):
    """The average's mean with the spread over seeds of the per-seed averages, when there is one."""
    return f"{mean:.2f}" if seed_stats is None else f"{mean:.2f} +- {seed_stats.spread(spread):.2f}"


PROBLEM_KINDS = ("missing", "unreadable", "malformed", "stale")


def unchecked_note(unchecked):
    """One line on the pairs whose new log records no model file (they are used)."""
    if not unchecked:
        return []
    count = len(unchecked)
    return [
        f"Note: {count} new result{'s' if count > 1 else ''} of trained models record{'' if count > 1 else 's'} "
        "no model file (logs of an older version): not checked against their base run's model"
    ]


def base2new_lines(report):
    if report.comparison:
        lines = comparison_table(report)
        lines += unchecked_note(report.of_kind("unchecked"))
        problems = [p for p in report.of_kind(*PROBLEM_KINDS) if p.setting is not None]
        if problems:
            lines.append("Missing (a seed without both results is left out of the means):")
            lines += [f"  {problem.setting.label}: {describe(problem)}" for problem in problems]
    else:
        lines = [f"Base-to-new results in {report.directory}"]
        for setting in report.settings:
            lines += setting_table(report, setting)
            lines += unchecked_note(of_setting(report, setting, "unchecked"))
            problems = of_setting(report, setting, *PROBLEM_KINDS)
            if problems:
                lines.append("Missing (a seed without both results is left out of the means):")
                lines += ["  " + describe(problem) for problem in problems]
    unplaced = [p for p in report.of_kind(*PROBLEM_KINDS) if p.setting is None]
    if unplaced:
        lines.append("Not read:")
        lines += ["  " + describe(problem) for problem in unplaced]
    return lines
