"""Train or evaluate a registered trainer on a registered dataset (the CoOp/MaPLe command line).

    python train.py --root DATA --seed 1 --trainer ALIGN \
        --dataset-config-file configs/datasets/oxford_pets.yaml \
        --config-file configs/trainers/ALIGN/<recipe>.yaml \
        --output-dir output/... DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base

Config merge order: engine defaults, extend_cfg, the dataset YAML, the method YAML, the flags
(reset_cfg), then the KEY VALUE opts. Nothing is overridden after that (in particular no epoch
override, unlike the official ALIGN train.py).

Every start logs ``Run request: <sha256>`` (a fingerprint of its command line and config files); an
evaluation logs ``Model file of <name>: <path> (sha256 <hash>)`` for each model file it loaded, and
a training run the same line for each model file its final test used (tools/results/provenance.py
reads them: a test result is tied to its model, a finished run to its settings).

A run holds a lock on its output folder (a second run on it is refused). Expected user errors
(unknown trainer, dataset or config key, invalid values, missing or damaged files, an output folder
in use) are one ``Error:`` line and exit status 1; any other error also prints ``Error:`` with
where its traceback is. Tracebacks always go to log.txt (to stderr too with DASSL_TRACEBACK=1).
Ctrl-C and SIGTERM print where the run stopped and its last checkpoint, and exit with 130 / 143.

Multi-process (multi-GPU) training: ``torchrun --nproc_per_node N train.py ...`` with the same
arguments; DATALOADER.TRAIN_X.BATCH_SIZE is the batch of each process (docs/engine.md).
"""

import argparse
import os.path as osp
import sys

import torch
import torch.distributed as dist
import yaml

import datasets  # noqa: F401  (registers the datasets)
import trainers  # registers the trainers; adds their config nodes
from clip import CLIPWeightsError
from dassl.config import ConfigError, get_cfg_default, merge_config_file, merge_config_opts
from dassl.data.datasets import DatasetLayoutError
from dassl.engine import TRAINER_REGISTRY, build_trainer
from dassl.utils import (
    CheckpointError,
    CheckpointNotFoundError,
    CheckpointWriteError,
    ImageReadError,
    LogWriteError,
    OutputDirInUseError,
    UnavailableChoiceError,
    UnsafeCheckpointError,
    collect_env_info,
    find_model_file,
    get_world_size,
    is_distributed,
    is_main_process,
    lock_output_dir,
    pointed_checkpoint,
    set_random_seed,
    setup_logger,
    torchrun_session,
)
from dassl.utils.failures import interrupt_signal, report_error, sigterm_interrupts
from datasets.splits import SUBSAMPLE_CHOICES
from tools.results import provenance


class CommandLineError(ValueError):
    """Flags that do not make sense together."""


# Errors caused by the user's input: printed as one message, exit status 1, no traceback.
USER_ERRORS = (
    CommandLineError,
    ConfigError,
    UnavailableChoiceError,
    CheckpointNotFoundError,
    CheckpointError,
    CheckpointWriteError,
    LogWriteError,
    UnsafeCheckpointError,
    OutputDirInUseError,
    ImageReadError,
    DatasetLayoutError,
    CLIPWeightsError,
)


def print_args(args, cfg):
    print("***************")
    print("** Arguments **")
    print("***************")
    for key in sorted(vars(args)):
        print(f"{key}: {getattr(args, key)}")
    print("************")
    print("** Config **")
    print("************")
    print(cfg)


def reset_cfg(cfg, args):
    """Copy the flags that were given into the config."""
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed != -1:  # --seed 0 is a seed (unlike Dassl.pytorch, which ignored it)
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head


def extend_cfg(cfg):
    """Add the method config nodes and DATASET.SUBSAMPLE_CLASSES.

    To add a method, give its module an ``add_config(cfg)`` that adds its ``TRAINER.<NAME>`` node
    (a comment per key) and list the module in ``trainers.METHOD_MODULES``.
    """
    # Every method's node is defined next to the method (trainers/<method>.py): ALIGN and MMP,
    # CoOp (COOP), CoCoOp (COCOOP), MaPLe, IVLP, VPT.
    trainers.add_method_configs(cfg)

    cfg.DATASET.SUBSAMPLE_CLASSES = "all"  # all, base or new


