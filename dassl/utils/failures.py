"""How a run that stops early reports it: one line on the console, the traceback in the log.

- ``report_error``: ``Error: <message>`` on stdout (so also as the last line of log.txt); the
  traceback goes to log.txt, and to stderr for an unexpected error (a bug or an environment
  problem) or when the environment variable ``DASSL_TRACEBACK=1`` asks for it.
- ``sigterm_interrupts``: SIGTERM (a scheduler's stop, torchrun's shutdown) raises ``Terminated``,
  a KeyboardInterrupt, so that both signals unwind the run the same way: ``finally`` blocks run, a
  checkpoint being written is discarded, and ``interrupt_line`` says where the run stopped.
"""

import contextlib
import os
import signal
import sys
import threading
import traceback

from .logger import Logger, LogWriteError

__all__ = ["TRACEBACK_ENV", "Terminated", "interrupt_signal", "report_error", "sigterm_interrupts"]

# Environment variable: "1" prints the traceback of every error on stderr, not only in log.txt.
TRACEBACK_ENV = "DASSL_TRACEBACK"


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM."""

    def __init__(self, signum=signal.SIGTERM):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def sigterm_interrupts():
    """Within the block, SIGTERM raises ``Terminated`` in the main thread (elsewhere: no change)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupt_signal(interrupt):
    """The signal behind a KeyboardInterrupt: SIGTERM for ``Terminated``, else SIGINT (Ctrl-C).
    The exit status of the run is 128 + its number (130, 143)."""
    return signal.Signals(getattr(interrupt, "signum", signal.SIGINT))


def _log_file():
    """The log file path when stdout is the log tee, else None."""
    return sys.stdout.path if isinstance(sys.stdout, Logger) else None


def report_error(error, message=None, unexpected=False):
    """Print ``Error: <message>`` and keep ``error``'s traceback in log.txt.

    Args:
        error (BaseException): the exception being handled.
        message (str): the line to print; default ``str(error)`` for an expected error, and
            ``<type>: <first line>`` plus where the traceback is for an unexpected one.
        unexpected (bool): a bug or an environment problem: the traceback also goes to stderr.
    """
    trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    log_file = _log_file()
    if log_file is not None:
        with contextlib.suppress(LogWriteError):  # a log that cannot take it: the console still gets the line
            sys.stdout.write_to_file(trace)
    if unexpected or os.environ.get(TRACEBACK_ENV) == "1":
        sys.stderr.write(trace)
    if message is None:
        message = str(error)
        if unexpected:
            first_line = message.strip().splitlines()[0] if message.strip() else "(no message)"
            where = f"in {log_file} and on stderr" if log_file is not None else "on stderr"
            message = f"{type(error).__name__}: {first_line} (the traceback is {where})"
    # A log that cannot be written raises after the console got the text: the line is still shown.
    for step in (sys.stdout.flush, lambda: print(f"Error: {message}"), sys.stdout.flush):
        with contextlib.suppress(LogWriteError):
            step()
