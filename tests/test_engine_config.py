"""dassl.config: the default tree, yacs strictness and the checked
merge helpers that name unknown keys with their nearest valid keys."""

import pytest

from dassl.config import (
    ConfigError,
    config_differences,
    config_keys,
    config_snapshot,
    get_cfg_default,
    merge_config_file,
    merge_config_opts,
)

# Every key of Dassl.pytorch v0.6.3's default tree with its default, plus the project's MODEL.BACKBONE.PATH,
# ACTIVATION, VISION_HEADS, TEXT_HEADS and TRAIN.RESUME_CHANGED_CONFIG.
SPEC_DEFAULTS = {
    "VERSION": 1,
    "OUTPUT_DIR": "./output",
    "RESUME": "",
    "SEED": -1,
    "USE_CUDA": True,
    "VERBOSE": True,
    "INPUT.SIZE": (224, 224),
    "INPUT.INTERPOLATION": "bilinear",
    "INPUT.TRANSFORMS": (),
    "INPUT.NO_TRANSFORM": False,
    "INPUT.PIXEL_MEAN": [0.485, 0.456, 0.406],
    "INPUT.PIXEL_STD": [0.229, 0.224, 0.225],
    "INPUT.CROP_PADDING": 4,
    "INPUT.RRCROP_SCALE": (0.08, 1.0),
    "INPUT.CUTOUT_N": 1,
    "INPUT.CUTOUT_LEN": 16,
    "INPUT.GN_MEAN": 0.0,
    "INPUT.GN_STD": 0.15,
    "INPUT.RANDAUGMENT_N": 2,
    "INPUT.RANDAUGMENT_M": 10,
    "INPUT.COLORJITTER_B": 0.4,
    "INPUT.COLORJITTER_C": 0.4,
    "INPUT.COLORJITTER_S": 0.4,
    "INPUT.COLORJITTER_H": 0.1,
    "INPUT.RGS_P": 0.2,
    "INPUT.GB_P": 0.5,
    "INPUT.GB_K": 21,
    "DATASET.ROOT": "",
    "DATASET.NAME": "",
    "DATASET.SOURCE_DOMAINS": (),
    "DATASET.TARGET_DOMAINS": (),
    "DATASET.NUM_LABELED": -1,
    "DATASET.NUM_SHOTS": -1,
    "DATASET.VAL_PERCENT": 0.1,
    "DATASET.STL10_FOLD": -1,
    "DATASET.CIFAR_C_TYPE": "",
    "DATASET.CIFAR_C_LEVEL": 1,
    "DATASET.ALL_AS_UNLABELED": False,
    "DATALOADER.NUM_WORKERS": 4,
    "DATALOADER.K_TRANSFORMS": 1,
    "DATALOADER.RETURN_IMG0": False,
    "DATALOADER.TRAIN_X.SAMPLER": "RandomSampler",
    "DATALOADER.TRAIN_X.BATCH_SIZE": 32,
    "DATALOADER.TRAIN_X.N_DOMAIN": 0,
    "DATALOADER.TRAIN_X.N_INS": 16,
    "DATALOADER.TRAIN_U.SAME_AS_X": True,
    "DATALOADER.TRAIN_U.SAMPLER": "RandomSampler",
    "DATALOADER.TRAIN_U.BATCH_SIZE": 32,
    "DATALOADER.TRAIN_U.N_DOMAIN": 0,
    "DATALOADER.TRAIN_U.N_INS": 16,
    "DATALOADER.TEST.SAMPLER": "SequentialSampler",
    "DATALOADER.TEST.BATCH_SIZE": 32,
    "MODEL.INIT_WEIGHTS": "",
    "MODEL.BACKBONE.NAME": "",
    "MODEL.BACKBONE.PATH": "",
    "MODEL.BACKBONE.ACTIVATION": "",
    "MODEL.BACKBONE.VISION_HEADS": 0,
    "MODEL.BACKBONE.TEXT_HEADS": 0,
    "MODEL.BACKBONE.PRETRAINED": True,
    "MODEL.HEAD.NAME": "",
    "MODEL.HEAD.HIDDEN_LAYERS": (),
    "MODEL.HEAD.ACTIVATION": "relu",
    "MODEL.HEAD.BN": True,
    "MODEL.HEAD.DROPOUT": 0.0,
    "OPTIM.NAME": "adam",
    "OPTIM.LR": 0.0003,
    "OPTIM.WEIGHT_DECAY": 5e-4,
    "OPTIM.MOMENTUM": 0.9,
    "OPTIM.SGD_DAMPNING": 0,
    "OPTIM.SGD_NESTEROV": False,
    "OPTIM.RMSPROP_ALPHA": 0.99,
    "OPTIM.ADAM_BETA1": 0.9,
    "OPTIM.ADAM_BETA2": 0.999,
    "OPTIM.STAGED_LR": False,
    "OPTIM.NEW_LAYERS": (),
    "OPTIM.BASE_LR_MULT": 0.1,
    "OPTIM.LR_SCHEDULER": "single_step",
    "OPTIM.STEPSIZE": (-1,),
    "OPTIM.GAMMA": 0.1,
    "OPTIM.MAX_EPOCH": 10,
    "OPTIM.WARMUP_EPOCH": -1,
    "OPTIM.WARMUP_TYPE": "linear",
    "OPTIM.WARMUP_CONS_LR": 1e-5,
    "OPTIM.WARMUP_MIN_LR": 1e-5,
    "OPTIM.WARMUP_RECOUNT": True,
    "TRAIN.CHECKPOINT_FREQ": 0,
    "TRAIN.RESUME_CHANGED_CONFIG": False,
    "TRAIN.PRINT_FREQ": 10,
    "TRAIN.COUNT_ITER": "train_x",
    "TEST.EVALUATOR": "Classification",
    "TEST.PER_CLASS_RESULT": False,
    "TEST.COMPUTE_CMAT": False,
    "TEST.NO_TEST": False,
    "TEST.SPLIT": "test",
    "TEST.FINAL_MODEL": "last_step",
    "TRAINER.NAME": "",
}


