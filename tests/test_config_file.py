# --config FILE (TOML), its precedence (CLI > env > file > defaults), WEB_CONCURRENCY, and
# --print-config. Every option is walked from the Config fields, so an option added later is
# covered without editing this file; every mistake a user can make in a file is a usage error
# (exit 2, one line naming the file and the key).
from __future__ import annotations

import dataclasses
import os
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli_process import APPS, laurelin_argv
from conftest import ServerProcess, free_port
from laurelin.cli import render_config, resolve_config
from laurelin.config import (
    COMMAND_LINE_ONLY,
    Config,
    env_name,
    option_fields,
    option_key,
    option_keys,
    typed_value,
)

APP = "cli_app:application"
# Values tried, in order, until one is valid for an option and differs from its default.
CANDIDATES: tuple[Any, ...] = (
    *(7, 3, 2, 1, 0, 2.5, 0.25, True, False),
    *("X-Sample:1", "sample", "other"),
    *(["X-Sample:1"], ["X-Other:2", "X-Third:3"]),
)


def file_fields() -> list[dataclasses.Field[Any]]:
    return [f for f in option_fields() if f.name not in COMMAND_LINE_ONLY]


def boolean_fields() -> list[dataclasses.Field[Any]]:
    return [f for f in file_fields() if isinstance(f.default, bool)]


def other_fields() -> list[dataclasses.Field[Any]]:
    return [f for f in file_fields() if not isinstance(f.default, bool)]


def samples(f: dataclasses.Field[Any], count: int) -> list[Any]:
    """`count` data values valid for `f`, with distinct effects other than the default."""
    candidates = [*(f.metadata["choices"] or ()), *CANDIDATES]
    found: list[Any] = []
    seen: list[Any] = [f.default]
    for raw in candidates:
        try:
            value = typed_value(f, raw)
        except ValueError:
            continue
        if value not in seen:
            seen.append(value)
            found.append(raw)
        if len(found) == count:
            return found
    raise AssertionError(f"no {count} sample values for {f.name}: add candidates")


def toml_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    return repr(value)


def write(tmp_path: Path, text: str, name: str = "laurelin.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def resolve(*argv: str, environ: dict[str, str] | None = None) -> tuple[Config, dict[str, str]]:
    """resolve_config with only the given environment (the machine's cannot leak in)."""
    return resolve_config(list(argv), environ or {})


def base_values(f: dataclasses.Field[Any]) -> str:
    """What the file needs besides `f` for the configuration to be valid."""
    if f.name in ("proxy_headers_host", "proxy_headers_port"):
        return "proxy-headers = true\n"
    if f.name == "ssl_keyfile":
        return 'ssl-certfile = "cert.pem"\n'
    return ""


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str, **environ: str) -> str:
    """The error line of a command line that must be a usage error (exit 2)."""
    with pytest.raises(SystemExit) as exit_info:
        resolve(*argv, environ=environ)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert last.startswith("laurelin: error: "), err
    return last


# -- every option from a file --------------------------------------------------------------------


@pytest.mark.parametrize("f", file_fields(), ids=lambda f: f.name)
def test_every_option_can_be_set_in_the_config_file(
    f: dataclasses.Field[Any], tmp_path: Path
) -> None:
    raw = samples(f, 1)[0]
    path = write(tmp_path, base_values(f) + f"{option_key(f.name)} = {toml_literal(raw)}\n")
    config, sources = resolve("--config", path, *_positional(f))
    assert getattr(config, f.name) == typed_value(f, raw) != f.default
    assert sources[f.name] == f"file {path}"


