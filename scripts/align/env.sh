# ALIGN settings shared by the scripts in this folder (source it after ../common.sh).
#   TRAINER  ALIGN (default), or MMP with the official config file and keys
#   SHOTS    training shots per class (default: 16)
#   CFG      recipe in configs/trainers/ALIGN/ (each script has its protocol's default)
TRAINER=${TRAINER:-ALIGN}
SHOTS=${SHOTS:-16}
CONFIG_DIR=configs/trainers/ALIGN
LEARNER=MultiModalPromptLearner  # the registered module: checkpoints live in <run>/$LEARNER/

# base2new_cfg DATASET: the base-to-new recipe (SUN397 has its own).
base2new_cfg() {
    if [ "$1" = sun397 ]; then echo vit_b16_c2_ep20_batch4_2ctx_sun397; else echo vit_b16_c2_ep20_batch4_2ctx; fi
}

# train_py DATASET CFG OUTPUT_DIR SEED [flags and KEY VALUE opts...]: one train.py call.
train_py() {
    local dataset=$1 cfg=$2 dir=$3 seed=$4
    shift 4
    "$PYTHON" train.py \
        --root "$DATA" \
        --seed "$seed" \
        --trainer "$TRAINER" \
        --dataset-config-file "configs/datasets/$dataset.yaml" \
        --config-file "$CONFIG_DIR/$cfg.yaml" \
        --output-dir "$dir" \
        "$@" ${EXTRA_OPTS[@]+"${EXTRA_OPTS[@]}"}
}