def _get(cfg, dotted):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def test_default_tree_is_exactly_the_spec_tree():
    cfg = get_cfg_default()
    leaves = [key for key in config_keys(cfg) if not hasattr(_get(cfg, key), "items")]
    assert sorted(leaves) == sorted(SPEC_DEFAULTS)
    for key, default in SPEC_DEFAULTS.items():
        value = _get(cfg, key)
        assert value == default and type(value) is type(default), key
    assert "SUBSAMPLE_CLASSES" not in cfg.DATASET  # added by train.py's extend_cfg


def test_get_cfg_default_returns_independent_unfrozen_clones():
    first, second = get_cfg_default(), get_cfg_default()
    assert not first.is_frozen()
    first.OPTIM.LR = 1.0
    assert second.OPTIM.LR == 0.0003
    assert get_cfg_default().OPTIM.LR == 0.0003


def test_opts_are_literal_evaluated_and_coerced():
    cfg = get_cfg_default()
    merge_config_opts(
        cfg,
        [
            "INPUT.SIZE",
            "(8, 8)",
            "OPTIM.WARMUP_CONS_LR",
            "1e-5",
            "OPTIM.MAX_EPOCH",
            "16",
            "USE_CUDA",
            "False",
            "DATASET.NAME",
            "OxfordPets",
            "INPUT.TRANSFORMS",
            "['normalize']",
            "OPTIM.STEPSIZE",
            "[3, 5]",
        ],
    )
    assert cfg.INPUT.SIZE == (8, 8)
    assert cfg.OPTIM.WARMUP_CONS_LR == 1e-5 and isinstance(cfg.OPTIM.WARMUP_CONS_LR, float)
    assert cfg.OPTIM.MAX_EPOCH == 16
    assert cfg.USE_CUDA is False
    assert cfg.DATASET.NAME == "OxfordPets"
    assert cfg.INPUT.TRANSFORMS == ("normalize",)  # list coerced to the default's tuple type
    assert cfg.OPTIM.STEPSIZE == (3, 5)


def test_an_int_for_a_float_key_is_that_float_from_the_command_line():
    cfg = get_cfg_default()
    merge_config_opts(cfg, ["OPTIM.LR", "1", "OPTIM.GAMMA", "-2", "OPTIM.WEIGHT_DECAY", "0"])
    assert (cfg.OPTIM.LR, cfg.OPTIM.GAMMA, cfg.OPTIM.WEIGHT_DECAY) == (1.0, -2.0, 0.0)
    assert all(type(value) is float for value in (cfg.OPTIM.LR, cfg.OPTIM.GAMMA, cfg.OPTIM.WEIGHT_DECAY))
    merge_config_opts(cfg, ["OPTIM.MAX_EPOCH", "5", "OPTIM.LR", "2.5"])
    assert type(cfg.OPTIM.MAX_EPOCH) is int and cfg.OPTIM.LR == 2.5  # ints stay ints for int keys


@pytest.mark.parametrize(
    "key, value, kind",
    [
        ("OPTIM.MAX_EPOCH", "2.0", "float"),  # a float for an int key
        ("OPTIM.LR", "True", "bool"),  # a bool is not a number
        ("OPTIM.LR", "'1'", "str"),  # a quoted string stays a string
        ("OPTIM.MAX_EPOCH", "True", "bool"),
    ],
)
def test_other_type_mismatches_are_still_refused(key, value, kind):
    with pytest.raises(ConfigError) as err:
        merge_config_opts(get_cfg_default(), [key, value])
    message = str(err.value)
    assert key in message and "Type mismatch" in message and f"<class '{kind}'>" in message


