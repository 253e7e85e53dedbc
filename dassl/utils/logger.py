"""Copy everything printed to stdout into ``OUTPUT_DIR/log.txt`` (Dassl's ``setup_logger``).

stderr is not captured (as upstream): progress bars and warnings stay out of the log. The log is
written line by line (each complete line reaches the file at once), so a run killed by any signal
leaves every line it printed; train.py adds the traceback of a failed run with ``write_to_file``.

A log file that cannot be written (a full disk) stops the run: the print that failed still reaches
the console, the file is closed, and ``LogWriteError`` (an OSError naming the file and the
reason) is raised from that print; train.py reports it as one ``Error:`` line on the console.
"""

import contextlib
import os
import os.path as osp
import sys
import time

from tqdm import tqdm

from .dist import is_main_process
from .tools import mkdir_if_missing

__all__ = ["LogWriteError", "Logger", "setup_logger"]


class LogWriteError(OSError):
    """The log file cannot be written (disk full, file system gone read-only); the message names
    the file, the operating system's reason and what to do."""


class Logger:
    """Tee: writes every message to the console stream and to a log file.

    Complete lines reach the console through ``tqdm.external_write_mode``, so a progress bar
    drawn on the same terminal (stderr) is cleared before the line and redrawn after it; a
    partial line is held back until its newline (or a flush) so that a redraw cannot overwrite it.

    The console stream is never closed (a closed sys.stdout would break later prints): ``close()`` closes only the file.

    Args:
        fpath (str): log file, opened with "w" (line-buffered) after its folder is created.
        console: the stream to copy to (default: the current ``sys.stdout``).
    """

    def __init__(self, fpath, console=None):
        self.console = console if console is not None else sys.stdout
        mkdir_if_missing(osp.dirname(osp.abspath(fpath)))
        self.path = fpath
        self.file = open(fpath, "w", buffering=1)
        self._pending = ""

    def write(self, msg):
        failure = self._to_file(lambda: self.file.write(msg))
        self._pending += msg
        if "\n" in self._pending:
            lines, _, self._pending = self._pending.rpartition("\n")
            # Bars are drawn on stderr; the console shares that terminal (see the class doc).
            with tqdm.external_write_mode(file=sys.stderr):
                self.console.write(lines + "\n")
        self._raise_if(failure)

    def write_to_file(self, text):
        """Write ``text`` to the log file only (not the console), e.g. a traceback."""
        self._raise_if(self._to_file(lambda: (self.file.write(text), self.file.flush())))

    def flush(self):
        if self._pending:
            self.console.write(self._pending)
            self._pending = ""
        self.console.flush()
        self._raise_if(self._to_file(lambda: (self.file.flush(), os.fsync(self.file.fileno()))))

    def _to_file(self, operation):
        """Run ``operation`` on the open log file; return the OSError it raised (the file is then
        closed: nothing more is written to it), or None."""
        if self.file.closed:
            return None
        try:
            operation()
        except OSError as error:
            with contextlib.suppress(OSError):  # closing flushes the rest, which fails the same way
                self.file.close()
            return error
        return None

    def _raise_if(self, failure):
        if failure is not None:
            reason = failure.strerror or str(failure)
            raise LogWriteError(
                f'Cannot write the log "{self.path}": {reason}. Free space (or fix the folder), then run '
                "the same command again: it resumes from the last checkpoint"
            ) from failure

    def close(self):
        """Flush and close the log file; the console stays open."""
        try:
            self.flush()
        finally:
            self.file.close()

    def __getattr__(self, name):
        # isatty(), fileno(), encoding ... are the console's.
        console = self.__dict__.get("console")
        if console is None:
            raise AttributeError(name)
        return getattr(console, name)


def setup_logger(output=None):
    """Tee ``sys.stdout`` into a log file.

    Args:
        output (str or None): None does nothing. A path ending in ``.txt`` or ``.log`` is the log
            file; any other path is a folder and the file is ``output/log.txt``. An existing file
            is never overwritten: the new one gets the suffix ``-%Y-%m-%d-%H-%M-%S`` (and
            ``-1``, ``-2``, ... after it for another start in the same second).

    Only the main process writes a log file (the seam for distributed runs, ``dassl.utils.dist``).
    """
    if output is None or not is_main_process():
        return

    if output.endswith(".txt") or output.endswith(".log"):
        fpath = output
    else:
        fpath = osp.join(output, "log.txt")

    if osp.exists(fpath):
        stamped = fpath + time.strftime("-%Y-%m-%d-%H-%M-%S")
        fpath, number = stamped, 1
        while osp.exists(fpath):  # a start in the same second: "-1", "-2", ... (they sort after it)
            fpath, number = f"{stamped}-{number}", number + 1

    console = sys.stdout
    if isinstance(console, Logger):
        # A second setup (another run in the same process) replaces the tee, not stacks on it.
        console.close()
        console = console.console
    sys.stdout = Logger(fpath, console)
