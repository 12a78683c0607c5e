# Start-up failures a user can cause: each is one readable line (no traceback) and exit 1, naming
# what is wrong and how to fix it. Lifespan startup failures stop the server with the app's reason.
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from cli_process import APPS, Launched, run_to_exit
from conftest import ServerProcess

APP = "cli_app:application"


def assert_one_critical_line(result: Launched) -> str:
    """The process exited 1 having written exactly one CRITICAL line and nothing else."""
    assert result.proc.returncode == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "CRITICAL" in lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def test_module_not_found_names_the_module_and_directory() -> None:
    line = assert_one_critical_line(run_to_exit("no_such_module_anywhere:app"))
    assert "'no_such_module_anywhere'" in line
    assert str(APPS) in line
    assert "--app-dir" in line


def test_module_not_found_names_the_app_dir_given(tmp_path: Path) -> None:
    line = assert_one_critical_line(run_to_exit("--app-dir", str(tmp_path), "nowhere_module:app"))
    assert str(tmp_path) in line


def test_missing_package_of_a_dotted_module_path() -> None:
    line = assert_one_critical_line(run_to_exit("no_such_package.asgi:application"))
    assert "no_such_package" in line


def test_missing_dependency_of_the_app_module_is_named() -> None:
    line = assert_one_critical_line(run_to_exit("cli_missing_dependency:application"))
    assert "'cli_missing_dependency'" in line
    assert "laurelin_test_not_installed_dependency" in line


def test_missing_attribute_lists_the_asgi_looking_names() -> None:
    line = assert_one_critical_line(run_to_exit("cli_app:app_that_is_not_there"))
    assert "'cli_app'" in line
    assert "'app_that_is_not_there'" in line
    assert "application" in line
    assert "make_app" in line
    assert "logger" not in line  # not callable, not an app


def test_module_alone_means_its_application_attribute() -> None:
    line = assert_one_critical_line(run_to_exit("basic"))  # basic.py names its app `app`
    assert "has no attribute 'application'" in line
    assert "it has: app" in line


def test_module_alone_serves_its_application(run_server: Callable[..., ServerProcess]) -> None:
    assert httpx.get(run_server("cli_app").url).text == "cli ok"


def test_object_that_is_not_callable() -> None:
    line = assert_one_critical_line(run_to_exit("cli_app:not_an_app"))
    assert "'cli_app:not_an_app'" in line
    assert "not callable" in line
    assert "int" in line


def test_empty_module_path_is_refused() -> None:
    line = assert_one_critical_line(run_to_exit(":application"))
    assert "module.path:attribute" in line


def test_django_settings_not_configured_says_how_to_fix_it() -> None:
    line = assert_one_critical_line(run_to_exit("cli_django_unconfigured:application"))
    assert "DJANGO_SETTINGS_MODULE" in line
    assert "set DJANGO_SETTINGS_MODULE" in line


def test_factory_that_is_not_callable() -> None:
    line = assert_one_critical_line(run_to_exit("--factory", "cli_app:not_an_app"))
    assert "--factory" in line
    assert "not callable" in line


def test_factory_that_raises_shows_its_error() -> None:
    line = assert_one_critical_line(run_to_exit("--factory", "cli_app:exploding_factory"))
    assert "--factory" in line
    assert "RuntimeError: factory exploded" in line


def test_async_factory_is_refused() -> None:
    line = assert_one_critical_line(run_to_exit("--factory", "cli_app:async_factory"))
    assert "async" in line


def test_uvloop_requested_but_missing(tmp_path: Path) -> None:
    # A module named uvloop that fails to import stands in for uvloop not being installed.
    (tmp_path / "uvloop.py").write_text("raise ImportError('uvloop is not installed here')\n")
    result = run_to_exit("--loop", "uvloop", "-p", "0", APP, env={"PYTHONPATH": str(tmp_path)})
    line = assert_one_critical_line(result)
    assert "--loop uvloop" in line


@pytest.mark.parametrize("app", ["cli_app:startup_failed_app", "cli_app:startup_raising_app"])
def test_lifespan_startup_failure_exits_non_zero_with_the_apps_message(app: str) -> None:
    result = run_to_exit("--lifespan", "on", "-p", "0", app)
    assert result.proc.returncode not in (0, None)
    assert "Application startup failed" in result.stderr
    reason = "database unreachable" if "failed" in app else "cannot open the connection pool"
    assert reason in result.stderr
    assert "Listening on" not in result.output


def test_lifespan_startup_failed_in_auto_mode_also_stops_the_server() -> None:
    result = run_to_exit("-p", "0", "cli_app:startup_failed_app")
    assert result.proc.returncode not in (0, None)
    assert "database unreachable" in result.stderr
