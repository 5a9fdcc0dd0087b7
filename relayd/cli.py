"""Read relayd's options and run the daemon until SIGTERM or SIGINT; SIGHUP reloads the policy.

Every option can be given three ways; the first found wins:
1. the command line: --max-message-size 20000000
2. the environment: RELAYD_MAX_MESSAGE_SIZE=20000000 (lists comma-separated: RELAYD_LISTEN=127.0.0.1:25,[::1]:25;
   booleans 1/0, true/false, yes/no, on/off)
3. a TOML config file named by --config or RELAYD_CONFIG: max-message-size = 20000000 (lists as arrays)
and otherwise the default shown by --help.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import ssl
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import uvloop

from relayd import __version__, logs
from relayd.daemon import Daemon
from relayd.dashboard import DashboardError
from relayd.logs import kv
from relayd.privileges import PrivilegeError
from relayd.settings import Settings

log = logging.getLogger("relayd")

ENV_PREFIX = "RELAYD_"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_METAVARS = {int: "N", float: "SECONDS", str: "TEXT"}


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser, one option per Settings field, with the defaults in the help."""
    parser = argparse.ArgumentParser(
        prog="python -m relayd",
        description="Enforce the relayadmin policy snapshot as an SMTP relay.",
        epilog=__doc__.partition("\n\n")[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--version", action="version", version=f"relayd {__version__}")
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML file of options (keys as below)")
    for item in fields(Settings):
        kind, flag = item.metadata["kind"], f"--{item.name.replace('_', '-')}"
        metavar = item.metadata["metavar"] or _METAVARS.get(kind)
        default = item.default_factory() if callable(item.default_factory) else item.default
        help_text = f"{item.metadata['help']} (default: {default})"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        elif kind is list:
            parser.add_argument(flag, action="append", metavar=metavar, help=help_text)
        else:
            parser.add_argument(flag, type=kind, metavar=metavar, help=help_text)
    return parser


def load_settings(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Settings:
    """Merge defaults, config file, environment and command line into Settings; exit with a message if invalid."""
    parser = build_parser()
    arguments = vars(parser.parse_args(argv))
    values: dict[str, Any] = {}
    config_path = arguments.pop("config", None) or environ.get(f"{ENV_PREFIX}CONFIG")
    try:
        if config_path:
            values.update(_from_config(Path(config_path)))
        values.update(_from_environment(environ))
        values.update(arguments)
        return Settings(**values)
    except (OSError, ValueError, TypeError) as exc:
        parser.error(str(exc))


def _from_config(path: Path) -> dict[str, Any]:
    with path.open("rb") as config_file:
        document = tomllib.load(config_file)
    kinds = {item.name: item.metadata["kind"] for item in fields(Settings)}
    values = {}
    for key, value in document.items():
        name = key.replace("-", "_")
        if name not in kinds:
            raise ValueError(f"{path}: unknown option {key!r}")
        values[name] = _typed(kinds[name], value, f"{path}: {key}")
    return values


def _typed(kind: type, value: Any, where: str) -> Any:
    """Check and convert a TOML value to the option's type."""
    if kind is list and isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    if kind is bool and isinstance(value, bool):
        return value
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind in (str, Path) and isinstance(value, str):
        return kind(value)
    raise ValueError(f"{where}: expected {kind.__name__}, got {value!r}")


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in fields(Settings):
        name = f"{ENV_PREFIX}{item.name.upper()}"
        if name not in environ:
            continue
        text, kind = environ[name].strip(), item.metadata["kind"]
        if kind is list:
            values[item.name] = [part.strip() for part in text.split(",") if part.strip()]
        elif kind is bool:
            if text.lower() not in (*_TRUE, *_FALSE):
                raise ValueError(f"{name}: expected one of {', '.join(_TRUE + _FALSE)}")
            values[item.name] = text.lower() in _TRUE
        else:
            try:
                values[item.name] = kind(text)
            except ValueError:
                raise ValueError(f"{name}: {text!r} is not a valid {kind.__name__}") from None
    return values


def main(argv: Sequence[str] | None = None) -> int:
    """Run relayd; return the process exit status."""
    settings = load_settings(argv, os.environ)
    logs.configure(settings.log_level)
    try:
        uvloop.run(_serve(settings))
    except (OSError, ssl.SSLError, DashboardError, PrivilegeError) as exc:
        log.error(kv(event="start_failed", error=exc))
        return 1
    return 0


async def _serve(settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    daemon = Daemon(settings)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: _reload(daemon))
    try:
        await daemon.start()
        await stop.wait()
    finally:
        await daemon.stop()


def _reload(daemon: Daemon) -> None:
    daemon.reload_policy()
