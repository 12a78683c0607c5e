# The chat served live by laurelin in another process, as a project's own tests would use it:
# laurelin.django.testing.LaurelinLiveServerTestCase, and Channels' ChannelsLiveServerTestCase
# with `ProtocolServerProcess = LaurelinProcess`. Plain clients first (the pages and the static
# script over HTTP, the chat over WebSocket with the `websockets` client), then the room page in
# headless Chromium through Selenium (Debian's chromium and chromium-driver): two windows in one
# room see each other's messages, a window in another room does not.
#
# Run from examples/chat: `python manage.py test chat` (tests/dj/test_live_server.py does, with a
# temporary database). The test database must be a file (settings: DATABASES TEST NAME), since
# the server process opens it too.
from __future__ import annotations

import json
import unittest
import urllib.request
import uuid
from typing import Any, ClassVar

from django.test import TransactionTestCase
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.wait import WebDriverWait
from websockets.sync.client import ClientConnection, connect

from laurelin.django.testing import LaurelinLiveServerTestCase
from laurelin.testing import LaurelinProcess

try:
    from channels.testing import ChannelsLiveServerTestCase
except ImportError as exc:
    # channels/testing/live.py imports daphne.testing unconditionally (channels 4.3).
    if exc.name != "daphne" and not (exc.name or "").startswith("daphne."):
        raise
    ChannelsLiveServerTestCase = None

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 15.0  # seconds any one expected thing may take to happen


def room_name() -> str:
    """A room no other test uses."""
    return f"room-{uuid.uuid4().hex[:8]}"


def fetch(url: str) -> tuple[int, dict[str, str], str]:
    with urllib.request.urlopen(url, timeout=WAIT) as response:
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, response.read().decode()


class LiveServerTests(LaurelinLiveServerTestCase):
    """The live server with plain clients: HTTP pages, the static script, the WebSocket chat."""

    def test_pages_and_static_files_over_http(self) -> None:
        status, headers, body = fetch(f"{self.live_server_url}/chat/")
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("server"), "laurelin")
        self.assertIn("What chat room would you like to enter?", body)
        status, _, body = fetch(f"{self.live_server_url}/chat/lobby/")
        self.assertEqual(status, 200)
        self.assertIn('<script id="room-name" type="application/json">"lobby"</script>', body)
        # Static files come through Django's ASGIStaticFilesHandler (serve_static = True).
        status, headers, body = fetch(f"{self.live_server_url}/static/chat/room.js")
        self.assertEqual(status, 200)
        self.assertIn("javascript", headers.get("content-type", ""))
        self.assertIn("new WebSocket(", body)

    def test_chat_over_websocket(self) -> None:
        room = room_name()
        with self.join(room) as alice, self.join(room) as bob, self.join(room_name()) as carol:
            alice.send(json.dumps({"message": "hello from alice"}))
            self.assertEqual(self.heard(bob), "hello from alice")
            self.assertEqual(self.heard(alice), "hello from alice")
            carol.send(json.dumps({"message": "carol's own room"}))
            # Carol hears her own message first: alice's never reached her room.
            self.assertEqual(self.heard(carol), "carol's own room")

    def join(self, room: str) -> ClientConnection:
        return connect(
            f"{self.live_server_ws_url}/ws/chat/{room}/",
            origin=self.live_server_url,
            open_timeout=WAIT,
        )

    @staticmethod
    def heard(ws: ClientConnection) -> str:
        return str(json.loads(ws.recv(WAIT))["message"])


def headless_chromium() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # needed as root (CI containers)
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1024,768",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


class ChatInTheBrowser:
    """The room page in windows of one headless Chromium (mixed into a live-server test case)."""

    driver: ClassVar[webdriver.Chrome]
    live_server_url: str
    assertEqual: Any  # from the test case it is mixed into

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()  # type: ignore[misc]  # the live server
        cls.driver = headless_chromium()
        cls.addClassCleanup(cls.driver.quit)  # type: ignore[attr-defined]

    def test_two_windows_in_a_room_see_each_others_messages(self) -> None:
        room = room_name()
        first = self.open_room(room)
        second = self.open_room(room)
        self.say(first, "hello from the first window")
        self.wait_heard(second, "hello from the first window")
        self.wait_heard(first, "hello from the first window")
        self.say(second, "and back from the second")
        self.wait_heard(first, "and back from the second")
        self.wait_heard(second, "and back from the second")
        elsewhere = self.open_room(room_name())
        self.say(elsewhere, "another room")
        self.wait_heard(elsewhere, "another room")
        self.assertEqual(self.chat_log(elsewhere), ["another room"])
        both = ["hello from the first window", "and back from the second"]
        self.assertEqual(self.chat_log(first), both)
        self.assertEqual(self.chat_log(second), both)

    def open_room(self, room: str) -> str:
        """Open the room page in a new window; return the window once its socket is open."""
        self.driver.switch_to.new_window("window")
        self.driver.get(f"{self.live_server_url}/chat/{room}/")
        self.wait_for(
            lambda driver: (
                driver.find_element(By.TAG_NAME, "body").get_attribute("data-connected") == "true"
            ),
            f"the chat socket of {room} to open",
        )
        return str(self.driver.current_window_handle)

    def say(self, window: str, message: str) -> None:
        self.driver.switch_to.window(window)
        field = self.driver.find_element(By.ID, "chat-message-input")
        field.send_keys(message)
        field.send_keys(Keys.ENTER)

    def chat_log(self, window: str) -> list[str]:
        self.driver.switch_to.window(window)
        text = self.driver.find_element(By.ID, "chat-log").get_property("value")
        return str(text).splitlines()

    def wait_heard(self, window: str, message: str) -> None:
        self.wait_for(lambda _: message in self.chat_log(window), f"{message!r} in {window}")

    def wait_for(self, condition: Any, what: str) -> None:
        WebDriverWait(self.driver, WAIT).until(condition, f"waited {WAIT:g} s for {what}")


class LaurelinChatInTheBrowserTests(ChatInTheBrowser, LaurelinLiveServerTestCase):
    """laurelin's own live-server test case."""


@unittest.skipIf(
    ChannelsLiveServerTestCase is None,
    "channels.testing needs daphne installed (it imports daphne.testing)",
)
class ChannelsChatInTheBrowserTests(
    ChatInTheBrowser, ChannelsLiveServerTestCase or TransactionTestCase
):
    """Channels' own live-server test case, with laurelin as its server process."""

    ProtocolServerProcess = LaurelinProcess
