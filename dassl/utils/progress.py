"""Progress bars that a person watching a terminal sees and log files never contain."""

import sys

from tqdm import tqdm

from .dist import is_main_process

__all__ = ["progress_bar"]


def progress_bar(iterable, desc, total=None):
    """Wrap ``iterable`` in a tqdm bar with ETA on stderr, when stderr is an interactive terminal.

    Otherwise (a pipe, a file, a batch job, a non-main process) the iterable is returned as is, so
    there is no bar output and no per-item overhead. stderr never reaches log.txt (setup_logger
    tees stdout only).
    """
    if not (sys.stderr.isatty() and is_main_process()):
        return iterable
    return tqdm(iterable, desc=desc, total=total, file=sys.stderr, leave=False, dynamic_ncols=True)
