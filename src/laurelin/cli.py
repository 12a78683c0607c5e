# laurelin.cli — the `laurelin` command line, built from the Config fields.
#
# Every Daphne flag is accepted with Daphne's spelling and default (see docs/daphne.md). Values
# are layered: defaults < LAURELIN_* environment < command line. Usage errors exit 2 through
# argparse; everything after parsing is the supervisor's job.
from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from laurelin import __version__
from laurelin.config import GROUPS, Config, convert, env_usage, from_environ, option_fields


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"laurelin: error: {message}\n")


def _argtype(f: dataclasses.Field[Any]) -> Any:
    def parse(text: str) -> Any:
        try:
            return convert(f, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = f.name  # argparse names the type in its error messages
    return parse


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one argument per Config field, grouped as in `--help`."""
    parser = _Parser(
        prog="laurelin",
        description="laurelin: an ASGI server for HTTP/1.1, HTTP/2 and WebSocket. "
        "Daphne's command line works unchanged.",
        epilog="Every option can also be set with the environment variable shown in its help,\n"
        "e.g. LAURELIN_TIMEOUT_KEEP_ALIVE=10 (repeatable options: comma-separated values;\n"
        "flags: true/false). The command line wins. Reference: docs/cli.md.",
        argument_default=argparse.SUPPRESS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"laurelin {__version__}")
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    for f in option_fields():
        meta = f.metadata
        group = groups[meta["group"]]
        help_text = f"{meta['help']} [env {env_usage(f)}]".replace("%", "%%")
        if not meta["flags"]:
            group.add_argument(f.name, nargs="?", help=help_text, metavar=meta["metavar"])
            continue
        kwargs: dict[str, Any] = {"dest": f.name, "help": help_text}
        kind = meta["kind"]
        if kind == "flag":
            kwargs["action"] = "store_true"
        elif kind == "negate":
            kwargs["action"] = "store_false"
        else:
            kwargs["type"] = _argtype(f)
            if kind == "append":
                kwargs["action"] = "append"
            if meta["metavar"]:
                kwargs["metavar"] = meta["metavar"]
            elif meta["choices"]:
                kwargs["metavar"] = "{" + ",".join(meta["choices"]) + "}"
            if f.default not in (None, (), "") and kind != "append":
                # argparse %-formats help text: a default such as --log-fmt's needs escaping.
                kwargs["help"] += f" (default: {f.default})".replace("%", "%%")
        group.add_argument(*meta["flags"], **kwargs)
    return parser


def parse_config(
    argv: Sequence[str] | None = None, environ: dict[str, str] | None = None
) -> Config:
    """Turn a command line (and the environment) into a Config, or exit 2 with a usage error."""
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    try:
        values = from_environ(environ)
    except ValueError as exc:
        parser.error(str(exc))
    for name, value in args.items():
        values[name] = tuple(value) if isinstance(value, list) else value
    if not values.get("app"):
        parser.error("the ASGI application is required (module.path:attribute)")
    if not values.get("proxy_headers"):
        for name in ("proxy_headers_host", "proxy_headers_port"):
            if values.get(name):
                flag = "--" + name.replace("_", "-")
                parser.error(f"{flag} needs --proxy-headers")
    if values.get("ssl_keyfile") and not values.get("ssl_certfile"):
        parser.error("--ssl-keyfile needs --ssl-certfile")
    return Config(**values)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the `laurelin` command."""
    from laurelin.supervisor import run_from_config

    config = parse_config(argv)
    sys.exit(run_from_config(config))
