# The chat app of the example: a page per room, messages broadcast over WebSocket.
