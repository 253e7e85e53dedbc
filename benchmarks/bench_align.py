"""Speed and memory of ALIGN: the project (a) against the reference computation (b), in one run.

For a CLIP ViT given by its dimensions (default ViT-B/16, random weights; ``--tiny`` for a tiny
one) it measures, for each case, training-step time, evaluation time and images per second
(text once per evaluation for (a), per batch for (b)), the OT stage alone on synthetic features,
and peak memory; warm-up runs excluded, medians of several repeats; ratios are (b)/(a), so a
ratio above 1 means the project is faster (or smaller). Prints a table, writes JSON with --json.

    python -m benchmarks.bench_align --preset quick                  # make bench (< 5 min, 2 cores)
    python -m benchmarks.bench_align --preset cpu-targets --json benchmarks/results_cpu_targets.json
    python -m benchmarks.bench_align --preset gpu --json $OUT/gpu.json   # benchmarks/gpu_check.sh
    python -m benchmarks.bench_align --tiny --measure train eval ot --classes 5 --batch 2

Details of the method (reference, features, memory, extrapolation): benchmarks/RESULTS.md.
"""

import argparse
import json
import operator
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace

import torch

from .measure import machine_description
from .runners import MEASURES, TINY, VIT_B16, Backbones, Case, RunOptions, measure_eval, measure_ot, measure_train

MAX_PROMPT_DEPTH = 9  # the shipped J
GB = 2**30


@dataclass(frozen=True)
class Target:
    """A goal of issue 7 on one case: ``metric`` of the case's result compared with ``threshold``.

    metric: "ratio" (reference / project median time) or "project_peak_bytes" (absolute peak).
    """

    case: Case
    metric: str
    threshold: float
    description: str

    def check(self, result):
        if self.metric == "ratio":
            value, compare = result.get("ratio"), operator.ge
        else:
            value, compare = result["project"].get("memory", {}).get("peak_bytes"), operator.lt
        return {
            "description": self.description,
            "case": self.case.label,
            "metric": self.metric,
            "threshold": self.threshold,
            "value": value,
            "met": None if value is None else bool(compare(value, self.threshold)),
        }


@dataclass(frozen=True)
class Preset:
    description: str
    cases: tuple
    repeats: int = 3
    warmup: int = 1
    ref_max_pairs: int | None = None
    targets: tuple = field(default_factory=tuple)


def _gpu_cases():
    cases = []
    for precision in ("fp16", "bf16"):
        cases += [Case("train", classes, 4, precision) for classes in (100, 500)]
        cases += [Case("eval", classes, 100, precision, eval_batches=2) for classes in (100, 500, 1000)]
        cases += [Case("ot", classes, 100, precision) for classes in (100, 500, 1000)]
    return tuple(cases)


_CPU_TRAIN = Case("train", 50, 4)
_CPU_EVAL = Case("eval", 100, 4, eval_batches=10)
_CPU_OT = Case("ot", 1000, 100)

