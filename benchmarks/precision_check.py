"""Does ALIGN train under every precision? A short toy-world run per PREC, losses compared.

For each precision flag (fp16, fp32, amp, bf16) train.py trains ALIGN on the toy world's base
classes (the tiny pretrained CLIP of tools/assets/toy_clip.pt, configs/trainers/ALIGN/toy_clip.yaml)
for a few epochs, and the mean training loss of the first and the last epoch are read from its
log. A precision passes when the last epoch's loss is below the first's and finite. On a CPU,
fp16 and amp run as fp32 (the log says so) unless the environment variable DASSL_CPU_HALF=1 (the
engine's test and debug mode) keeps them as on a GPU; the check is meant for a GPU:

    python -m benchmarks.precision_check --device cuda --json output/precision_check.json

A CPU smoke test of the script (3 epochs on 4 shots, about a minute on one core):

    DASSL_CPU_HALF=1 python -m benchmarks.precision_check --device cpu --quick
"""

import argparse
import json
import os
import os.path as osp
import re
import subprocess
import sys
import tempfile

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PRECISIONS = ("fp16", "fp32", "amp", "bf16")
EPOCH_LOSS = re.compile(r"^epoch \[(\d+)/\d+\] batch \[(\d+)/(\d+)\].* loss [-\d.naninf]+ \(([-\d.naninf]+)\)")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="where train.py runs")
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--epochs", type=int, default=4, help="training epochs per run (default 4)")
    parser.add_argument("--shots", type=int, default=8, help="training images per class (default 8)")
    parser.add_argument("--work-dir", default="", help="where data and runs go (default: a temporary folder)")
    parser.add_argument("--json", default="", help="also write the results to this file")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke test: 3 epochs on 4 shots (overrides --epochs and --shots)"
    )
    options = parser.parse_args(argv)
    if options.quick:
        options.epochs, options.shots = 3, 4
    return options


def epoch_losses(log_text):
    """{epoch: mean training loss of the epoch} from a train.py log (the running mean of its last line)."""
    losses = {}
    for line in log_text.splitlines():
        match = EPOCH_LOSS.match(line)
        if match:
            losses[int(match.group(1))] = float(match.group(4))
    return losses


def run_precision(prec, options, data_root, work_dir):
    """Train once under ``prec``; returns a result dict (effective precision, losses, pass)."""
    output_dir = osp.join(work_dir, f"run_{prec}")
    command = [
        sys.executable, "train.py", "--root", data_root, "--seed", "1", "--trainer", "ALIGN",
        "--dataset-config-file", "configs/datasets/toy_shapes.yaml",
        "--config-file", "configs/trainers/ALIGN/toy_clip.yaml",
        "--output-dir", output_dir,
        "DATASET.NUM_SHOTS", str(options.shots), "DATASET.SUBSAMPLE_CLASSES", "base",
        "OPTIM.MAX_EPOCH", str(options.epochs), "TRAINER.ALIGN.PREC", prec,
        "USE_CUDA", str(options.device == "cuda"), "TEST.NO_TEST", "True", "TRAIN.PRINT_FREQ", "1",
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    log = completed.stdout + completed.stderr
    losses = epoch_losses(log)
    effective = re.search(r"precision = (\w+)\)", log)
    first, last = (losses.get(1), losses.get(options.epochs)) if losses else (None, None)
    passed = completed.returncode == 0 and first is not None and last is not None and last < first
    return {
        "prec": prec,
        "effective": effective.group(1) if effective else None,
        "exit_status": completed.returncode,
        "epoch_losses": losses,
        "first": first,
        "last": last,
        "decreased": passed,
        "error": None if completed.returncode == 0 else log.strip().splitlines()[-1:],
    }


def main(argv=None):
    options = parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        work_dir = options.work_dir or scratch
        data_root = osp.join(work_dir, "data")
        if not osp.isdir(osp.join(data_root, "toy_shapes")):
            subprocess.run([sys.executable, "-m", "tools.toy_world", "--root", data_root], cwd=REPO, check=True)
        results = [run_precision(prec, options, data_root, work_dir) for prec in options.precisions]
    print(f"ALIGN on the toy world, {options.epochs} epochs, device {options.device}: mean training loss")
    print(f"{'PREC':6} {'runs as':8} {'epoch 1':>8} {'last':>8}  decreased")
    for result in results:
        first = f"{result['first']:.4f}" if result["first"] is not None else "-"
        last = f"{result['last']:.4f}" if result["last"] is not None else "-"
        print(f"{result['prec']:6} {result['effective'] or '-':8} {first:>8} {last:>8}  {result['decreased']}")
        if result["error"]:
            print(f"       exit status {result['exit_status']}: {result['error']}")
    if options.json:
        os.makedirs(osp.dirname(osp.abspath(options.json)), exist_ok=True)
        with open(options.json, "w") as file:
            json.dump({"device": options.device, "epochs": options.epochs, "results": results}, file, indent=2)
    return 0 if all(result["decreased"] for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
