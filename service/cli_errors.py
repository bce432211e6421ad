"""How the command line reports a failure: one line on stderr, a traceback only on request.

A user's mistake (:class:`pipelines.errors.InputError`: a config key, a data file, a table, a
model URI) prints ``error: <what and where>`` and exits 2. A failure of the environment (a file
system or MLflow error) prints ``error: ...`` and exits 1. Anything else is a bug in nearcast and
prints ``internal error: <type>: <message> (run with --verbose for the traceback)``, exit 1.
``nearcast --verbose <command>`` lets every exception through with its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
import typer

from nearcast.pipelines.errors import InputError, first_line

__all__ = ["EXIT_FAILED", "EXIT_INPUT", "is_verbose", "quiet_tensorflow", "reported",
           "set_verbose"]

EXIT_INPUT = 2
"""Exit code of a user's mistake (as for a command-line usage error)."""
EXIT_FAILED = 1
"""Exit code of any other failure."""

_state = {"verbose": False}


def set_verbose(verbose: bool) -> None:
    """Show tracebacks (``--verbose``) instead of one-line errors."""
    _state["verbose"] = verbose


def is_verbose() -> bool:
    """Whether ``nearcast --verbose`` was given."""
    return _state["verbose"]


@contextmanager
def reported() -> Iterator[None]:
    """Turn an exception raised by the block into one line on stderr and an exit code.

    Raises:
        typer.Exit: with :data:`EXIT_INPUT` or :data:`EXIT_FAILED` (the error is printed).
    """
    try:
        yield
    except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort,
            typer.Exit, typer.Abort, typer.TyperException):
        raise  # typer's own exits and usage errors (typer vendors its own click)
    except InputError as exc:
        if _state["verbose"]:
            raise
        typer.echo(f"error: {exc}", err=True)  # DataValidationError: several problems listed
        raise typer.Exit(EXIT_INPUT) from None
    except Exception as exc:
        if _state["verbose"]:
            raise
        if _is_environment(exc):
            typer.echo(f"error: {first_line(exc)}", err=True)
        else:
            typer.echo(f"internal error: {type(exc).__name__}: {first_line(exc)} "
                       "(run with --verbose for the traceback)", err=True)
        raise typer.Exit(EXIT_FAILED) from None


def _is_environment(exc: Exception) -> bool:
    """An OSError, or MLflow's error (a store or tracking server problem, an unknown model)."""
    if isinstance(exc, OSError):
        return True
    return any(cls.__name__ == "MlflowException" and cls.__module__ == "mlflow.exceptions"
               for cls in type(exc).__mro__)  # without importing mlflow


def quiet_tensorflow() -> None:
    """Keep TensorFlow's start-up chatter off the screen, unless ``nearcast --verbose``."""
    if not is_verbose():
        from nearcast.service.quiet import quiet_tensorflow as quiet

        quiet()
