"""Summarise `make demo`: check the toy world's targets and draw the demo figure.

    python -m tools.demo_report OUTPUT [--data DATA] [--methods ZeroshotCLIP,ALIGN,...]

Reads the base-to-new results that scripts/demo.sh wrote under OUTPUT/base2new (through
parse_test_res.py's aggregation, tools.results), prints the targets and whether each is met, and
writes OUTPUT/demo.png: Base / New / HM accuracy per method (mean and std over seeds), and the
prompt-level transport plan (V visual x T textual prompts) that the trained ALIGN model (seed 1)
puts between a few test images and their class. Exit status 1 when a target is missed.

Targets: zero-shot CLIP's accuracies leave room to learn and show transfer; ALIGN's base
accuracy is MIN_BASE_GAIN points above zero-shot's; every other learned method's base accuracy
is above zero-shot's.
"""

import argparse
import contextlib
import io
import os.path as osp

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import train  # noqa: E402
from dassl.engine import build_trainer  # noqa: E402
from dassl.utils import read_image  # noqa: E402
from tools.results.base2new import BASE_FOLDER, parse_base2new  # noqa: E402

DATASET = "toy_shapes"
ZERO_SHOT = "ZeroshotCLIP"
ALIGN = "ALIGN"
ALIGN_CONFIG_DIR = "configs/trainers/ALIGN"
ZERO_SHOT_WINDOW = (25.0, 75.0)  # zero-shot accuracy must leave room to learn and show transfer
MIN_BASE_GAIN = 10.0  # points of base accuracy ALIGN must add to zero-shot CLIP
PLAN_IMAGES = 4


def method_rows(base2new_dir, methods=None):
    """{label: SettingAverage} of the toy dataset (each method's row of the comparison table, by
    its label there: the method's name), in table order."""
    report = parse_base2new(base2new_dir, "accuracy", "std", datasets=[DATASET], methods=methods)
    return {average.setting.label: average for average in report.of_kind("average")}


def is_learned(row):
    return not row.setting.trainer.startswith(ZERO_SHOT)


def check_targets(rows):
    """[(description, met)] for the demo's targets."""
    low, high = ZERO_SHOT_WINDOW
    zero_shot = rows[ZERO_SHOT]
    targets = [
        (f"zero-shot base accuracy {zero_shot.base:.1f}% within {low:.0f}-{high:.0f}%", low <= zero_shot.base <= high),
        (f"zero-shot new accuracy {zero_shot.new:.1f}% within {low:.0f}-{high:.0f}%", low <= zero_shot.new <= high),
    ]
    for label, row in rows.items():
        if label == ALIGN:
            targets.append(
                (
                    f"ALIGN base accuracy {row.base:.1f}% >= zero-shot {zero_shot.base:.1f}% + {MIN_BASE_GAIN:.0f}",
                    row.base >= zero_shot.base + MIN_BASE_GAIN,
                )
            )
        elif is_learned(row):
            targets.append(
                (
                    f"{label} base accuracy {row.base:.1f}% > zero-shot {zero_shot.base:.1f}%",
                    row.base > zero_shot.base,
                )
            )
    return targets


@torch.no_grad()
def transport_plans(data_root, align_setting, output_dir):
    """(image paths, class names, plans (N, V, T)) of the first test images of a few base classes,
    from the ALIGN model trained with seed 1, each against its own class."""
    run_dir = osp.join(
        output_dir,
        "base2new",
        BASE_FOLDER,
        DATASET,
        align_setting.shots,
        ALIGN,
        align_setting.cfg_of(DATASET),
        "seed1",
    )
    args = train.build_parser().parse_args(
        [
            "--root",
            data_root,
            "--trainer",
            ALIGN,
            "--eval-only",
            "--dataset-config-file",
            f"configs/datasets/{DATASET}.yaml",
            "--config-file",
            osp.join(ALIGN_CONFIG_DIR, f"{align_setting.cfg_of(DATASET)}.yaml"),
            "DATASET.NUM_SHOTS",
            align_setting.shots.replace("shots_", ""),
            "DATASET.SUBSAMPLE_CLASSES",
            "base",
        ]
    )
    with contextlib.redirect_stdout(io.StringIO()):  # the build's log lines are not the report
        trainer = build_trainer(train.setup_cfg(args))
        epoch = int(open(osp.join(run_dir, "MultiModalPromptLearner", "checkpoint")).readline().split("-")[-1])
        trainer.load_model(run_dir, epoch=epoch)
    trainer.set_model_mode("eval")
    items, seen = [], set()
    for item in trainer.dm.dataset.test:
        if item.label not in seen:
            seen.add(item.label)
            items.append(item)
        if len(items) == PLAN_IMAGES:
            break
    batch = torch.stack([trainer.dm.test_loader.dataset.transform(read_image(item.impath)) for item in items])
    plans = trainer.model.transport(batch.to(trainer.device)).plan  # (N, C, V, T)
    labels = torch.tensor([item.label for item in items])
    return [item.impath for item in items], [item.classname for item in items], plans[torch.arange(len(items)), labels]


