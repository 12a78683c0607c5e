# The chat consumer: each WebSocket joins its room's group; a message from one client is sent
# to the group, so every client in the room (on any laurelin process sharing the channel
# layer) receives it. A client leaving (also when its server shuts down) is announced to the
# room as {"left": true}.
import json
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = f"chat_{self.room_name}"
        await self.channel_layer.group_add(self.room_group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, close_code: int) -> None:
        await self.channel_layer.group_discard(self.room_group_name, self.channel_name)
        await self.channel_layer.group_send(self.room_group_name, {"type": "chat.left"})

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            return
        try:
            message = json.loads(text_data)["message"]
        except (ValueError, KeyError, TypeError):
            return  # not a chat message: ignored
        await self.channel_layer.group_send(
            self.room_group_name, {"type": "chat.message", "message": str(message)}
        )

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"message": event["message"]}))

    async def chat_left(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"left": True}))
