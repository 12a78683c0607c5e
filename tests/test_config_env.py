# Every option from the environment (LAURELIN_<NAME>), the command line winning over it, and bad
# environment values as usage errors. The per-option tests walk the Config fields, so an option
# added later is covered without editing this file.
from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cli_process import APPS, laurelin_argv
from conftest import ServerProcess, free_port
from laurelin.cli import parse_config
from laurelin.config import Config, convert_env, env_name, from_environ, option_fields

APP = "cli_app:application"
CANDIDATES = (
    *("7", "3", "2.5", "0.25", "X-Sample:1", "X-Other:2", "sample", "other"),
    *("true", "false"),  # for options that take a boolean value
)


def env_fields() -> list[dataclasses.Field[Any]]:
    # LAURELIN_CONFIG_FILE names a file that is read at once: tests/test_config_file.py has it.
    return [f for f in option_fields() if f.metadata["env"] and f.name != "config_file"]


def value_samples(f: dataclasses.Field[Any], count: int) -> list[str]:
    """`count` texts that are valid for `f` and give distinct values other than the default."""
    candidates = f.metadata["choices"] or CANDIDATES
    found: list[str] = []
    seen: list[Any] = [f.default]
    for text in candidates:
        try:
            value = convert_env(f, text)
        except ValueError:
            continue
        if value not in seen:
            seen.append(value)
            found.append(text)
        if len(found) == count:
            return found
    raise AssertionError(f"no {count} sample values for {f.name}: add candidates")


def base_environ(f: dataclasses.Field[Any]) -> dict[str, str]:
    """What the environment needs besides `f` for the configuration to be valid."""
    if f.name in ("proxy_headers_host", "proxy_headers_port"):
        return {env_name("proxy_headers"): "true"}
    if f.name == "ssl_keyfile":
        return {env_name("ssl_certfile"): "cert.pem"}
    return {}


def argv_for(f: dataclasses.Field[Any], *extra: str) -> list[str]:
    return [*extra] if f.name == "app" else [*extra, APP]


@pytest.mark.parametrize("f", env_fields(), ids=lambda f: env_name(f.name))
def test_every_option_can_be_set_from_its_environment_variable(f: dataclasses.Field[Any]) -> None:
    kind = f.metadata["kind"]
    if kind == "flag":
        text, expected = "true", True
    elif kind == "negate":
        text, expected = "false", False
    else:
        text = value_samples(f, 1)[0]
        expected = convert_env(f, text)
    environ = {**base_environ(f), env_name(f.name): text}
    config = parse_config(argv_for(f), environ=environ)
    assert getattr(config, f.name) == expected
    assert getattr(config, f.name) != f.default


@pytest.mark.parametrize("f", env_fields(), ids=lambda f: env_name(f.name))
def test_command_line_wins_over_the_environment(f: dataclasses.Field[Any]) -> None:
    kind = f.metadata["kind"]
    flag = f.metadata["flags"][-1] if f.metadata["flags"] else None
    if kind == "flag":
        env_text, cli, expected = "false", [flag], True
    elif kind == "negate":
        env_text, cli, expected = "true", [flag], False
    elif isinstance(f.default, bool):  # a boolean value: the command line sets the default back
        env_text, cli_text = value_samples(f, 1)[0], str(f.default).lower()
        cli, expected = [flag, cli_text], f.default
    else:
        env_text, cli_text = value_samples(f, 2)
        cli = [flag, cli_text] if flag else [cli_text]
        expected = convert_env(f, cli_text)
    environ = {**base_environ(f), env_name(f.name): env_text}
    argv = [a for a in cli if a is not None]
    config = parse_config(argv if f.name == "app" else [*argv, APP], environ=environ)
    assert getattr(config, f.name) == expected