def draw(rows, plans, path):
    """demo.png: accuracy bars per method (left), transport plans of a few images (right)."""
    paths, classnames, plan_values = plans
    bars_width = 1.6 + 0.3 * len(rows)  # wider with more methods
    figure = plt.figure(figsize=(1.8 * bars_width + 2.2 * len(paths), 4.6))
    grid = figure.add_gridspec(2, 1 + len(paths), width_ratios=[bars_width] + [1] * len(paths), height_ratios=[1, 1.2])

    bars = figure.add_subplot(grid[:, 0])
    width = 0.8 / len(rows)
    # One colour per method: matplotlib's default cycle has 10, tab20 twice as many.
    colours = plt.get_cmap("tab10" if len(rows) <= 10 else "tab20").colors
    for offset, (name, row) in enumerate(rows.items()):
        values = [row.base, row.new, row.hm]
        errors = [0.0 if stats is None else stats.std for stats in (row.base_seeds, row.new_seeds)] + [0.0]
        positions = [i + (offset - (len(rows) - 1) / 2) * width for i in range(3)]
        bars.bar(
            positions, values, width, yerr=errors, capsize=3, label=f"{name} ({len(row.seeds)} seed(s))",
            color=colours[offset % len(colours)],
        )  # fmt: skip
        for x, value in zip(positions, values):
            bars.text(x, value + 1.5, f"{value:.1f}", ha="center", fontsize=max(5, 9 - len(rows)))
    bars.set_xticks(range(3), ["Base", "New", "HM"])
    bars.set_ylabel("accuracy (%)")
    bars.set_ylim(0, 105)
    bars.set_title("Toy world, base-to-new")
    bars.legend(loc="upper left", fontsize=7, ncol=2 if len(rows) > 3 else 1)  # the toy accuracies stay below

    for i, (image_path, classname, plan) in enumerate(zip(paths, classnames, plan_values)):
        thumbnail = figure.add_subplot(grid[0, 1 + i])
        thumbnail.imshow(read_image(image_path))
        thumbnail.set_title(classname, fontsize=9)
        thumbnail.axis("off")
        heatmap = figure.add_subplot(grid[1, 1 + i])
        heatmap.imshow(plan.cpu().numpy(), cmap="viridis")
        heatmap.set_xlabel("textual prompt t", fontsize=8)
        heatmap.set_ylabel("visual prompt v", fontsize=8)
        heatmap.set_xticks(range(plan.shape[1]))
        heatmap.set_yticks(range(plan.shape[0]))
        heatmap.tick_params(labelsize=7)
    figure.suptitle("Accuracy per method, and ALIGN's prompt-level transport plan of test images", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("output", help="the demo's OUTPUT folder (holds base2new/)")
    parser.add_argument("--data", default=None, help="the toy world's DATA root (default: OUTPUT/data)")
    parser.add_argument("--methods", default=None, help="the methods (method names) to show, in order: a,b")
    args = parser.parse_args(argv)
    data_root = args.data or osp.join(args.output, "data")
    methods = args.methods.split(",") if args.methods else None

    rows = method_rows(osp.join(args.output, "base2new"), methods)
    missing = [name for name in (ZERO_SHOT, ALIGN) if name not in rows]
    if missing:
        print(f"Error: no base-to-new results for {', '.join(missing)} under {args.output}/base2new")
        return 1
    targets = check_targets(rows)
    print("Targets:")
    for description, met in targets:
        print(f"  [{'met' if met else 'MISSED'}] {description}")

    figure_path = osp.join(args.output, "demo.png")
    draw(rows, transport_plans(data_root, rows[ALIGN].setting, args.output), figure_path)
    print(f"Figure: {figure_path}")
    return 0 if all(met for _, met in targets) else 1


if __name__ == "__main__":
    raise SystemExit(main())