PRESETS = {
    "quick": Preset(
        "make bench: ViT-B/16 dimensions at reduced C and B (under 5 minutes on 2 CPU cores)",
        cases=(Case("ot", 50, 20), Case("train", 4, 1), Case("eval", 8, 1, eval_batches=2)),
        repeats=3,
        warmup=1,
        ref_max_pairs=200,
    ),
    "cpu-targets": Preset(
        "issue 7's CPU targets at full size (ViT-B/16 dimensions; tens of minutes on 2 cores)",
        # The OT stage first: its peak is then not raised by the backbone built for the others.
        cases=(_CPU_OT, _CPU_TRAIN, _CPU_EVAL),
        repeats=3,
        warmup=1,
        ref_max_pairs=2000,
        targets=(
            Target(_CPU_EVAL, "ratio", 3.0, "evaluation, 10 batches: project >= 3x faster"),
            Target(_CPU_OT, "project_peak_bytes", 2 * GB, "OT stage, B=100, C=1000: project peak < 2 GB"),
            Target(_CPU_OT, "ratio", 1.0, "OT stage, B=100, C=1000: project not slower"),
            Target(_CPU_TRAIN, "ratio", 1.0, "training step, C=50: project not slower"),
        ),
    ),
    "gpu": Preset(
        "issue 7's GPU check: C = 100, 500, 1000 in fp16 and bf16 (benchmarks/gpu_check.sh)",
        cases=_gpu_cases(),
        repeats=3,
        warmup=1,
        ref_max_pairs=200,
        targets=tuple(
            [
                Target(Case("train", 500, 4, p), "ratio", 10.0, f"training step, C=500, {p}: project >= 10x faster")
                for p in ("fp16", "bf16")
            ]
            + [
                Target(
                    Case("eval", 1000, 100, p, eval_batches=2),
                    "project_peak_bytes",
                    16 * GB,
                    f"evaluation, C=1000, B=100, {p}: project peak < 16 GB",
                )
                for p in ("fp16", "bf16")
            ]
        ),
    ),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="a predefined set of cases (and their "
        "repeats, warm-up, reference subset); flags given explicitly override them. "
        + "; ".join(f"{name}: {preset.description}" for name, preset in PRESETS.items()),
    )
    parser.add_argument(
        "--measure",
        nargs="+",
        choices=MEASURES,
        default=list(MEASURES),
        help="without --preset: what to measure (default: all)",
    )
    parser.add_argument("--classes", type=int, default=10, help="without --preset: C (default 10)")
    parser.add_argument("--batch", type=int, default=2, help="without --preset: B (default 2)")
    parser.add_argument("--eval-batches", type=int, default=3, help="without --preset: test batches (default 3)")
    parser.add_argument(
        "--precision",
        choices=("fp32", "fp16", "bf16", "amp"),
        help="precision flag (TRAINER.ALIGN.PREC; on CPU fp16/amp fall back to fp32); "
        "default fp32, or the preset's per case",
    )
    parser.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--tiny", action="store_true", help="a tiny ViT instead of ViT-B/16 dimensions")
    for name in VIT_B16.__dataclass_fields__:
        parser.add_argument("--" + name.replace("_", "-"), type=int, help="backbone dimension (default: ViT-B/16's)")
    parser.add_argument("--depth", type=int, help=f"prompt depth J (default: min({MAX_PROMPT_DEPTH}, layers))")
    parser.add_argument("--repeats", type=int, help="timed repeats (default 3, or the preset's)")
    parser.add_argument("--warmup", type=int, help="untimed warm-up runs (default 1, or the preset's)")
    parser.add_argument(
        "--ref-max-pairs",
        type=int,
        help="the reference's token loop solves at most this many "
        "(image, class) pairs per forward and is extrapolated linearly (default: all pairs, "
        "or the preset's)",
    )
    parser.add_argument("--ot-memory-mb", type=float, default=1024.0, help="TRAINER.ALIGN.OT_MEMORY_MB (default 1024)")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: torch's, one per core); 1 makes "
        "CPU timings robust to other processes on a shared machine (see RESULTS.md)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results as JSON to this path")
    parser.add_argument(
        "--table-from",
        metavar="JSON",
        help="measure nothing: print the table of a JSON report "
        "written by --json (machine, settings and targets included)",
    )
    return parser.parse_args(argv)


def resolve_run(args):
    """(RunOptions, cases, targets, preset name or None) from the flags and the preset."""
    preset = PRESETS[args.preset] if args.preset else Preset("cases from the flags", cases=())
    dims = TINY if args.tiny else VIT_B16
    dims = replace(
        dims, **{name: getattr(args, name) for name in dims.__dataclass_fields__ if getattr(args, name) is not None}
    )
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {device}: CUDA is not available on this machine")
    if args.preset:
        cases = preset.cases
        if args.precision:
            cases = tuple(replace(case, precision=args.precision) for case in cases)
    else:
        cases = tuple(
            Case(measure, args.classes, args.batch, args.precision or "fp32", args.eval_batches)
            for measure in args.measure
        )
    options = RunOptions(
        device=device,
        dims=dims,
        depth=args.depth or min(MAX_PROMPT_DEPTH, dims.vision_layers, dims.transformer_layers),
        repeats=args.repeats if args.repeats is not None else preset.repeats,
        warmup=args.warmup if args.warmup is not None else preset.warmup,
        ref_max_pairs=args.ref_max_pairs if args.ref_max_pairs is not None else preset.ref_max_pairs,
        ot_memory_mb=args.ot_memory_mb,
        seed=args.seed,
    )
    if options.repeats < 1 or options.warmup < 0:
        raise SystemExit(f"--repeats must be >= 1 and --warmup >= 0, got {options.repeats} and {options.warmup}")
    targets = tuple(target for target in preset.targets if target.case in cases)
    return options, cases, targets