def test_an_int_for_a_float_key_is_that_float_in_yaml(tmp_path):
    path = tmp_path / "method.yaml"
    path.write_text("OPTIM:\n  LR: 2\n  MAX_EPOCH: 3\nINPUT:\n  GN_STD: 1\n")
    cfg = get_cfg_default()
    merge_config_file(cfg, str(path))
    assert (cfg.OPTIM.LR, cfg.INPUT.GN_STD, cfg.OPTIM.MAX_EPOCH) == (2.0, 1.0, 3)
    assert (type(cfg.OPTIM.LR), type(cfg.INPUT.GN_STD), type(cfg.OPTIM.MAX_EPOCH)) == (float, float, int)
    path.write_text("OPTIM:\n  LR: true\n")
    with pytest.raises(ConfigError, match="OPTIM.LR"):
        merge_config_file(cfg, str(path))


def test_unknown_opts_key_names_the_key_and_the_nearest_valid_keys():
    with pytest.raises(ConfigError) as err:
        merge_config_opts(get_cfg_default(), ["OPTIM.LRR", "0.1"])
    message = str(err.value)
    assert message.startswith("Non-existent config key: OPTIM.LRR (from the command-line opts)")
    assert "nearest valid keys: OPTIM.LR," in message
    assert ", OPTIM," not in message  # the key's own parent is not a suggestion


def test_unknown_key_without_close_match_lists_its_node():
    with pytest.raises(ConfigError) as err:
        merge_config_opts(get_cfg_default(), ["TEST.ZZZZZZZZ", "1"])
    assert "TEST.FINAL_MODEL" in str(err.value) and "TEST.SPLIT" in str(err.value)


def test_unknown_key_in_yaml_names_the_file_and_nearest_keys(tmp_path):
    path = tmp_path / "method.yaml"
    path.write_text("OPTIM:\n  NAME: sgd\n  MAX_EPOHC: 5\n")
    cfg = get_cfg_default()
    with pytest.raises(ConfigError) as err:
        merge_config_file(cfg, str(path))
    message = str(err.value)
    assert "Non-existent config key: OPTIM.MAX_EPOHC" in message
    assert str(path) in message
    assert "OPTIM.MAX_EPOCH" in message
    assert cfg.OPTIM.NAME == "adam"  # nothing merged from a bad file


def test_yaml_merge_and_type_mismatch_in_yaml(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("OPTIM:\n  NAME: sgd\n  LR: 0.0025\nINPUT:\n  SIZE: [8, 8]\n")
    cfg = get_cfg_default()
    merge_config_file(cfg, str(good))
    assert (cfg.OPTIM.NAME, cfg.OPTIM.LR, cfg.INPUT.SIZE) == ("sgd", 0.0025, (8, 8))

    bad = tmp_path / "bad.yaml"
    bad.write_text("OPTIM:\n  MAX_EPOCH: 2.5\n")
    with pytest.raises(ConfigError) as err:
        merge_config_file(cfg, str(bad))
    assert "OPTIM.MAX_EPOCH" in str(err.value) and str(bad) in str(err.value)


def test_missing_config_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=f'Config file not found: "{missing}"'):
        merge_config_file(get_cfg_default(), str(missing))


@pytest.mark.parametrize(
    "text, where",
    [
        ("OPTIM:\n  LR: 0.1\n  NAME: [sgd\n", "line 4, column 1"),
        ("OPTIM: : sgd\n", "line 1, column 8"),
        ("OPTIM:\n\tLR: 0.1\n", "line 2, column 1"),
    ],
)
def test_yaml_syntax_error_names_the_file_and_the_line(tmp_path, text, where):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        merge_config_file(get_cfg_default(), str(path))
    message = str(err.value)
    assert message.startswith(f'Config file "{path}" is not valid YAML at {where}: ')
    assert "\n" not in message


def test_yaml_that_is_not_a_mapping_is_named(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- OPTIM.LR\n- 0.1\n")
    with pytest.raises(ConfigError, match=f'Config file "{path}" must hold a mapping'):
        merge_config_file(get_cfg_default(), str(path))


def test_snapshot_is_plain_data_and_differences_name_the_selected_keys():
    cfg = get_cfg_default()
    snapshot = config_snapshot(cfg)
    assert snapshot["OPTIM.LR"] == 0.0003 and snapshot["INPUT.SIZE"] == [224, 224]
    assert len(snapshot) == len([key for key in config_keys(cfg) if not hasattr(_get(cfg, key), "items")])
    merge_config_opts(cfg, ["OPTIM.LR", "0.01", "SEED", "3", "DATALOADER.NUM_WORKERS", "0", "INPUT.SIZE", "(8, 8)"])
    selection = ("SEED", "OPTIM.", "INPUT.")
    assert config_differences(snapshot, cfg, selection) == [
        ("SEED", -1, 3),
        ("INPUT.SIZE", [224, 224], [8, 8]),
        ("OPTIM.LR", 0.0003, 0.01),
    ]
    del snapshot["OPTIM.LR"]  # a key the snapshot's version did not have is not compared
    assert [key for key, _, _ in config_differences(snapshot, cfg, ("OPTIM.",))] == []
    assert config_differences(config_snapshot(cfg), cfg, selection) == []


def test_odd_opts_list_is_an_error():
    with pytest.raises(ConfigError, match="KEY VALUE pairs"):
        merge_config_opts(get_cfg_default(), ["OPTIM.LR"])
