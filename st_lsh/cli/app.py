"""The ``st-lsh`` entry point: the parser, the error contract, and the helpers every subcommand shares.

Error contract: every bad input (a parse error, or a FileNotFoundError / ValueError / PermissionError ... raised
by the checks that run before the model loads) ends with exactly one line ``st-lsh <command>: error: <message>``
on stderr and exit status 2; ``--debug`` re-raises instead, for the traceback. Log records (and Python
warnings) of the checking phase are held back by :class:`DeferredLog` and printed once the inputs passed
(:func:`inputs_checked`), so a rejected input prints nothing else. Ctrl-C (or SIGTERM) ends with
``st-lsh <command>: interrupted`` and status 130, after the atomic writers removed their temporary files.

Example::

    >>> from st_lsh.cli.app import main
    >>> main(["--version"])   # doctest: +ELLIPSIS
    st-lsh ...
    0
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

from . import bench, evaluate, mine, train

USER_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, KeyError)
COMMANDS = (mine, train, evaluate, bench)

DESCRIPTION = """LSH hard-negative mining for sentence-transformers.

    st-lsh train                                   # fine-tune all-MiniLM-L6-v2 on the bundled SciFact
    st-lsh mine --data pairs.jsonl --output negatives.parquet --num-negatives 3
    st-lsh evaluate --data ../shared/data/msmarco --split dl19
    st-lsh bench --sizes 10000 100000

Bad input (a missing or malformed file, an unknown column or split, an invalid parameter, an existing or
unwritable --output) ends with a one-line "st-lsh <command>: error: ..." and exit status 2, before the model
loads; --debug shows the traceback instead. Outputs are written atomically and never overwritten without
--overwrite.
"""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block) on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = Parser(prog="st-lsh", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"st-lsh {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="{mine,train,evaluate,bench}",
                                       parser_class=Parser)
    for command in COMMANDS:
        command.add(subparsers)
    return parser


class DeferredLog(logging.Handler):
    """Holds log records back until :meth:`print_held` prints them (and every later one) to stderr."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []
        self.target: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.target is None:
            self.records.append(record)
        else:
            self.target.handle(record)

    def print_held(self) -> None:
        if self.target is None:
            self.target = logging.StreamHandler()
            self.target.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                                       datefmt="%H:%M:%S"))
            for record in self.records:
                self.target.handle(record)
            self.records.clear()


_deferred: list[DeferredLog] = []  # the handler of the running command (a stack: main may be re-entered in tests)


def inputs_checked() -> None:
    """Every input passed its checks: print the held-back log records, and log directly from now on."""
    if _deferred:
        _deferred[-1].print_held()


@contextmanager
def _library_progress_bars(enabled: bool) -> Iterator[None]:
    """``--quiet`` hides the progress bars of datasets and transformers (reading, loading and saving)."""
    if enabled:
        yield
        return
    from datasets import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as transformers_logging

    datasets_off, transformers_on = are_progress_bars_disabled(), transformers_logging.is_progress_bar_enabled()
    disable_progress_bars()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if not datasets_off:
            enable_progress_bars()
        if transformers_on:
            transformers_logging.enable_progress_bar()


@contextmanager
def _command_logging(quiet: bool) -> Iterator[DeferredLog]:
    """INFO (``--quiet``: WARNING) records and Python warnings to stderr through a :class:`DeferredLog`."""
    root = logging.getLogger()
    handler = DeferredLog(logging.WARNING if quiet else logging.INFO)
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(min(old_level or handler.level, handler.level))
    logging.captureWarnings(True)
    _deferred.append(handler)
    try:
        yield handler
    finally:
        _deferred.remove(handler)
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(old_level)


def data_path(args: argparse.Namespace) -> str:
    """``--data``, or the bundled BEIR SciFact."""
    if args.data is not None:
        return args.data
    from ..resources import scifact_path

    return str(scifact_path())


def load_model_for(args: argparse.Namespace):
    """The ``--model`` on ``--device`` (:func:`st_lsh.models.load_model`), loaded once every other input is
    checked; the model is the last input, so the held-back log lines are printed once it loaded."""
    from ..models import load_model

    model = load_model(args.model, device=args.device)
    inputs_checked()
    return model


def _one_line(exc: BaseException) -> str:
    """The first non-blank line of an error's message (a KeyError's without its quotes)."""
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _interrupt(signum: int, frame) -> NoReturn:  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``st-lsh`` command; returns the exit status (0 ok, 1 failure, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and argparse errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        previous = signal.signal(signal.SIGTERM, _interrupt)  # a killed run cleans its temporary files up
    except ValueError:  # not the main thread
        previous = None
    try:
        with _command_logging(args.quiet) as log, _library_progress_bars(not args.quiet):
            try:
                status = run(args)
            except BaseException:
                if args.debug:  # the checking phase's log lines come before the traceback
                    log.print_held()
                raise
            log.print_held()
            return status
    except USER_ERRORS as exc:
        if args.debug:
            raise
        print(f"st-lsh {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"st-lsh {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