def progress(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_case(case, options, backbones):
    if case.measure == "train":
        result = measure_train(case, options, backbones, progress)
    elif case.measure == "eval":
        result = measure_eval(case, options, backbones, progress)
    else:
        result = measure_ot(case, options, progress)
    project, reference = result["project"].get("median_s"), result["reference"].get("median_s")
    result["ratio"] = reference / project if project and reference else None
    return {"case": asdict(case) | {"label": case.label}} | result


def _megabytes(memory):
    if not memory or memory.get("peak_bytes") is None:
        return "-"
    return f"{memory['peak_bytes'] / 2**20:.0f} (+{memory['peak_increase_bytes'] / 2**20:.0f})"


def _seconds(side):
    if "error" in side:
        return side["error"][:40]
    return f"{side['median_s']:.3f}{'*' if side.get('extrapolated') else ''}"


def _ratio(value):
    return "-" if value is None else f"{value:.2f}"


def table_rows(results):
    """Rows (case, metric, project, reference, ratio) of the printed table."""
    rows = []
    for result in results:
        label, project, reference = result["case"]["label"], result["project"], result["reference"]
        what = {"train": "step time (s)", "eval": "evaluation time (s)", "ot": "OT stage time (s)"}
        rows.append(
            (label, what[result["case"]["measure"]], _seconds(project), _seconds(reference), _ratio(result["ratio"]))
        )
        if "images_per_second" in project and "images_per_second" in reference:
            rows.append(
                (
                    "",
                    "images / s",
                    f"{project['images_per_second']:.2f}",
                    f"{reference['images_per_second']:.2f}{'*' if reference.get('extrapolated') else ''}",
                    _ratio(project["images_per_second"] / reference["images_per_second"]),
                )
            )
        project_peak = project.get("memory", {}).get("peak_bytes")
        reference_peak = reference.get("memory", {}).get("peak_bytes")
        rows.append(
            (
                "",
                "peak memory MB (+ in section)",
                _megabytes(project.get("memory")),
                _megabytes(reference.get("memory")),
                _ratio(reference_peak / project_peak if project_peak and reference_peak else None),
            )
        )
        iterations = reference.get("reference_ot", {})
        if iterations:
            token = (
                f"token {iterations['token_iterations_mean']:.1f} ({iterations['token_iterations_min']}-"
                f"{iterations['token_iterations_max']}), "
                if "token_iterations_mean" in iterations
                else ""
            )
            solved = (
                f"; pairs {iterations['pairs_solved_per_forward']}/{iterations['pairs_per_forward']}"
                if reference.get("extrapolated")
                else ""
            )
            rows.append(
                (
                    "",
                    "Sinkhorn iterations",
                    "same rule",
                    f"{token}prompt {iterations['prompt_iterations_mean']:.1f}{solved}",
                    "",
                )
            )
    return rows


def format_table(results, targets):
    header = ("case", "metric", "project (a)", "reference (b)", "(b)/(a)")
    rows = [header] + table_rows(results)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    if any(result["reference"].get("extrapolated") for result in results):
        lines.append(
            "* extrapolated: the reference's token loop ran on a random subset of the (image, class) "
            "pairs and its time was scaled linearly to all pairs"
        )
    for target in targets:
        status = {True: "met", False: "MISSED", None: "not measured"}[target["met"]]
        value = target["value"]
        shown = "-" if value is None else (f"{value / GB:.2f} GB" if target["metric"] != "ratio" else f"{value:.2f}")
        lines.append(f"target: {target['description']}: {shown} -> {status}")
    return "\n".join(lines)


def describe_report(report):
    """A saved report as text: machine, settings, the table and the targets."""
    machine, settings = report["machine"], report["settings"]
    where = machine.get("gpu_name") or f"{machine['cpu_model']}, {machine['cpu_cores']} cores"
    dims = settings["dims"]
    load = {
        when: "-" if machine.get(f"load_average_at_{when}") is None else f"{machine[f'load_average_at_{when}'][0]:.1f}"
        for when in ("start", "end")
    }
    lines = [
        f"machine: {where}; torch {machine['torch']}; {machine['torch_threads']} threads; load average "
        f"{load['start']} at start, {load['end']} at end",
        f"settings: {report['preset'] or 'flags'}; backbone {dims['embed_dim']}-d embedding, "
        f"{dims['vision_layers']} x {dims['vision_width']} vision, {dims['transformer_layers']} x "
        f"{dims['transformer_width']} text, {dims['image_resolution']} px / {dims['vision_patch_size']}; "
        f"J = {settings['depth']}; {settings['repeats']} repeats after {settings['warmup']} warm-up; "
        f"reference pairs per forward: {settings['ref_max_pairs'] or 'all'}; total {report['total_seconds']:.0f} s",
        "",
        format_table(report["cases"], report["targets"]),
    ]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.table_from:
        with open(args.table_from) as handle:
            print(describe_report(json.load(handle)))
        return None
    options, cases, targets = resolve_run(args)
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    machine = machine_description(options.device)
    progress(
        f"{len(cases)} cases on {machine.get('gpu_name', machine['cpu_model'])}, "
        f"{options.repeats} repeats after {options.warmup} warm-up"
    )
    backbones = Backbones(options.dims, options.device, options.seed)
    results = [run_case(case, options, backbones) for case in cases]
    results_by_label = {result["case"]["label"]: result for result in results}
    checked = [target.check(results_by_label[target.case.label]) for target in targets]
    report = {
        "benchmark": "ALIGN: project (a) vs reference computation (b); ratio = (b)/(a)",
        "command": [os.path.basename(sys.executable), "-m", "benchmarks.bench_align", *(argv or sys.argv[1:])],
        "preset": args.preset,
        "machine": machine | {"load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "settings": asdict(options),
        "cases": results,
        "targets": checked,
        "total_seconds": time.perf_counter() - started,
    }
    print(describe_report(report), flush=True)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
        progress(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
