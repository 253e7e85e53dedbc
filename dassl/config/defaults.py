"""The default config tree (Dassl.pytorch v0.6.3 keys and defaults).

Dassl's domain-adaptation / semi-supervised ``TRAINER`` sub-nodes (MCD, MME, FIXMATCH, ...) are
omitted: no trainer of this project reads them. ``train.py``'s ``extend_cfg`` adds the method
nodes (``TRAINER.COOP`` ...) and ``DATASET.SUBSAMPLE_CLASSES``.
"""

from yacs.config import CfgNode as CN

_C = CN()

_C.VERSION = 1
# Directory for the log, checkpoints, tensorboard files and the confusion matrix.
_C.OUTPUT_DIR = "./output"
# Directory to resume from (empty: resume from OUTPUT_DIR if it holds checkpoints).
_C.RESUME = ""
# Fixed seed when >= 0 (also part of the few-shot cache name); -1: not seeded.
_C.SEED = -1
# Use CUDA when it is available.
_C.USE_CUDA = True
# Print the build_* lines and the dataset summary table.
_C.VERBOSE = True

###########################
# Input
###########################
_C.INPUT = CN()
_C.INPUT.SIZE = (224, 224)
# bilinear, bicubic or nearest.
_C.INPUT.INTERPOLATION = "bilinear"
# Transform names applied at training time (see dassl.data.transforms.AVAI_CHOICES).
_C.INPUT.TRANSFORMS = ()
# If True, build_transform returns None (DatasetWrapper then yields PIL images).
_C.INPUT.NO_TRANSFORM = False
# Default mean and std: ImageNet's.
_C.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]
_C.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]
# random_crop padding.
_C.INPUT.CROP_PADDING = 4
# random_resized_crop scale range.
_C.INPUT.RRCROP_SCALE = (0.08, 1.0)
# cutout: number of holes and their side length.
_C.INPUT.CUTOUT_N = 1
_C.INPUT.CUTOUT_LEN = 16
# gaussian_noise mean and std.
_C.INPUT.GN_MEAN = 0.0
_C.INPUT.GN_STD = 0.15
# RandAugment N and M (the randaugment* choices are not implemented by this engine).
_C.INPUT.RANDAUGMENT_N = 2
_C.INPUT.RANDAUGMENT_M = 10
# colorjitter brightness, contrast, saturation, hue.
_C.INPUT.COLORJITTER_B = 0.4
_C.INPUT.COLORJITTER_C = 0.4
_C.INPUT.COLORJITTER_S = 0.4
_C.INPUT.COLORJITTER_H = 0.1
# randomgrayscale probability.
_C.INPUT.RGS_P = 0.2
# gaussian_blur probability and kernel size.
_C.INPUT.GB_P = 0.5
_C.INPUT.GB_K = 21

###########################
# Dataset
###########################
_C.DATASET = CN()
# Data root (datasets use abspath(expanduser(ROOT))).
_C.DATASET.ROOT = ""
# Registered dataset name.
_C.DATASET.NAME = ""
# Source/target domains (domain-generalisation datasets only).
_C.DATASET.SOURCE_DOMAINS = ()
_C.DATASET.TARGET_DOMAINS = ()
# Unused by this project (Dassl semi-supervised settings).
_C.DATASET.NUM_LABELED = -1
# Few-shot training when >= 1 (K items per class).
_C.DATASET.NUM_SHOTS = -1
# Unused by this project.
_C.DATASET.VAL_PERCENT = 0.1
_C.DATASET.STL10_FOLD = -1
_C.DATASET.CIFAR_C_TYPE = ""
_C.DATASET.CIFAR_C_LEVEL = 1
_C.DATASET.ALL_AS_UNLABELED = False

###########################
# Dataloader
###########################
_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4
# Number of augmented views per training image (K > 1 gives lists of K tensors).
_C.DATALOADER.K_TRANSFORMS = 1
# Also return the un-augmented image as "img0".
_C.DATALOADER.RETURN_IMG0 = False
# Labelled training data.
_C.DATALOADER.TRAIN_X = CN()
_C.DATALOADER.TRAIN_X.SAMPLER = "RandomSampler"
_C.DATALOADER.TRAIN_X.BATCH_SIZE = 32
_C.DATALOADER.TRAIN_X.N_DOMAIN = 0
_C.DATALOADER.TRAIN_X.N_INS = 16
# Unlabelled training data (never built by this project).
_C.DATALOADER.TRAIN_U = CN()
_C.DATALOADER.TRAIN_U.SAME_AS_X = True
_C.DATALOADER.TRAIN_U.SAMPLER = "RandomSampler"
_C.DATALOADER.TRAIN_U.BATCH_SIZE = 32
_C.DATALOADER.TRAIN_U.N_DOMAIN = 0
_C.DATALOADER.TRAIN_U.N_INS = 16
# Val and test data.
_C.DATALOADER.TEST = CN()
_C.DATALOADER.TEST.SAMPLER = "SequentialSampler"
_C.DATALOADER.TEST.BATCH_SIZE = 32

