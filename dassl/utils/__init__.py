from .dist import (
    all_gather_cat,
    get_rank,
    get_world_size,
    is_distributed,
    is_main_process,
    launched_by_torchrun,
    shared_random_seed,
    synchronize,
    torchrun_session,
)
from .lock import LOCK_FILE_NAME, OutputDirInUseError, lock_output_dir
from .logger import LogWriteError, setup_logger
from .meters import AverageMeter, MetricMeter
from .progress import progress_bar
from .registry import Registry, UnavailableChoiceError, check_availability
from .resume import (
    find_resume_checkpoint,
    load_weights,
    pointed_checkpoint,
    restore_checkpoint,
    resume_from_checkpoint,
)
from .tools import (
    ImageReadError,
    check_isfile,
    collect_env_info,
    listdir_nohidden,
    mkdir_if_missing,
    read_image,
    read_json,
    set_random_seed,
    tolist_if_not,
    write_json,
)
from .torchtools import (
    BEST_MODEL_NAME,
    POINTER_NAME,
    UNSAFE_LOAD_ENV,
    CheckpointError,
    CheckpointNotFoundError,
    CheckpointWriteError,
    UnsafeCheckpointError,
    count_num_param,
    find_model_file,
    load_checkpoint,
    load_model_checkpoint,
    load_pretrained_weights,
    model_file_name,
    save_checkpoint,
    saved_epochs,
)