def setup_cfg(args):
    """Build the frozen config: defaults, extend_cfg, dataset YAML, method YAML, flags, opts."""
    cfg = get_cfg_default()
    extend_cfg(cfg)
    if args.dataset_config_file:
        merge_config_file(cfg, args.dataset_config_file)
    if args.config_file:
        merge_config_file(cfg, args.config_file)
    reset_cfg(cfg, args)
    merge_config_opts(cfg, args.opts)
    if cfg.DATASET.SUBSAMPLE_CLASSES not in SUBSAMPLE_CHOICES:
        raise ConfigError(
            f"DATASET.SUBSAMPLE_CLASSES must be one of {', '.join(SUBSAMPLE_CHOICES)}, "
            f"but got {cfg.DATASET.SUBSAMPLE_CLASSES!r}"
        )
    cfg.freeze()
    return cfg


def trainer_config_node(trainer_name):
    """The ``TRAINER.<NODE>`` that the trainer ``trainer_name`` reads (its class attribute
    ``CONFIG_NODE``, which every method trainer has), or None when unknown (an unregistered name,
    a trainer file of one's own without the attribute)."""
    if trainer_name not in TRAINER_REGISTRY.registered_names():
        return None
    return getattr(TRAINER_REGISTRY.get(trainer_name), "CONFIG_NODE", None)


def _trainer_nodes_of_file(path):
    """The nodes TRAINER.<X> under which the YAML file ``path`` sets keys (already merged, so readable)."""
    with open(path) as f:
        content = yaml.safe_load(f) or {}
    trainer = content.get("TRAINER") if isinstance(content, dict) else None
    return [name for name, value in (trainer or {}).items() if isinstance(value, dict)]


def ignored_trainer_nodes(cfg, args):
    """Warning lines for keys that a config file or the opts set under another method's node
    TRAINER.<X> than the one the chosen trainer reads (e.g. --trainer CoOp with a MaPLe recipe):
    the trainer never reads them. Empty when the trainer's node is unknown."""
    node = trainer_config_node(cfg.TRAINER.NAME)
    if node is None:
        return []
    sources = [
        (f'config file "{path}"', _trainer_nodes_of_file(path))
        for path in (args.dataset_config_file, args.config_file)
        if path
    ]
    opts = args.opts or []
    opt_nodes = [key.split(".")[1] for key in opts[::2] if key.startswith("TRAINER.") and key.count(".") >= 2]
    sources.append(("the command-line opts", list(dict.fromkeys(opt_nodes))))
    lines = []
    for source, nodes in sources:
        for other in nodes:
            if other != node:
                lines.append(
                    f"Warning: TRAINER.{other}, set in {source}, is not read by --trainer {cfg.TRAINER.NAME} "
                    f"(it reads TRAINER.{node}): those keys are ignored"
                    + (" (is this file another method's recipe?)" if source.startswith("config file") else "")
                )
    return lines


def check_model_files(trainer, model_dir, epoch):
    """Fail early, naming what exists, when an --eval-only model file is missing."""
    if not model_dir:
        if epoch is not None:
            raise CommandLineError(f"--load-epoch {epoch} needs --model-dir")
        return
    for name in trainer.get_model_names():
        find_model_file(model_dir, name, epoch)


def print_distributed_setup(cfg):
    """One line on the process group and the global batch (distributed runs only)."""
    world_size, batch_size = get_world_size(), cfg.DATALOADER.TRAIN_X.BATCH_SIZE
    print(
        f"Distributed run: {world_size} processes ({dist.get_backend()}); training batch {batch_size} per process "
        f"(DATALOADER.TRAIN_X.BATCH_SIZE), global batch {world_size} x {batch_size} = {world_size * batch_size}"
    )


def effective_config(argv):
    """The frozen config that ``train.py argv`` would run (nothing else is done)."""
    return setup_cfg(build_parser().parse_args(argv))


def print_model_files(trainer, paths):
    """One ``Model file of <name>: <path> (sha256 ...)`` line per registered model (main process)."""
    if not is_main_process():
        return
    for name in trainer.get_model_names():
        path = paths(name)
        if path and osp.isfile(path):
            print(provenance.model_file_line(name, path))


def deployed_model_file(cfg, name):
    """The model file the final test of a training run used: model-best.pth.tar with
    TEST.FINAL_MODEL best_val, else the last saved epoch."""
    folder = osp.join(cfg.OUTPUT_DIR, name)
    if cfg.TEST.FINAL_MODEL == "best_val":
        return osp.join(folder, provenance.BEST_MODEL_NAME)
    return pointed_checkpoint(folder)