@pytest.mark.parametrize("f", other_fields(), ids=lambda f: f.name)
def test_environment_and_command_line_win_over_the_file(
    f: dataclasses.Field[Any], tmp_path: Path
) -> None:
    in_file, in_env = samples(f, 2)
    path = write(tmp_path, base_values(f) + f"{option_key(f.name)} = {toml_literal(in_file)}\n")
    environ = {env_name(f.name): _env_text(in_env)}
    if f.name in ("proxy_headers_host", "proxy_headers_port"):
        environ[env_name("proxy_headers")] = "true"
    config, sources = resolve("--config", path, *_positional(f), environ=environ)
    assert getattr(config, f.name) == typed_value(f, in_env)
    assert sources[f.name] == f"env {env_name(f.name)}"
    # The file's value again, from the command line: it beats the environment's.
    flags = f.metadata["flags"][-1:]
    values = in_file if isinstance(in_file, list) else [in_file]
    argv = [item for value in values for item in (*flags, _env_text(value))]
    config, sources = resolve("--config", path, *argv, *_positional(f), environ=environ)
    assert getattr(config, f.name) == typed_value(f, in_file)
    assert sources[f.name] == "cli"


def _env_text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def _positional(f: dataclasses.Field[Any]) -> list[str]:
    return [] if f.name == "app" else [APP]


@pytest.mark.parametrize("f", boolean_fields(), ids=lambda f: f.name)
def test_boolean_options_layer_like_the_others(f: dataclasses.Field[Any], tmp_path: Path) -> None:
    flipped = not f.default
    path = write(tmp_path, f"{option_key(f.name)} = {toml_literal(flipped)}\n")
    config, sources = resolve("--config", path, APP)
    assert (getattr(config, f.name), sources[f.name]) == (flipped, f"file {path}")
    environ = {env_name(f.name): str(f.default).lower()}
    config, sources = resolve("--config", path, APP, environ=environ)
    assert (getattr(config, f.name), sources[f.name]) == (f.default, f"env {env_name(f.name)}")
    # The command line says `flipped` again: a flag (store_true), a negating flag (store_false)
    # or a flag with a true/false value.
    flag = f.metadata["flags"][-1]
    argv = [flag] if f.metadata["kind"] in ("flag", "negate") else [flag, str(flipped).lower()]
    config, sources = resolve("--config", path, *argv, APP, environ=environ)
    assert (getattr(config, f.name), sources[f.name]) == (flipped, "cli")


@pytest.mark.parametrize(
    "key",
    [
        "ssl-certfile",  # a long flag without its dashes
        "ssl_certfile",  # with underscores
    ],
)
def test_keys_are_long_flag_names_with_dashes_or_underscores(key: str, tmp_path: Path) -> None:
    config, _ = resolve("--config", write(tmp_path, f'{key} = "cert.pem"\n'), APP)
    assert config.ssl_certfile == "cert.pem"


@pytest.mark.parametrize(
    ("text", "name", "expected"),
    [
        ('bind = "0.0.0.0"', "host", "0.0.0.0"),  # the flag of a field named otherwise
        ('host = "0.0.0.0"', "host", "0.0.0.0"),  # the field name (laurelin.run()'s)
        ('pid = "/run/app.pid"', "pid_file", "/run/app.pid"),
        ('pid_file = "/run/app.pid"', "pid_file", "/run/app.pid"),
        ('endpoint = ["tcp:8001", "unix:/tmp/s"]', "endpoints", ("tcp:8001", "unix:/tmp/s")),
        ('header = ["X-A:1"]', "headers", ("X-A:1",)),
        ("no-date-header = true", "date_header", False),  # a negating flag: true turns it off
        ("date_header = false", "date_header", False),
        ("websocket_timeout = 60", "websocket_timeout", 60.0),  # Daphne's spelling
        ("websocket-timeout = -1", "websocket_timeout", None),  # -1: no limit, as on the CLI
        ("limit-max-requests = 500", "max_requests", 500),  # Uvicorn's spelling
        ("limit-max-body-size = 0", "limit_max_body_size", None),
        ("graceful-timeout = 5", "graceful_timeout", 5.0),  # an integer for seconds
        ("http = 2", "http", "2"),  # a number where the choices are numbers
        ('http = "1"', "http", "1"),
        ('app = "cli_app:make_app"', "app", "cli_app:make_app"),
    ],
)
def test_file_key_spellings(text: str, name: str, expected: Any, tmp_path: Path) -> None:
    argv = [] if name == "app" else [APP]
    config, _ = resolve("--config", write(tmp_path, text + "\n"), *argv)
    assert getattr(config, name) == expected


