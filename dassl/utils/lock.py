"""One run per output folder: ``lock_output_dir`` refuses a second run on a folder in use.

The lock is ``fcntl.flock`` on ``OUTPUT_DIR/.lock``, a file that also names its holder (pid,
host, start time) for the refusal message. The kernel drops a flock when its process ends in any
way (also SIGKILL or a crash), so a dead run never blocks the next one; a clean exit also removes
the file. In a distributed (torchrun) run only rank 0 takes the lock, and every rank fails if it
cannot.
"""

import contextlib
import datetime
import fcntl
import os
import os.path as osp
import socket

import torch.distributed as dist

from .dist import is_distributed, is_main_process
from .tools import mkdir_if_missing

__all__ = ["LOCK_FILE_NAME", "OutputDirInUseError", "lock_output_dir"]

LOCK_FILE_NAME = ".lock"


class OutputDirInUseError(RuntimeError):
    """Another live run holds the output folder; the message names the folder and the holder."""


def _holder_description(fd):
    """What the holder wrote into the lock file ("pid P on host H, started T"), or a placeholder."""
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode(errors="replace").strip()
    return text or "holder not recorded yet"


def _acquire(directory):
    """Lock ``directory`` and return the open lock file descriptor.

    Raises:
        OutputDirInUseError: another process holds the lock.
    """
    path = osp.join(directory, LOCK_FILE_NAME)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_description(fd)
            os.close(fd)
            raise OutputDirInUseError(
                f'Output folder "{directory}" is in use by another run ({holder}); wait until it ends, '
                "or choose another --output-dir"
            ) from None
        # A holder that ended between our open and our flock removed the file we locked: lock the
        # file now at ``path`` instead (another run may have created it meanwhile).
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)

    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}, started {started}\n".encode(), 0)
    return fd


@contextlib.contextmanager
def lock_output_dir(directory):
    """Hold the lock on ``directory`` (created if missing) for the duration of the block.

    Raises:
        OutputDirInUseError: on every process, when another run holds the folder.
    """
    fd, error = None, None
    if is_main_process():
        mkdir_if_missing(directory)
        try:
            fd = _acquire(directory)
        except OutputDirInUseError as e:
            error = str(e)
    if is_distributed():
        shared = [error]
        dist.broadcast_object_list(shared, src=0)
        error = shared[0]
    if error is not None:
        raise OutputDirInUseError(error)
    try:
        yield
    finally:
        if fd is not None:
            # Removed while still held: a run waiting to lock the old file sees that it is gone.
            with contextlib.suppress(FileNotFoundError):
                os.remove(osp.join(directory, LOCK_FILE_NAME))
            os.close(fd)
