"""The process boundary of the ``freezeframe`` command: how every way a run can end becomes an exit code and
at most one line on stderr."""

from __future__ import annotations

import difflib
import os
import sys

import click
import typer

from freezeframe.errors import FreezeframeError
from freezeframe.interrupt import exit_status, stop_signals, stopped_by


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


# typer 0.2x parses with its own copy of click, whose exceptions are not click's: catch both kinds
_USAGE_ERRORS = (click.ClickException, getattr(getattr(typer, "exceptions", None), "TyperException", click.ClickException))
_EXITS = (click.exceptions.Exit, typer.Exit)
_ABORTS = (click.exceptions.Abort, typer.Abort)


def _suggest_by_name(err: Exception) -> None:
    """Suggest options for an unknown one by their names alone: click compares them with their leading
    dashes, which every option shares, so that `--bogus` was offered `--out`."""
    ctx = getattr(err, "ctx", None)
    name = getattr(err, "option_name", None)
    if type(err).__name__ != "NoSuchOption" or ctx is None or not name or not name.startswith("--"):
        return
    options = {option.lstrip("-"): option for param in ctx.command.get_params(ctx)
               for option in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())) if option.startswith("--")}
    err.possibilities = [options[match] for match in difflib.get_close_matches(name.lstrip("-"), options)]


def _dash_text_hint(err: Exception) -> str:
    """For ``predict "-great camera"``: a text that starts with a dash reads as short options."""
    ctx, name = getattr(err, "ctx", None), getattr(err, "option_name", None) or ""
    if type(err).__name__ != "NoSuchOption" or ctx is None or ctx.command.name != "predict" or name.startswith("--"):
        return ""
    return "; a text that starts with '-' goes after '--', e.g. predict --model M -- '-great camera'"


def run_command(command: click.Command, argv: list[str] | None = None) -> None:
    """Run ``command`` (the ``freezeframe`` group) on ``argv`` and exit: user errors become one line on stderr and
    exit code 2, never a traceback; Ctrl-C and SIGTERM stop it at a safe point, with one line and exit code 130 or
    143; anything else is one line naming an internal error (``FREEZEFRAME_DEBUG=1`` shows the traceback)."""
    with stop_signals():
        _run(command, argv)


def _run(command: click.Command, argv: list[str] | None) -> None:
    try:
        code = command.main(args=argv, prog_name="freezeframe", standalone_mode=False)
    except _EXITS as done:
        sys.exit(done.exit_code)
    except _ABORTS:
        _interrupted()
    except _USAGE_ERRORS as err:
        if type(err).__name__ == "NoArgsIsHelpError":  # bare `freezeframe` or `freezeframe COMMAND`: the help
            print(err.format_message(), file=sys.stderr)
            sys.exit(2)
        _suggest_by_name(err)
        message = err.format_message() if hasattr(err, "format_message") else err
        print(f"freezeframe: error: {_one_line(message)}{_dash_text_hint(err)} (see --help)", file=sys.stderr)
        sys.exit(2)
    except FreezeframeError as err:
        stopped = err.exit_code == 130  # interrupted, not the user's mistake
        print(f"freezeframe: {'' if stopped else 'error: '}{_one_line(err)}", file=sys.stderr)
        sys.exit(exit_status() if stopped else err.exit_code)
    except ValueError as err:
        print(f"freezeframe: error: {_one_line(err)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        _interrupted()
    except Exception as err:
        if os.environ.get("FREEZEFRAME_DEBUG"):
            raise
        print(f"freezeframe: internal error: {type(err).__name__}: {_one_line(err)} (set FREEZEFRAME_DEBUG=1 for details)",
              file=sys.stderr)
        sys.exit(1)
    # without standalone mode, typer turns a Ctrl-C outside freezeframe's own handlers into a returned 130
    if isinstance(code, int) and code:
        if code == 130:
            _interrupted()
        sys.exit(code)


def _interrupted() -> None:
    print(f"freezeframe: {stopped_by()}", file=sys.stderr)
    sys.exit(exit_status())