def test_every_key_names_one_option() -> None:
    # A key that two fields claimed would make the file ambiguous.
    claimed: dict[str, str] = {}
    for f in option_fields():
        names = [option_key(f.name)] + [
            option_key(flag[2:]) for flag in f.metadata["flags"] if flag.startswith("--")
        ]
        for key in names:
            assert claimed.setdefault(key, f.name) == f.name, key
    assert set(claimed) == set(option_keys())


def test_the_application_may_come_from_the_file(tmp_path: Path) -> None:
    config, sources = resolve("--config", write(tmp_path, f'app = "{APP}"\n'))
    assert config.app == APP
    assert sources["app"].startswith("file ")
    config, sources = resolve("--config", write(tmp_path, f'app = "{APP}"\n'), "other:app")
    assert config.app == "other:app"


def test_a_list_from_the_command_line_replaces_the_files(tmp_path: Path) -> None:
    path = write(tmp_path, 'header = ["X-A:1", "X-B:2"]\n')
    config, _ = resolve("--config", path, "--header", "X-C:3", APP)
    assert config.headers == ("X-C:3",)


def test_an_empty_file_changes_nothing(tmp_path: Path) -> None:
    config, sources = resolve("--config", write(tmp_path, "# nothing yet\n"), APP)
    assert config == Config(app=APP, config_file=config.config_file)
    assert set(sources.values()) == {"default", "cli"}


# -- which file --------------------------------------------------------------------------------


def test_config_file_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "workers = 3\n")
    config, sources = resolve(APP, environ={"LAURELIN_CONFIG_FILE": path})
    assert config.workers == 3
    assert config.config_file == path
    assert sources["config_file"] == "env LAURELIN_CONFIG_FILE"


def test_config_on_the_command_line_wins_over_the_environment_one(tmp_path: Path) -> None:
    from_env = write(tmp_path, "workers = 3\n", "env.toml")
    from_cli = write(tmp_path, "workers = 5\n", "cli.toml")
    config, _ = resolve("--config", from_cli, APP, environ={"LAURELIN_CONFIG_FILE": from_env})
    assert config.workers == 5


def test_relative_path_is_read_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "workers = 6\n")
    monkeypatch.chdir(tmp_path)
    assert resolve("--config", "laurelin.toml", APP)[0].workers == 6


# -- WEB_CONCURRENCY ---------------------------------------------------------------------------


def test_web_concurrency_sets_the_workers() -> None:
    config, sources = resolve(APP, environ={"WEB_CONCURRENCY": "4"})
    assert config.workers == 4
    assert sources["workers"] == "env WEB_CONCURRENCY"


def test_laurelin_workers_and_the_command_line_win_over_web_concurrency() -> None:
    environ = {"WEB_CONCURRENCY": "4", "LAURELIN_WORKERS": "2"}
    config, sources = resolve(APP, environ=environ)
    assert (config.workers, sources["workers"]) == (2, "env LAURELIN_WORKERS")
    config, sources = resolve("-w", "3", APP, environ={"WEB_CONCURRENCY": "4"})
    assert (config.workers, sources["workers"]) == (3, "cli")


def test_the_file_wins_over_web_concurrency(tmp_path: Path) -> None:
    """WEB_CONCURRENCY is the platform's default (set for every app), not the user's choice."""
    path = write(tmp_path, "workers = 8\n")
    config, sources = resolve("--config", path, APP, environ={"WEB_CONCURRENCY": "2"})
    assert (config.workers, sources["workers"]) == (8, f"file {path}")


def test_reload_ignores_web_concurrency(capsys: pytest.CaptureFixture[str]) -> None:
    config, sources = resolve("--reload", APP, environ={"WEB_CONCURRENCY": "4"})
    assert (config.workers, config.reload, sources["workers"]) == (1, True, "default")
    assert "WEB_CONCURRENCY ignored: --reload runs one worker" in capsys.readouterr().err


