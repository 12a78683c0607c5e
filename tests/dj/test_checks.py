# The laurelin app's system checks, through `python -m django check` (and runserver) in a
# subprocess, with settings modules written for each case on top of the chat example's:
# laurelin.E001 when laurelin comes after django.contrib.staticfiles (either spelling of the
# app), laurelin.E002 when Daphne is installed too (naming the runserver Django really runs,
# confirmed with `help runserver`; Daphne itself is a stand-in package here, put first on the
# path, so the case does not depend on the Daphne the test extra installs), Django's own error
# for both spellings at once, and laurelin
# importing without Django.
from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from cli_process import Launched
from runserver_process import EXAMPLE, chat_copy, project_env, start_runserver, write_settings

REST = [
    "chat",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
]
STATIC = "django.contrib.staticfiles"


def django_admin(workdir: Path, settings: str, *args: str) -> Launched:
    """`python -m django ARGS --settings SETTINGS` run to its end, with the example and
    `workdir` (settings modules, the stand-in daphne) on the path."""
    env = {
        "PYTHONPATH": os.pathsep.join([str(workdir), str(EXAMPLE)]),
        "PYTHONDONTWRITEBYTECODE": "1",
        "CHAT_DATABASE": str(workdir / "db.sqlite3"),
        "REDIS_URL": "",
    }
    argv = [sys.executable, "-m", "django", *args, "--settings", settings]
    proc = Launched(argv, env=env, cwd=workdir)
    try:
        proc.wait_exit(30)
    finally:
        proc.stop()
    return proc


def apps_settings(workdir: Path, name: str, apps: list[str]) -> str:
    text = f"from mysite.settings import *  # noqa: F403\n\nINSTALLED_APPS = {apps!r}\n"
    (workdir / f"{name}.py").write_text(text, encoding="utf-8")
    return name


def stand_in_daphne(workdir: Path) -> None:
    """A package named daphne with a runserver command, standing in for Daphne's app."""
    commands = workdir / "daphne" / "management" / "commands"
    commands.mkdir(parents=True)
    for package in (workdir / "daphne", commands.parent, commands):
        (package / "__init__.py").write_text("", encoding="utf-8")
    (commands / "runserver.py").write_text(
        textwrap.dedent(
            """
            from django.core.management.commands.runserver import Command as Base


            class Command(Base):
                help = "The stand-in daphne's runserver."
            """
        ),
        encoding="utf-8",
    )


def test_the_chat_example_passes(tmp_path: Path) -> None:
    proc = django_admin(tmp_path, "mysite.settings", "check")
    assert proc.proc.returncode == 0, proc.output
    assert "System check identified no issues" in proc.stdout


@pytest.mark.parametrize(
    ("apps", "named"),
    [
        ([STATIC, "laurelin", *REST], "laurelin"),
        (["chat", STATIC, "laurelin.django", *REST[1:]], "laurelin.django"),
    ],
    ids=["laurelin", "laurelin.django"],
)
def test_e001_laurelin_after_staticfiles(tmp_path: Path, apps: list[str], named: str) -> None:
    proc = django_admin(tmp_path, apps_settings(tmp_path, "order", apps), "check")
    assert proc.proc.returncode == 1
    assert (
        f'?: (laurelin.E001) "{named}" must be listed before "django.contrib.staticfiles" '
        "in INSTALLED_APPS." in proc.stderr
    )
    assert f'HINT: Move "{named}" above "django.contrib.staticfiles"' in proc.stderr


@pytest.mark.parametrize(
    "apps",
    [
        ["laurelin.django", *REST, STATIC],
        ["laurelin", *REST],  # no staticfiles at all
    ],
    ids=["laurelin.django-first", "no-staticfiles"],
)
def test_e001_silent_when_the_order_is_right(tmp_path: Path, apps: list[str]) -> None:
    proc = django_admin(tmp_path, apps_settings(tmp_path, "order", apps), "check")
    assert proc.proc.returncode == 0, proc.output
    assert "laurelin.E" not in proc.output


def test_e001_stops_the_runserver_that_wins_instead(tmp_path: Path) -> None:
    # staticfiles' runserver (Django's WSGI one) is what runs; laurelin's check still stops it.
    project = chat_copy(tmp_path)
    settings = write_settings(
        project, "order", f"INSTALLED_APPS = {[STATIC, 'laurelin', *REST]!r}\n"
    )
    server = start_runserver(project, "--settings", settings, "--noreload", wait=False)
    try:
        assert server.wait_exit(30) == 1
    finally:
        server.stop()
    assert "(laurelin.E001)" in server.stderr
    assert "development server at" not in server.stdout


@pytest.mark.parametrize(
    ("apps", "winner", "help_text"),
    [
        (["daphne", "laurelin", *REST, STATIC], "daphne", "The stand-in daphne's runserver."),
        (["laurelin", "daphne", *REST, STATIC], "laurelin", "Starts laurelin as a development"),
    ],
    ids=["daphne-first", "laurelin-first"],
)
def test_e002_daphne_and_laurelin_both_installed(
    tmp_path: Path, apps: list[str], winner: str, help_text: str
) -> None:
    stand_in_daphne(tmp_path)
    settings = apps_settings(tmp_path, "both", apps)
    proc = django_admin(tmp_path, settings, "check")
    assert proc.proc.returncode == 1
    assert (
        '?: (laurelin.E002) Both "daphne" and "laurelin" are in INSTALLED_APPS: manage.py '
        f"runserver is {winner}'s, because it is listed first." in proc.stderr
    )
    assert 'HINT: Remove one of them: to serve with laurelin, remove "daphne"' in proc.stderr
    # What the check says is what Django does.
    shown = django_admin(tmp_path, settings, "help", "runserver")
    assert help_text in shown.stdout


def test_both_spellings_at_once_is_djangos_duplicate_label_error(tmp_path: Path) -> None:
    settings = apps_settings(tmp_path, "twice", ["laurelin", "laurelin.django", *REST, STATIC])
    proc = django_admin(tmp_path, settings, "check")
    assert proc.proc.returncode == 1
    assert "Application labels aren't unique, duplicates: laurelin" in proc.stderr


def test_laurelin_imports_without_django(tmp_path: Path) -> None:
    # sys.modules["django"] = None makes every `import django...` fail, as if not installed.
    code = (
        "import sys; sys.modules['django'] = None\n"
        "import laurelin, laurelin.django, laurelin.cli, laurelin.server, laurelin.logs\n"
        "print('imported', sorted(m for m in sys.modules if m.split('.')[0] == 'django'))\n"
    )
    proc = Launched([sys.executable, "-c", code], env=project_env(tmp_path), cwd=tmp_path)
    try:
        assert proc.wait_exit(30) == 0, proc.output
    finally:
        proc.stop()
    assert "imported ['django']" in proc.stdout


def test_under_the_reloader_runserver_reports_the_error_and_waits(tmp_path: Path) -> None:
    project = chat_copy(tmp_path)
    stand_in_daphne(project)
    apps = ["laurelin", "daphne", *REST, STATIC]
    settings = write_settings(project, "both", f"INSTALLED_APPS = {apps!r}\n")
    server = start_runserver(project, "--settings", settings, wait=False)
    try:
        server.wait_for(r"^\?: \(laurelin\.E002\) ", "stderr", 30)
        assert server.proc.poll() is None  # the reloader waits for the settings to be fixed
    finally:
        server.stop()
    assert server.stderr.count("SystemCheckError: System check identified some issues") == 1
    assert "Traceback" not in server.stderr
    assert "development server at" not in server.stdout
