"""The ``recmodels`` command: a thin click layer over the library.

Each command lives in its own module and is imported only when invoked, so
``recmodels score`` never imports torch. Library errors (:class:`RecmodelsError`)
and OS errors become one line on stderr and a non-zero exit, never a traceback.
SIGTERM (what ``timeout``, cron and Kubernetes send) stops a command as Ctrl-C does, so the same
cleanup runs (no half-written output is left), then exits with status 143.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading

import click

from .. import __version__
from ..errors import RecmodelsError

# command name -> "module:attribute" (imported lazily)
COMMANDS = {
    "train": "recmodels.cli.train:train",
    "export": "recmodels.cli.export:export",
    "score": "recmodels.cli.score:score",
    "recommend": "recmodels.cli.recommend:recommend",
    "evaluate": "recmodels.cli.evaluate:evaluate",
    "info": "recmodels.cli.info:info",
    "tune": "recmodels.cli.tune:tune",
}


# what the `train` extra adds; the base install (scoring) works without them
TRAIN_EXTRA_MODULES = {"torch", "onnx", "sklearn", "matplotlib"}
# what the `tune` extra adds (recmodels tune)
TUNE_EXTRA_MODULES = {"optuna"}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be: every ``except BaseException`` cleanup runs."""


def _on_sigterm(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the cleanup short
    raise Terminated


def _handle_sigterm(ctx: click.Context) -> None:
    """Turn SIGTERM into :class:`Terminated` while a command runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    ctx.call_on_close(lambda: signal.signal(signal.SIGTERM, previous))


class LazyGroup(click.Group):
    """A group that imports each command's module only when that command is used."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Terminated:
            click.echo("Error: stopped by SIGTERM", err=True)
            ctx.exit(128 + signal.SIGTERM)
        except RecmodelsError as exc:
            raise click.ClickException(str(exc)) from None
        except ImportError as exc:
            missing = (exc.name or "").split(".")[0]
            if missing in TUNE_EXTRA_MODULES:
                raise click.ClickException(
                    f"this command needs {missing}, which is not installed; "
                    "install the tuning extra: pip install 'recmodels[tune]'"
                ) from None
            if missing in TRAIN_EXTRA_MODULES:
                raise click.ClickException(
                    f"this command needs {missing}, which the base install leaves out; "
                    "install the training extra: pip install 'recmodels[train]'"
                ) from None
            raise
        except MemoryError:
            raise click.ClickException("out of memory; use a smaller --batch-size") from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="recmodels")
@click.pass_context
def cli(ctx):
    """Rating-prediction recommenders: train (PyTorch), export (ONNX), score (onnxruntime).

    \b
    Typical flow:
      recmodels train --data ratings.csv --model neumf --out runs/neumf
      recmodels export runs/neumf --format onnx --out bundles/neumf
      recmodels score bundles/neumf pairs.parquet scores.parquet
    """
    _handle_sigterm(ctx)


def main(argv=None):
    """Console-script entry point."""
    return cli.main(args=argv, prog_name="recmodels")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