def test_reload_with_explicit_workers_is_still_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = usage_error(capsys, "--reload", APP, LAURELIN_WORKERS="2")
    assert "--reload and --workers > 1 cannot be combined" in line


@pytest.mark.parametrize("text", ["four", "0", "-2", "2.5", ""])
def test_bad_web_concurrency_is_a_usage_error(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = usage_error(capsys, APP, WEB_CONCURRENCY=text)
    assert "WEB_CONCURRENCY" in line
    assert "number of worker processes" in line


def test_bad_web_concurrency_is_ignored_when_laurelin_workers_is_set() -> None:
    config, _ = resolve(APP, environ={"WEB_CONCURRENCY": "lots", "LAURELIN_WORKERS": "2"})
    assert config.workers == 2


# -- mistakes in the file ----------------------------------------------------------------------

FILE_ERRORS: list[tuple[str, str]] = [
    ("wokers = 4", "wokers: not a laurelin option (did you mean 'workers'?)"),
    ("zzz = 1", "zzz: not a laurelin option"),
    ("W = 4", "W: not a laurelin option"),  # keys are lower case, as the flags are
    ("[server]\nport = 8000", "server: not a laurelin option"),
    ('workers = "four"', "workers: expected an integer, got the string 'four'"),
    ("workers = 2.5", "workers: expected an integer, got 2.5"),
    ("workers = true", "workers: expected an integer, got true"),
    ("workers = 0", "workers: '0' must be 1 or more"),
    ('graceful-timeout = "soon"', "graceful-timeout: expected a number"),
    ("graceful-timeout = -1", "graceful-timeout: '-1' is not a number of seconds"),
    ("graceful-timeout = nan", "graceful-timeout: 'nan' is not a number of seconds"),
    ("port = 70000", "port: '70000' is not a TCP port (0-65535)"),
    ("proxy-headers = 1", "proxy-headers: expected true or false, got 1"),
    ('proxy-headers = "yes"', "proxy-headers: expected true or false"),
    ("pid = 3", "pid: expected a string, got 3"),
    ('lifespan = "sometimes"', "lifespan: 'sometimes' is not one of auto, on, off"),
    ("verbosity = 9", "verbosity: '9' is not one of 0, 1, 2, 3"),
    ('header = "X-A:1"', "header: expected a list of strings, got the string 'X-A:1'"),
    ("header = [1, 2]", "header: expected a list of strings, got a list"),
    ('header = ["no-colon"]', "header: 'no-colon': expected NAME:VALUE"),
    ('server-name = "a\\nX-Injected: 1"', "server-name: "),
    ('bind = ["0.0.0.0"]', "bind: expected a string, got a list"),
    ("bind = { host = 1 }", "bind: expected a string, got a table"),
    ("ssl-certfile = 1979-05-27", "ssl-certfile: expected a string, got a date"),
    ('config = "other.toml"', "config: can only be given on the command line"),
    ("print-config = true", "print-config: can only be given on the command line"),
    ('header = ["X-A:1"]\nheaders = ["X-B:2"]', "headers: the option is already set by header"),
    ('pid = "a"\npid_file = "b"', "pid_file: the option is already set by pid"),
    ("workers = ", "not valid TOML: "),
    ("workers = 4\nworkers = 5", "not valid TOML: "),
]


@pytest.mark.parametrize(("text", "message"), FILE_ERRORS)
def test_a_mistake_in_the_file_is_one_usage_error_naming_file_and_key(
    text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, text + "\n")
    line = usage_error(capsys, "--config", path, APP)
    assert line.startswith(f"laurelin: error: {path}: ")
    assert message in line


def test_a_rule_between_options_applies_to_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, 'proxy-headers-host = "X-Real-IP"\n')
    assert "--proxy-headers-host needs --proxy-headers" in usage_error(
        capsys, "--config", path, APP
    )
    # ... and is met by another layer.
    config, _ = resolve("--config", path, "--proxy-headers", APP)
    assert config.proxy_headers_host == "X-Real-IP"


