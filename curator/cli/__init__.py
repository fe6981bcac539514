"""The ``curator`` command: a group whose subcommands are imported only when run.

Each subcommand lives in its own module, so ``curator plugins`` or
``curator --help`` never pays for torch or openai. Bad input surfaces as a
:class:`curator.CuratorError` and becomes one line on stderr and exit code 2.
The libraries' own chatter (transformers' loading bars, their deprecation
warnings) stays off the screen unless ``CURATOR_VERBOSE=1``. What the system
refuses (a full disk, a read-only folder) is one line and exit code 2 as
well, naming the file; ``CURATOR_VERBOSE=1`` shows its traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import warnings

import click

from curator import __version__
from curator.errors import CuratorError

COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("curator.cli.generate", "generate"),
    "build": ("curator.cli.build", "build"),
    "train": ("curator.cli.train", "train"),
    "eval": ("curator.cli.evaluate", "evaluate"),
    "compare": ("curator.cli.compare", "compare"),
    "export": ("curator.cli.export", "export"),
    "plugins": ("curator.cli.plugins", "plugins"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, (module, _) in COMMANDS.items() if importlib.util.find_spec(module)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attr = COMMANDS[cmd_name]
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rationale-curator")
def cli() -> None:
    """Curate chain-of-thought rationales: generate, filter, train, evaluate, compare."""


def verbose() -> bool:
    return os.environ.get("CURATOR_VERBOSE", "") not in ("", "0")


def describe_os_error(exc: OSError) -> str:
    """``FILE: reason`` on one line."""
    from curator.outputs import reason

    return f"{exc.filename}: {reason(exc)}" if exc.filename is not None else reason(exc)


def quiet_libraries() -> None:
    """Hide what the libraries say about themselves, unless ``CURATOR_VERBOSE=1`` asks for it.

    Loading bars and deprecation notices (``is_gradient_checkpointing`` ...)
    describe transformers, PEFT and the hub, not the user's run; they are
    switched off before those libraries are imported. Settings the user made
    in the environment are kept.
    """
    if verbose():
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' bars follow the hub's switch
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    # Already imported (``main`` called in a process that loaded them: a notebook, a test): the
    # switches above were read at their import, so the same settings are made through their APIs.
    hub_utils = sys.modules.get("huggingface_hub.utils")
    transformers_logging = sys.modules.get("transformers.utils.logging")
    if os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1":
        if hub_utils is not None:
            hub_utils.disable_progress_bars()
        if transformers_logging is not None:
            transformers_logging.disable_progress_bar()
    if transformers_logging is not None and os.environ["TRANSFORMERS_VERBOSITY"] == "error":
        transformers_logging.set_verbosity_error()


def main(argv: list[str] | None = None) -> None:
    """Entry point: exit 0 on success, 1 for recorded failures, 2 for bad input."""
    quiet_libraries()
    try:
        code = cli.main(args=argv, prog_name="curator", standalone_mode=False)
    except CuratorError as exc:
        click.echo(f"curator: error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("curator: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.UsageError as exc:  # one line, like every other bad input
        command = exc.ctx.command_path if exc.ctx is not None else "curator"
        click.echo(f"curator: error: {exc.format_message()} (see '{command} --help')", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except OSError as exc:
        if verbose():
            raise
        click.echo(f"curator: error: {describe_os_error(exc)}", err=True)
        sys.exit(2)
    if isinstance(code, int) and code:
        sys.exit(code)
