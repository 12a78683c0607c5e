# laurelin.cli — the `laurelin` command line, built from the Config fields.
#
# Every Daphne flag is accepted with Daphne's spelling and default (see docs/daphne.md). Values
# are layered: defaults < the TOML file of --config (or LAURELIN_CONFIG_FILE) < the environment
# (LAURELIN_*, WEB_CONCURRENCY) < the command line. Usage errors, a bad config file included,
# exit 2 through argparse; --print-config shows the result, with where each value came from, as
# TOML that --config reads back. Everything after that is the supervisor's job.
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from laurelin import __version__
from laurelin.config import (
    COMMAND_LINE_ONLY,
    GROUPS,
    WEB_CONCURRENCY,
    Config,
    check_combination,
    convert,
    env_name,
    env_usage,
    from_environ,
    option_fields,
    option_key,
    optional_float,
    optional_int,
    read_config_file,
)

# Where a value came from, as --print-config shows it.
Sources = dict[str, str]


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
        description="laurelin: an ASGI server for HTTP/1.1, HTTP/2 and WebSocket.\n"
        "Daphne's command line works unchanged.",
        epilog="Every option can also be set with the environment variable shown in its help,\n"
        "e.g. LAURELIN_TIMEOUT_KEEP_ALIVE=10 (repeatable options: comma-separated values;\n"
        "flags: true/false), or in a TOML file given with --config (keys are the long\n"
        'option names: workers = 4, ssl-certfile = "cert.pem"). The command line wins\n'
        "over the environment, which wins over the file. Reference: docs/cli.md.",
        argument_default=argparse.SUPPRESS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"laurelin {__version__}")
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    for f in option_fields():
        meta = f.metadata
        group = groups[meta["group"]]
        help_text = meta["help"]
        if meta["env"]:
            help_text += f" [env {env_usage(f)}]"
        help_text = help_text.replace("%", "%%")
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


def resolve_config(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Config, Sources]:
    """The Config a command line gives (with the environment and the config file) and, per
    field, where its value came from: "default", "file PATH", "env NAME" or "cli".

    Exits 2 with a usage error for anything invalid.
    """
    environ = os.environ if environ is None else environ
    parser = build_parser()
    cli_values: dict[str, Any] = {
        name: tuple(value) if isinstance(value, list) else value
        for name, value in vars(parser.parse_args(argv)).items()
    }
    try:
        env_values = from_environ(environ)
    except ValueError as exc:
        parser.error(str(exc))
    path: str | None = cli_values.get("config_file") or env_values.get("config_file")
    file_values: dict[str, Any] = {}
    if path:
        try:
            file_values = read_config_file(path)
        except ValueError as exc:
            parser.error(str(exc))
    values: dict[str, Any] = {}
    sources: Sources = {f.name: "default" for f in option_fields()}
    # WEB_CONCURRENCY is the platform's hint (Heroku, Render set it for every app), not the
    # user's choice: it sits just above the defaults, below the config file.
    if "workers" in env_values and env_name("workers") not in environ:
        values["workers"] = env_values.pop("workers")
        sources["workers"] = f"env {WEB_CONCURRENCY}"
    for name, value in file_values.items():
        values[name] = value
        sources[name] = f"file {path}"
    for name, value in env_values.items():
        values[name] = value
        sources[name] = f"env {env_name(name)}"
    for name, value in cli_values.items():
        values[name] = value
        sources[name] = "cli"
    if values.get("reload") and sources["workers"] == f"env {WEB_CONCURRENCY}":
        # --reload runs one worker; an ambient WEB_CONCURRENCY must not make it a usage error.
        print(f"laurelin: {WEB_CONCURRENCY} ignored: --reload runs one worker", file=sys.stderr)
        values.pop("workers")
        sources["workers"] = "default"
    _check(parser, values)
    return Config(**values), sources


def _check(parser: argparse.ArgumentParser, values: dict[str, Any]) -> None:
    """Rules across options, whichever layer gave them."""
    if not values.get("app") and not values.get("print_config"):
        parser.error("the ASGI application is required (module.path:attribute)")
    try:
        check_combination(values)
    except ValueError as exc:
        parser.error(str(exc))


def parse_config(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Turn a command line (the environment, the config file) into a Config, or exit 2."""
    return resolve_config(argv, environ)[0]


# -- --print-config -------------------------------------------------------------------------------

# Column the source comments of --print-config line up at.
_COMMENT_COLUMN = 48
# Options whose value --print-config does not show (its output ends up in logs and tickets).
_SECRET = frozenset({"ssl_keyfile_password"})


def print_key(f: dataclasses.Field[Any]) -> str:
    """The key --print-config writes for field `f`: its first long flag (dashed), else its name."""
    for flag in f.metadata["flags"]:
        if flag.startswith("--"):
            return option_key(flag[2:])
    return option_key(f.name)


def toml_string(text: str) -> str:
    """`text` as a TOML basic string (JSON's escapes are TOML's, but for DEL)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(f: dataclasses.Field[Any], value: Any) -> str | None:
    """`value` of field `f` as TOML, or None when TOML cannot say it (an unset option)."""
    if f.metadata["kind"] == "negate":
        value = not value
    if value is None:
        # The options where "no limit" is a value of their own (0 or -1 on the command line).
        parse = f.metadata["parse"]
        if parse is optional_int:
            return "0"
        if parse is optional_float:
            return "-1"
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(toml_string(item) for item in value) + "]"
    return toml_string(str(value))


def render_config(config: Config, sources: Sources) -> str:
    """What --print-config prints: every option's value and source, as TOML."""
    lines = [
        "# laurelin --print-config: the options in effect, each followed by where its value came",
        "# from (default, file, env or cli). This is TOML that `laurelin --config FILE` reads",
        "# back; an option that is not set is commented out.",
    ]
    fields = option_fields()
    for group in GROUPS:
        members = [f for f in fields if f.metadata["group"] == group and f.name != "print_config"]
        if not members:
            continue
        lines += ["", f"# {group}"]
        for f in members:
            value = getattr(config, f.name)
            shown = toml_value(f, value)
            source = sources.get(f.name, "default")
            if value is None and shown is not None:
                source += " (no limit)"
            if shown is None:
                line, source = f"# {print_key(f)} =", source + ": not set"
            elif f.name in _SECRET:
                line, source = f"# {print_key(f)} = ...", source + ": set, not shown"
            elif f.name in COMMAND_LINE_ONLY:
                line = f"# {print_key(f)} = {shown}"  # a config file cannot set it
            else:
                line = f"{print_key(f)} = {shown}"
            lines.append(f"{line.ljust(_COMMENT_COLUMN - 1)} # {source}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the `laurelin` command."""
    config, sources = resolve_config(argv)
    if config.print_config:
        sys.stdout.write(render_config(config, sources))
        sys.exit(0)
    from laurelin.supervisor import run_from_config

    sys.exit(run_from_config(config))