def test_reload_with_workers_is_a_usage_error_whichever_layer_gives_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "reload = true\n")
    line = usage_error(capsys, "--config", path, "-w", "2", APP)
    assert line.endswith("--reload and --workers > 1 cannot be combined: reload runs one worker")
    line = usage_error(capsys, APP, LAURELIN_WORKERS="3", LAURELIN_RELOAD="true")
    assert "cannot be combined" in line
    assert resolve("--reload", "-w", "1", APP)[0].reload is True


def test_missing_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "absent.toml")
    line = usage_error(capsys, "--config", path, APP)
    assert (
        line == f"laurelin: error: {path}: cannot read the config file: No such file or directory"
    )


def test_missing_file_named_by_the_environment_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "absent.toml")
    line = usage_error(capsys, APP, LAURELIN_CONFIG_FILE=path)
    assert f"{path}: cannot read the config file" in line


def test_a_directory_is_not_a_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = usage_error(capsys, "--config", str(tmp_path), APP)
    assert f"{tmp_path}: cannot read the config file: Is a directory" in line


def test_a_file_that_is_not_utf8_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('server-name = "caf\xe9"\n'.encode("latin-1"))
    line = usage_error(capsys, "--config", str(path), APP)
    assert f"{path}: not valid TOML" in line


def test_bad_file_from_the_command_exits_2_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'workers = "four"\n')
    result = run_laurelin("--config", path, APP)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"laurelin: error: {path}: workers: expected an integer, got the string 'four'"
    )
    assert "Traceback" not in result.stderr


# -- --print-config ----------------------------------------------------------------------------