def test_repeatable_option_takes_a_comma_separated_list_from_the_environment() -> None:
    environ = {"LAURELIN_HEADERS": "X-A:1,X-B:2", "LAURELIN_ENDPOINTS": "tcp:8001,unix:/tmp/s"}
    config = parse_config([APP], environ=environ)
    assert config.headers == ("X-A:1", "X-B:2")
    assert config.endpoints == ("tcp:8001", "unix:/tmp/s")


@pytest.mark.parametrize("text", ["1", "true", "YES", "on"])
def test_boolean_environment_values_accepted_as_true(text: str) -> None:
    assert parse_config([APP], environ={"LAURELIN_PROXY_HEADERS": text}).proxy_headers is True


@pytest.mark.parametrize("text", ["0", "false", "No", "off", ""])
def test_boolean_environment_values_accepted_as_false(text: str) -> None:
    assert parse_config([APP], environ={"LAURELIN_PROXY_HEADERS": text}).proxy_headers is False


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("LAURELIN_PORT", "eighty", "LAURELIN_PORT"),
        ("LAURELIN_PORT", "99999", "not a TCP port"),
        ("LAURELIN_FACTORY", "maybe", "expected true/false"),
        ("LAURELIN_LIFESPAN", "sometimes", "not one of auto, on, off"),
        ("LAURELIN_HEADERS", "X-Good:1,no-colon", "expected NAME:VALUE"),
        ("LAURELIN_VERBOSITY", "9", "LAURELIN_VERBOSITY"),
    ],
)
def test_bad_environment_value_is_a_usage_error_naming_the_variable(
    name: str, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_config([APP], environ={name: text})
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert name in err
    assert message in err


def test_environment_rule_applies_to_proxy_header_names() -> None:
    # --proxy-headers-host from the environment needs --proxy-headers just as on the command line
    with pytest.raises(SystemExit) as exit_info:
        parse_config([APP], environ={"LAURELIN_PROXY_HEADERS_HOST": "X-Real-IP"})
    assert exit_info.value.code == 2


def test_unrelated_environment_is_ignored() -> None:
    assert from_environ({"PATH": "/bin", "LAURELIN": "x", "DAPHNE_PORT": "1"}) == {}
    assert parse_config([APP], environ={"PATH": "/bin"}) == Config(app=APP)


def test_process_environment_is_read_when_none_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAURELIN_ROOT_PATH", "/from-os-environ")
    assert parse_config([APP]).root_path == "/from-os-environ"


# -- end to end -----------------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAURELIN_")}
    env.update(extra)
    return env


def test_server_configured_only_from_the_environment(
    start_server: Callable[..., ServerProcess],
) -> None:
    port = free_port()
    server = start_server(
        env={
            "LAURELIN_APP": APP,
            "LAURELIN_PORT": str(port),
            "LAURELIN_SERVER_NAME": "from-env",
            "LAURELIN_HEADERS": "X-A:1,X-B:2",
            "LAURELIN_DATE_HEADER": "false",
            "LAURELIN_ROOT_PATH": "/env-root",
        }
    )
    server.wait_listening()
    assert server.port == port
    response = httpx.get(server.url + "/scope")
    assert response.headers["server"] == "from-env"
    assert (response.headers["x-a"], response.headers["x-b"]) == ("1", "2")
    assert "date" not in response.headers
    assert response.json()["root_path"] == "/env-root"


def test_command_line_wins_over_the_environment_in_a_running_server(
    run_server: Callable[..., ServerProcess],
) -> None:
    server = run_server(APP, "-s", "from-cli", env={"LAURELIN_SERVER_NAME": "from-env"})
    assert httpx.get(server.url).headers["server"] == "from-cli"


def test_bad_environment_value_stops_the_command_with_exit_2() -> None:
    result = subprocess.run(
        laurelin_argv(APP),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=APPS,
        env=clean_env(LAURELIN_TIMEOUT_KEEP_ALIVE="soon"),
    )
    assert result.returncode == 2
    assert "LAURELIN_TIMEOUT_KEEP_ALIVE" in result.stderr
    assert "Traceback" not in result.stderr