###########################
# Model
###########################
_C.MODEL = CN()
# Path to initial weights, loaded with load_pretrained_weights by trainers that support it.
_C.MODEL.INIT_WEIGHTS = ""
_C.MODEL.BACKBONE = CN()
# Backbone name (for CLIP trainers: RN50, RN101, ViT-B/16, ViT-B/32, ...).
_C.MODEL.BACKBONE.NAME = ""
# Local weights file for the backbone; empty: load by MODEL.BACKBONE.NAME (a project addition).
_C.MODEL.BACKBONE.PATH = ""
# CLIP files that do not record their architecture (plain state dicts without open_clip_config.json,
# docs/clip.md): the activation ("" = from the file, quick_gelu or gelu) and the attention heads of
# the vision and text towers (0 = from the file). What neither gives is OpenAI's architecture
# (QuickGELU, heads of 64), as OpenAI's clip.load assumes, said in one line. Project additions.
_C.MODEL.BACKBONE.ACTIVATION = ""
_C.MODEL.BACKBONE.VISION_HEADS = 0
_C.MODEL.BACKBONE.TEXT_HEADS = 0
_C.MODEL.BACKBONE.PRETRAINED = True
# Head of Dassl's SimpleNet (unused by the CLIP trainers).
_C.MODEL.HEAD = CN()
_C.MODEL.HEAD.NAME = ""
_C.MODEL.HEAD.HIDDEN_LAYERS = ()
_C.MODEL.HEAD.ACTIVATION = "relu"
_C.MODEL.HEAD.BN = True
_C.MODEL.HEAD.DROPOUT = 0.0

###########################
# Optimization
###########################
_C.OPTIM = CN()
# adam, amsgrad, sgd, rmsprop, radam or adamw.
_C.OPTIM.NAME = "adam"
_C.OPTIM.LR = 0.0003
_C.OPTIM.WEIGHT_DECAY = 5e-4
_C.OPTIM.MOMENTUM = 0.9
# SGD dampening (the misspelt name is Dassl's).
_C.OPTIM.SGD_DAMPNING = 0
_C.OPTIM.SGD_NESTEROV = False
_C.OPTIM.RMSPROP_ALPHA = 0.99
_C.OPTIM.ADAM_BETA1 = 0.9
_C.OPTIM.ADAM_BETA2 = 0.999
# Staged lr: NEW_LAYERS train at LR, the other top-level children at LR * BASE_LR_MULT.
_C.OPTIM.STAGED_LR = False
_C.OPTIM.NEW_LAYERS = ()
_C.OPTIM.BASE_LR_MULT = 0.1
# single_step, multi_step or cosine.
_C.OPTIM.LR_SCHEDULER = "single_step"
# Step size(s) of single_step / multi_step; -1 means MAX_EPOCH.
_C.OPTIM.STEPSIZE = (-1,)
_C.OPTIM.GAMMA = 0.1
_C.OPTIM.MAX_EPOCH = 10
# Warmup is on when WARMUP_EPOCH > 0; WARMUP_TYPE is constant or linear.
_C.OPTIM.WARMUP_EPOCH = -1
_C.OPTIM.WARMUP_TYPE = "linear"
# lr during constant warmup.
_C.OPTIM.WARMUP_CONS_LR = 1e-5
# lr of the first epoch of linear warmup.
_C.OPTIM.WARMUP_MIN_LR = 1e-5
# True: the main schedule starts from its step 0 after warmup (shifted right by WARMUP_EPOCH).
_C.OPTIM.WARMUP_RECOUNT = True

###########################
# Train
###########################
_C.TRAIN = CN()
# Every epoch is saved (model.pth.tar-N, resumable) and the previous epoch's file removed; with
# CHECKPOINT_FREQ > 0 the epochs that are its multiples are kept too. The last epoch is always kept.
_C.TRAIN.CHECKPOINT_FREQ = 0
# Resuming refuses a config that differs from the checkpoint's in the keys that decide training
# (OPTIM.*, TRAINER.*, dataset, input, batch, seed). True resumes anyway from the weights; if an
# OPTIM key changed, the optimizer state starts fresh and the new schedule is advanced to the epoch.
_C.TRAIN.RESUME_CHANGED_CONFIG = False
# Print the training line every PRINT_FREQ batches (every batch when an epoch is shorter).
_C.TRAIN.PRINT_FREQ = 10
# TrainerXU only.
_C.TRAIN.COUNT_ITER = "train_x"

###########################
# Test
###########################
_C.TEST = CN()
_C.TEST.EVALUATOR = "Classification"
_C.TEST.PER_CLASS_RESULT = False
# Save the row-normalised confusion matrix to OUTPUT_DIR/cmat.pt.
_C.TEST.COMPUTE_CMAT = False
# No evaluation during or after training.
_C.TEST.NO_TEST = False
# Split evaluated by test() (val falls back to test when there is no val set).
_C.TEST.SPLIT = "test"
# last_step: deploy the last epoch; best_val: evaluate on val every epoch and deploy the best.
_C.TEST.FINAL_MODEL = "last_step"

###########################
# Trainer
###########################
_C.TRAINER = CN()
# Registered trainer name.
_C.TRAINER.NAME = ""