def run_laurelin(*args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAURELIN_")}
    env.pop("WEB_CONCURRENCY", None)
    return subprocess.run(
        laurelin_argv(*args),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=APPS,
        env={**env, **environ},
    )


def test_print_config_shows_every_value_and_its_source_and_exits_0(tmp_path: Path) -> None:
    path = write(tmp_path, "workers = 4\ngraceful-timeout = 12\n")
    result = run_laurelin(
        "--config", path, "-p", "9001", "--print-config", "no_such_module:app",
        LAURELIN_SERVER_NAME="edge", WEB_CONCURRENCY="2", LAURELIN_GRACEFUL_TIMEOUT="7",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # the app was not imported: it does not exist
    lines = result.stdout.splitlines()
    assert _line(lines, "port") == ("9001", "cli")
    assert _line(lines, "server-name") == ('"edge"', "env LAURELIN_SERVER_NAME")
    assert _line(lines, "workers") == ("4", f"file {path}")  # the file beats WEB_CONCURRENCY
    assert _line(lines, "graceful-timeout") == ("7.0", "env LAURELIN_GRACEFUL_TIMEOUT")
    assert _line(lines, "backlog") == ("2048", "default")
    assert _line(lines, "app") == ('"no_such_module:app"', "cli")
    assert _line(lines, "limit-concurrency") == ("0", "default (no limit)")
    assert f'# config = "{path}"' in result.stdout


def test_print_config_shows_the_file_as_the_source(tmp_path: Path) -> None:
    path = write(tmp_path, 'workers = 4\nheader = ["X-A:1", "X-B: two"]\nno-date-header = true\n')
    config, sources = resolve("--config", path, APP)
    lines = render_config(config, sources).splitlines()
    assert _line(lines, "workers") == ("4", f"file {path}")
    assert _line(lines, "header") == ('["X-A:1", "X-B: two"]', f"file {path}")
    assert _line(lines, "no-date-header") == ("true", f"file {path}")


def _line(lines: list[str], key: str) -> tuple[str, str]:
    """(value, source) of `key` in --print-config output."""
    for line in lines:
        if line.startswith(f"{key} = "):
            setting, _, source = line.partition(" # ")
            return setting.split(" = ", 1)[1].strip(), source
    raise AssertionError(f"no line for {key!r}")


def test_print_config_lists_every_option_once() -> None:
    config, sources = resolve(APP)
    text = render_config(config, sources)
    for f in option_fields():
        if f.name == "print_config":
            continue
        flags = [flag[2:] for flag in f.metadata["flags"] if flag.startswith("--")]
        key = option_key(flags[0]) if flags else option_key(f.name)
        matching = [
            line for line in text.splitlines() if line.startswith((f"{key} = ", f"# {key} ="))
        ]
        assert len(matching) == 1, key


def test_print_config_output_is_toml_that_config_reads_back(tmp_path: Path) -> None:
    argv = [
        "-b", "::1", "-p", "9002", "--header", 'X-Quote:say "hi"', "--header", "X-B:\\path",
        "--websocket-timeout", "-1", "--limit-max-body-size", "0", "--http-timeout", "2.5",
        "--log-fmt", "%(levelname)s\t%(message)s", "--no-date-header", "--lifespan", "off",
        "-s", "caf\xe9 \x7f", "--ssl-certfile", "cert.pem", "--max-requests", "100", APP,
    ]  # fmt: skip
    config, sources = resolve(*argv)
    printed = render_config(config, sources)
    parsed = tomllib.loads(printed)  # valid TOML
    assert parsed["port"] == 9002
    path = write(tmp_path, printed, "printed.toml")
    again, again_sources = resolve("--config", path)
    assert dataclasses.replace(again, config_file=None) == config
    del again_sources["config_file"]
    assert set(again_sources.values()) == {"default", f"file {path}"}


def test_print_config_is_stable() -> None:
    first = run_laurelin("--print-config", APP)
    second = run_laurelin("--print-config", APP)
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout


def test_print_config_needs_no_application() -> None:
    result = run_laurelin("--print-config")
    assert result.returncode == 0
    assert 'app = ""' in result.stdout


def test_print_config_does_not_show_the_key_password() -> None:
    config, sources = resolve("--ssl-certfile", "c.pem", "--ssl-keyfile-password", "hunter2", APP)
    text = render_config(config, sources)
    assert "hunter2" not in text
    assert "# ssl-keyfile-password = ..." in text


def test_print_config_still_reports_usage_errors(tmp_path: Path) -> None:
    result = run_laurelin("--print-config", "--config", write(tmp_path, "wokers = 1\n"), APP)
    assert result.returncode == 2
    assert "wokers: not a laurelin option" in result.stderr


def test_print_config_cannot_come_from_the_environment() -> None:
    assert resolve(APP, environ={"LAURELIN_PRINT_CONFIG": "true"})[0].print_config is False


# -- --help ------------------------------------------------------------------------------------


def test_help_shows_no_environment_variable_for_command_line_only_options() -> None:
    text = run_laurelin("--help", COLUMNS="200").stdout
    line = next(line for line in text.splitlines() if line.startswith("  --print-config"))
    assert "[env" not in line
    assert "LAURELIN_PRINT_CONFIG" not in text
    assert "LAURELIN_CONFIG_FILE" in text


# -- a running server --------------------------------------------------------------------------


def test_server_takes_its_options_from_the_file(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    port = free_port()
    path = write(
        tmp_path,
        f'app = "{APP}"\nport = {port}\nserver-name = "from-file"\n'
        'header = ["X-From:file"]\nroot-path = "/file-root"\n',
    )
    server = start_server("--config", path, env={"LAURELIN_ROOT_PATH": "/env-root"})
    server.wait_listening()
    assert server.port == port
    response = httpx.get(server.url + "/scope")
    assert response.headers["server"] == "from-file"
    assert response.headers["x-from"] == "file"
    assert response.json()["root_path"] == "/env-root"  # the environment wins over the file


def test_command_line_wins_over_the_file_in_a_running_server(
    run_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    path = write(tmp_path, 'server-name = "from-file"\n')
    server = run_server(APP, "--config", path, "-s", "from-cli")
    assert httpx.get(server.url).headers["server"] == "from-cli"
