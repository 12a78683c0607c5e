# The programmatic API (docs/api.md): `await laurelin.serve(app, config, ...)` in the test's own
# event loop with a real loopback client, and `laurelin.run(app, **options)` in a child process
# (it blocks, handles signals and sets up logging, as the command line does). Also: options are
# checked like the command line's, and `import laurelin` does not load the server.
from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import laurelin
from cli_process import APPS, Launched
from conftest import free_port
from laurelin.api import config_from_options
from laurelin.config import COMMAND_LINE_ONLY, Config, option_fields, typed_value

ROOT = Path(__file__).parent.parent
DEADLINE = 20.0  # seconds any one in-process scenario may take


class App:
    """An ASGI app that records lifespan events and can hold a request until released."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                self.events.append(message["type"])
                if message["type"] == "lifespan.startup":
                    scope["state"]["greeting"] = "hello"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["path"] == "/hold":
            self.holding.set()
            await self.release.wait()
        body = f"{scope['path']} {scope['state'].get('greeting')}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def run_async(scenario: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(DEADLINE):
            await scenario()

    asyncio.run(bounded())


class Serving:
    """serve() running as a task, with the trigger, the addresses and the task at hand."""

    def __init__(self, app: Any, config: Config, **kwargs: Any) -> None:
        self.stop = asyncio.Event()
        self.started = asyncio.Event()
        self.addresses: list[str] = []

        def on_started(addresses: list[str]) -> None:
            self.addresses = addresses
            self.started.set()

        kwargs.setdefault("shutdown_trigger", self.stop.wait)
        self.task = asyncio.create_task(
            laurelin.serve(app, config, on_started=on_started, **kwargs)
        )

    async def wait_started(self) -> str:
        waiter = asyncio.ensure_future(self.started.wait())
        done, _ = await asyncio.wait([waiter, self.task], return_when=asyncio.FIRST_COMPLETED)
        if self.task in done:
            waiter.cancel()
            self.task.result()
            raise AssertionError("serve() returned before serving")
        return self.addresses[0]

    async def finish(self) -> None:
        self.stop.set()
        await self.task


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# -- serve() -----------------------------------------------------------------------------------


def test_serve_runs_lifespan_serves_and_stops_on_the_trigger() -> None:
    port = free_port()
    app = App()

    async def scenario() -> None:
        serving = Serving(app, Config(port=port))
        url = await serving.wait_started()
        assert url == f"http://127.0.0.1:{port}"
        assert app.events == ["lifespan.startup"]
        async with httpx.AsyncClient() as client:
            response = await client.get(url + "/there")
        assert (response.status_code, response.text) == (200, "/there hello")
        await serving.finish()
        assert app.events == ["lifespan.startup", "lifespan.shutdown"]

    run_async(scenario)
    assert port_is_free(port)  # the listener is closed


def test_serve_drains_in_flight_requests_after_the_trigger() -> None:
    app = App()

    async def scenario() -> None:
        serving = Serving(app, Config(port=free_port()))
        url = await serving.wait_started()
        async with httpx.AsyncClient() as client:
            request = asyncio.create_task(client.get(url + "/hold"))
            await app.holding.wait()
            serving.stop.set()  # shut down while the request is in flight
            await asyncio.sleep(0)
            assert not serving.task.done()
            app.release.set()
            response = await request
            assert response.status_code == 200
        await serving.task
        assert app.events[-1] == "lifespan.shutdown"

    run_async(scenario)


def test_stopping_one_server_leaves_another_servers_requests_alone() -> None:
    """Two serve() calls in one loop (docs/api.md): one's drain and its graceful timeout touch
    only its own app tasks."""
    public, admin = App(), App()

    async def scenario() -> None:
        serving_public = Serving(public, Config(port=free_port()))
        serving_admin = Serving(admin, Config(port=free_port(), graceful_timeout=0.2))
        url = await serving_public.wait_started()
        await serving_admin.wait_started()
        async with httpx.AsyncClient() as client:
            request = asyncio.create_task(client.get(url + "/hold"))
            await public.holding.wait()
            await serving_admin.finish()  # its drain must neither wait for nor cancel /hold
            await asyncio.sleep(0.5)  # past the admin server's graceful timeout
            assert not request.done()
            public.release.set()
            response = await request
            assert response.status_code == 200
        await serving_public.finish()

    run_async(scenario)


def test_cancelling_the_task_drains_too() -> None:
    app = App()

    async def scenario() -> None:
        serving = Serving(app, Config(port=free_port()), shutdown_trigger=None)
        url = await serving.wait_started()
        async with httpx.AsyncClient() as client:
            assert (await client.get(url)).status_code == 200
        serving.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving.task
        assert app.events == ["lifespan.startup", "lifespan.shutdown"]

    run_async(scenario)


def test_serve_imports_an_app_named_by_its_path() -> None:
    async def scenario() -> None:
        serving = Serving("cli_app:application", Config(port=free_port(), app_dir=str(APPS)))
        url = await serving.wait_started()
        async with httpx.AsyncClient() as client:
            assert (await client.get(url)).text == "cli ok"
        await serving.finish()

    run_async(scenario)


def test_serve_adapts_an_asgi2_app() -> None:
    class Asgi2:
        def __init__(self, scope: dict[str, Any]) -> None:
            self.scope = scope

        async def __call__(self, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"asgi2"})

    async def scenario() -> None:
        serving = Serving(Asgi2, Config(port=free_port(), lifespan="off"))
        url = await serving.wait_started()
        async with httpx.AsyncClient() as client:
            assert (await client.get(url)).text == "asgi2"
        await serving.finish()

    run_async(scenario)


def test_serve_on_a_unix_socket_and_with_a_pid_file(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    pid = tmp_path / "app.pid"

    async def scenario() -> None:
        serving = Serving(App(), Config(unix_socket=str(path), pid_file=str(pid)))
        assert await serving.wait_started() == f"unix:{path}"
        assert pid.read_text() == f"{os.getpid()}\n"
        transport = httpx.AsyncHTTPTransport(uds=str(path))
        async with httpx.AsyncClient(transport=transport) as client:
            assert (await client.get("http://localhost/unix")).text == "/unix hello"
        await serving.finish()

    run_async(scenario)
    assert not path.exists()
    assert not pid.exists()


def test_a_failing_trigger_raises_after_the_drain() -> None:
    app = App()

    async def failing() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("trigger broke")

    async def scenario() -> None:
        with pytest.raises(RuntimeError, match="trigger broke"):
            await laurelin.serve(app, Config(port=free_port()), shutdown_trigger=failing)
        assert app.events == ["lifespan.startup", "lifespan.shutdown"]

    run_async(scenario)


def test_serve_installs_no_signal_handlers_unless_asked() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        serving = Serving(App(), Config(port=free_port()))
        await serving.wait_started()
        # asyncio refuses to remove a handler it does not have: none was added.
        assert loop.remove_signal_handler(signal.SIGTERM) is False
        assert loop.remove_signal_handler(signal.SIGINT) is False
        await serving.finish()

    run_async(scenario)


# -- serve() errors: StartupError, and nothing left open ------------------------------------------


def startup_error(app: Any, config: Config) -> str:
    async def scenario() -> None:
        await laurelin.serve(app, config, shutdown_trigger=asyncio.Event().wait)

    with pytest.raises(laurelin.StartupError) as failed:
        run_async(scenario)
    return str(failed.value)


def test_app_that_cannot_be_imported_is_a_startup_error() -> None:
    message = startup_error("no_such_module_here:app", Config(port=free_port()))
    assert "Could not import module 'no_such_module_here'" in message


def test_address_in_use_is_a_startup_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        message = startup_error(App(), Config(port=port))
    assert f"127.0.0.1:{port}" in message


def test_failed_lifespan_startup_is_a_startup_error_and_frees_the_port() -> None:
    async def failing(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    port = free_port()
    message = startup_error(failing, Config(port=port))
    assert message == "Application startup failed: no database"
    assert port_is_free(port)


def test_missing_tls_files_are_a_startup_error(tmp_path: Path) -> None:
    config = Config(port=free_port(), ssl_certfile=str(tmp_path / "absent.pem"))
    assert "absent.pem" in startup_error(App(), config)


def test_bad_endpoint_is_a_startup_error() -> None:
    assert "endpoint" in startup_error(App(), Config(endpoints=("nonsense:1",))).lower()


def test_held_pid_file_is_a_startup_error(tmp_path: Path) -> None:
    pid = tmp_path / "app.pid"
    from laurelin.pidfile import pid_file

    port = free_port()
    with pid_file(str(pid)):
        message = startup_error(App(), Config(port=port, pid_file=str(pid)))
    assert "already running" in message
    assert port_is_free(port)


@pytest.mark.parametrize(
    ("options", "named"),
    [({"workers": 2}, "workers"), ({"reload": True}, "reload"), ({"max_requests": 5}, "max")],
)
def test_serve_refuses_process_options(options: dict[str, Any], named: str) -> None:
    async def scenario() -> None:
        await laurelin.serve(App(), Config(**options))

    with pytest.raises(ValueError, match=f"{named}.*need laurelin.run"):
        run_async(scenario)


def test_serve_refuses_an_app_that_is_not_callable() -> None:
    async def scenario() -> None:
        await laurelin.serve(42, Config())  # type: ignore[arg-type]

    with pytest.raises(TypeError, match="not int"):
        run_async(scenario)


# -- options as keywords -------------------------------------------------------------------------

SAMPLES: tuple[Any, ...] = (7, 3, 2, 2.5, True, False, "X-Sample:1", "sample", ["X-Sample:1"])


def keyword_fields() -> list[dataclasses.Field[Any]]:
    return [f for f in option_fields() if f.name != "app" and f.name not in COMMAND_LINE_ONLY]


@pytest.mark.parametrize("f", keyword_fields(), ids=lambda f: f.name)
def test_every_option_is_a_keyword(f: dataclasses.Field[Any]) -> None:
    for raw in (*(f.metadata["choices"] or ()), *SAMPLES):
        try:
            expected = typed_value(f, raw)
        except ValueError:
            continue
        if expected == f.default:
            continue
        extra = {"proxy_headers": True} if f.name.startswith("proxy_headers_") else {}
        if f.name == "ssl_keyfile":
            extra = {"ssl_certfile": "cert.pem"}
        config = config_from_options({f.name: raw, **extra}, "mod:app")
        assert getattr(config, f.name) == expected
        assert config.app == "mod:app"
        return
    raise AssertionError(f"no sample value for {f.name}")


def test_none_is_accepted_where_the_option_allows_it() -> None:
    config = config_from_options({"http_timeout": None, "port": None, "max_requests": None})
    assert (config.http_timeout, config.port, config.max_requests) == (None, None, None)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"wokers": 2}, TypeError, "unknown option 'wokers' (did you mean 'workers'?)"),
        ({"app": "x:y"}, TypeError, "unknown option 'app'"),
        ({"config_file": "a.toml"}, TypeError, "unknown option 'config_file'"),
        ({"print_config": True}, TypeError, "unknown option 'print_config'"),
        ({"port": "8000"}, ValueError, "option port: expected an integer, got the string"),
        ({"port": 70000}, ValueError, "option port: '70000' is not a TCP port"),
        ({"workers": None}, ValueError, "option workers: expected an integer, got a NoneType"),
        ({"headers": "X-A:1"}, ValueError, "option headers: expected a list of strings"),
        ({"headers": ["bad"]}, ValueError, "option headers: 'bad': expected NAME:VALUE"),
        ({"proxy_headers": 1}, ValueError, "option proxy_headers: expected true or false"),
        ({"proxy_headers_host": "X-IP"}, ValueError, "--proxy-headers-host needs --proxy-"),
        ({"reload": True, "workers": 2}, ValueError, "--reload and --workers > 1 cannot be"),
    ],
)
def test_bad_options_are_refused_before_anything_starts(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as refused:
        config_from_options(options)
    assert message in str(refused.value)
    with pytest.raises(error):
        laurelin.run(lambda scope, receive, send: None, **options)  # type: ignore[arg-type, return-value]


def test_run_refuses_an_app_object_with_worker_processes() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    for options in ({"workers": 2}, {"reload": True}, {"max_requests": 10}):
        with pytest.raises(ValueError, match="pass its import path"):
            laurelin.run(app, **options)


def test_run_refuses_a_running_event_loop() -> None:
    async def scenario() -> None:
        with pytest.raises(RuntimeError, match=r"await laurelin\.serve"):
            laurelin.run("cli_app:application")

    run_async(scenario)


def test_run_refuses_another_thread() -> None:
    failures: list[BaseException] = []

    def call() -> None:
        try:
            laurelin.run("cli_app:application")
        except RuntimeError as exc:
            failures.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join(DEADLINE)
    assert len(failures) == 1
    assert "main thread" in str(failures[0])


def test_run_refuses_an_app_that_is_not_callable() -> None:
    with pytest.raises(TypeError, match="not list"):
        laurelin.run([])  # type: ignore[arg-type]


# -- run() in a process of its own ---------------------------------------------------------------


@pytest.fixture
def script(tmp_path: Path) -> Iterator[Callable[..., Launched]]:
    """Run a Python script (in tests/apps) with laurelin importable; stopped at teardown."""
    started: list[Launched] = []

    def launch(code: str) -> Launched:
        path = tmp_path / "embedding.py"
        path.write_text(textwrap.dedent(code))
        paths = [str(APPS), *filter(None, [os.environ.get("PYTHONPATH")])]
        proc = Launched([sys.executable, str(path)], env={"PYTHONPATH": os.pathsep.join(paths)})
        started.append(proc)
        return proc

    yield launch
    for proc in started:
        proc.stop()


@pytest.mark.parametrize("app", ["application", '"cli_app:application"'])
def test_run_serves_until_sigterm_and_returns_0(script: Callable[..., Launched], app: str) -> None:
    port = free_port()
    proc = script(
        f"""
        import laurelin
        from cli_app import application

        status = laurelin.run({app}, port={port}, server_name="embedded")
        print("run returned", status, flush=True)
        raise SystemExit(status)
        """
    )
    proc.wait_listening()
    response = httpx.get(proc.url + "/scope")
    assert response.headers["server"] == "embedded"
    assert response.json()["state"] == {"lifespan": "ran"}
    proc.signal(signal.SIGTERM)
    assert proc.wait_exit() == 0
    assert "run returned 0" in proc.stdout


def test_run_with_workers(script: Callable[..., Launched]) -> None:
    port = free_port()
    proc = script(
        f"""
        import laurelin
        raise SystemExit(laurelin.run("cli_app:application", port={port}, workers=2))
        """
    )
    proc.wait_listening(timeout=30)
    assert httpx.get(proc.url).text == "cli ok"
    proc.signal(signal.SIGTERM)
    assert proc.wait_exit(timeout=60) == 0


def test_run_returns_the_startup_failure_status(script: Callable[..., Launched]) -> None:
    proc = script(
        f"""
        import laurelin
        print("status", laurelin.run("no_such_module_here:app", port={free_port()}), flush=True)
        """
    )
    assert proc.wait_exit() == 0
    assert "status 1" in proc.stdout
    assert "Could not import module 'no_such_module_here'" in proc.stderr


def test_serve_with_signals_in_a_script(script: Callable[..., Launched]) -> None:
    port = free_port()
    proc = script(
        f"""
        import asyncio, logging
        import laurelin
        from cli_app import application

        logging.basicConfig(level=logging.INFO)

        async def main():
            config = laurelin.Config(port={port})
            await laurelin.serve(application, config, handle_signals=True)
            print("served", flush=True)

        asyncio.run(main())
        """
    )
    proc.wait_listening()
    assert httpx.get(proc.url).text == "cli ok"
    proc.signal(signal.SIGTERM)
    assert proc.wait_exit() == 0
    assert "served" in proc.stdout


def test_docs_embedding_example_runs(script: Callable[..., Launched]) -> None:
    # The "existing loop with a custom shutdown trigger" example of docs/api.md, as written.
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    marker = "<!-- example: embedding -->\n```python\n"
    start = text.index(marker) + len(marker)
    code = text[start : text.index("```", start)]
    proc = script(code)
    port = int(proc.wait_for(r"listening on http://127\.0\.0\.1:(\d+)", "stdout").group(1))
    assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
    assert httpx.post(f"http://127.0.0.1:{port}/shutdown").status_code == 200
    assert proc.wait_exit() == 0
    assert "stopped" in proc.stdout


# -- import cost ---------------------------------------------------------------------------------


def test_import_laurelin_does_not_load_the_server() -> None:
    code = (
        "import sys, laurelin\n"
        "print(sorted(m for m in sys.modules if m.startswith('laurelin')))\n"
        "laurelin.run\n"
        "print('laurelin.server' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    loaded, after = result.stdout.splitlines()
    assert loaded == "['laurelin', 'laurelin.config']"
    assert after == "True"


def test_unknown_attribute_of_the_package() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        laurelin.nope  # type: ignore[attr-defined]  # noqa: B018
