"""Stopping a run cleanly on SIGTERM or SIGINT (a SLURM time limit, ``docker stop``, Ctrl-C):
:class:`SignalStop` holds the handlers, :class:`Stopped` is the exit (status 143/130, one line) that
:func:`wholebody.training.run.train`, :func:`wholebody.training.staged.train_staged` and
:func:`wholebody.training.evaluate.evaluate` raise, which ``wholebody-train`` and ``wholebody-eval-ckpt`` print.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import lightning.pytorch as L


class Stopped(SystemExit):
    """The run was stopped by SIGTERM or SIGINT. Exit status ``128 + signal`` (143 for SIGTERM, 130 for
    SIGINT: the shell's convention, never 0); ``message`` (one line) says what was saved and how to resume."""

    def __init__(self, signum: int, message: str | None = None) -> None:
        super().__init__(128 + int(signum))
        self.signum = int(signum)
        #: raised by the signal handler itself, before anyone said where the run stood
        self.bare = message is None
        #: the line to print ("" on DDP ranks other than 0: rank 0 says it)
        self.message = f"stopped by {signal.Signals(signum).name}" if message is None else message


#: The signals that stop a run cleanly (:class:`SignalStop`).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class SignalStop:
    """While entered (main thread only; a nested entry joins the outer one), SIGTERM and SIGINT stop the run cleanly.

    Inside a Trainer call Lightning's own SIGTERM handler is installed; it calls the handler it found
    (this one) after its own, which flags ``trainer.received_sigterm``: the loops then stop at the next
    batch boundary with a ``SIGTERMException`` (a ``SystemExit`` of status 0, which is why a stopped run
    used to look finished), :class:`~wholebody.training.callbacks.LastCheckpoint` saves ``last.ckpt`` and
    :func:`wholebody.training.run.train` turns it into :class:`Stopped`. A first SIGINT there is handed to Lightning's SIGTERM
    handler (the same clean stop, instead of a ``KeyboardInterrupt`` raised mid-step); a second one raises
    ``KeyboardInterrupt``. Outside a Trainer call (data preparation, between stages, the final files) the
    signal raises :class:`Stopped` at once: every output is written atomically, nothing is half-written.
    Lightning's SLURM auto-requeue handlers (SIGUSR1, and its "bypass" of SIGTERM) are left as they are.
    A forked child (a DataLoader worker) ignores both: a worker that died of the signal would fail the main
    process's next fetch with a traceback; the main process shuts its workers down (and they end with it).
    """

    def __init__(self) -> None:
        self._signum: int | None = None
        self._outer: SignalStop | None = None
        self._previous: dict[int, Any] = {}
        self._pid = os.getpid()

    @property
    def signum(self) -> int | None:
        """The first stop signal received while held (by this entry or the outer one it joined), or None."""
        return self._outer.signum if self._outer is not None else self._signum

    def stop_signal(self, exc: SystemExit) -> int | None:
        """The signal that ``exc`` is this stop's end of (a :class:`Stopped`; Lightning's ``SIGTERMException``;
        its ``sys.exit(1)`` after a second Ctrl-C, or any exit once a stop signal came), else None: re-raise it."""
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if isinstance(exc, Stopped):
            return exc.signum
        if isinstance(exc, SIGTERMException) or self.signum is not None:
            return self.signum or signal.SIGTERM
        return None

    def __enter__(self) -> SignalStop:
        current = signal.getsignal(signal.SIGTERM)
        outer = getattr(current, "__self__", None)
        if isinstance(outer, SignalStop):  # held by an outer call (a staged run's): share its record
            self._outer = outer
            return self
        if threading.current_thread() is not threading.main_thread():
            return self  # signals are the main thread's
        self._previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
        for s in STOP_SIGNALS:
            signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._pid:  # a forked DataLoader worker (SLURM and a terminal's Ctrl-C signal the whole
            return                    # group): it keeps serving until the main process stops it, as under Lightning
        first = self._signum is None
        if first:
            self._signum = signum
        lightning = signal.getsignal(signal.SIGTERM)
        if lightning == self._handle or not callable(lightning):  # outside a Trainer call
            raise Stopped(signum)
        if signum == signal.SIGINT:
            if not first:
                raise KeyboardInterrupt  # a second Ctrl-C: stop now (nothing more is saved)
            lightning(signal.SIGTERM, frame)  # Lightning's clean stop at the next batch boundary
        # SIGTERM: Lightning's handler called us after flagging the trainer; nothing more to do


def raise_if_signalled(trainer: L.Trainer) -> None:
    """Lightning checks its SIGTERM flag between batches only: a signal during the last batch's hooks or the
    evaluation at the end of a validation leaves the flag set and the call returning normally."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    if trainer.received_sigterm:
        raise SIGTERMException