def main(args, request=None):
    """Run what ``args`` asks; ``request``: its ``Run request`` fingerprint (logged at the start)."""
    cfg = setup_cfg(args)
    # Under torchrun: the process group for the whole run, and a silent console on ranks > 0.
    # The output folder is locked before anything is written into it.
    with torchrun_session(cfg.USE_CUDA), lock_output_dir(cfg.OUTPUT_DIR):
        run_trainer(cfg, args, request)


def interrupt_line(trainer, cfg, args, interrupt):
    """The one line printed when Ctrl-C or SIGTERM stops a run: where, and how to continue."""
    signame = interrupt_signal(interrupt).name
    if args.eval_only:
        return f"Interrupted during the evaluation ({signame}); rerun the same command to evaluate again"
    where = trainer.describe_progress() if trainer is not None else "before training"
    checkpoint = trainer.last_checkpoint(cfg.OUTPUT_DIR) if trainer is not None else None
    then = "resume" if checkpoint else "start again"
    return f"Interrupted {where} ({signame}); last checkpoint: {checkpoint or 'none'}; rerun the same command to {then}"


def run_trainer(cfg, args, request=None):
    """Log setup, seeding, the run's report, then build the trainer and train or evaluate.

    A KeyboardInterrupt (Ctrl-C, or SIGTERM through ``sigterm_interrupts``) leaves with the line
    to print in its ``report`` attribute.
    """
    # The logger first, so that the seed line reaches log.txt (Dassl.pytorch printed it before the log existed).
    setup_logger(cfg.OUTPUT_DIR)
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    if is_distributed():
        print_distributed_setup(cfg)
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True

    print_args(args, cfg)
    print(f"Effective OPTIM.MAX_EPOCH: {cfg.OPTIM.MAX_EPOCH}")
    for line in ignored_trainer_nodes(cfg, args):
        print(line)
    if request:
        print(provenance.REQUEST_PREFIX + request)
    print("Collecting env info ...")
    if is_main_process():  # it takes seconds, and only rank 0's console and log show it
        print(f"** System info **\n{collect_env_info()}\n")

    trainer = None
    try:
        trainer = build_trainer(cfg)
        if args.eval_only:
            check_model_files(trainer, args.model_dir, args.load_epoch)
            trainer.load_model(args.model_dir, epoch=args.load_epoch)
            if args.model_dir:
                print_model_files(trainer, lambda name: find_model_file(args.model_dir, name, args.load_epoch))
            trainer.test()
        elif not args.no_train:
            trainer.train()
            print_model_files(trainer, lambda name: deployed_model_file(cfg, name))
    except KeyboardInterrupt as interrupt:
        interrupt.report = interrupt_line(trainer, cfg, args, interrupt)
        raise


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=str, default="", help="path to dataset")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument("--resume", type=str, default="", help="checkpoint directory (from which the training resumes)")
    parser.add_argument("--seed", type=int, default=-1, help="only non-negative values enable a fixed seed")
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="path to config file")
    parser.add_argument("--dataset-config-file", type=str, default="", help="path to config file for dataset setup")
    parser.add_argument("--trainer", type=str, default="", help="name of trainer")
    parser.add_argument("--backbone", type=str, default="", help="name of CNN backbone")
    parser.add_argument("--head", type=str, default="", help="name of head")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument("--model-dir", type=str, default="", help="load model from this directory for eval-only mode")
    parser.add_argument("--load-epoch", type=int, help="load model weights at this epoch for evaluation")
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument(
        "opts", default=None, nargs=argparse.REMAINDER, help="modify config options using the command-line"
    )
    return parser


def user_error_message(error, args):
    """The one-line message of an expected error."""
    if isinstance(error, ImageReadError):
        return (
            f"{ImageReadError.message_of(error)}. Check every image with: "
            f"python -m tools.check_datasets --root {args.root or 'DATA'} --verify-images"
        )
    return str(error)


def run(argv=None):
    """Parse ``argv`` and run ``main``; return the exit status: 0, 1 for an error (one ``Error:``
    line on stdout, so also in log.txt once the logger is set up), 130 / 143 after Ctrl-C / SIGTERM."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    with sigterm_interrupts():
        try:
            main(args, provenance.request_fingerprint(argv))
        except KeyboardInterrupt as interrupt:
            sys.stdout.flush()
            print(getattr(interrupt, "report", f"Interrupted before training ({interrupt_signal(interrupt).name})"))
            sys.stdout.flush()
            return 128 + interrupt_signal(interrupt)
        except USER_ERRORS as e:
            report_error(e, user_error_message(e, args))
            return 1
        except Exception as e:
            report_error(e, unexpected=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
