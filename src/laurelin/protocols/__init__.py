# laurelin.protocols — one asyncio.Protocol adapter per wire protocol. Each turns wire events
# into calls on the ASGI bridge (laurelin.asgi) and implements the bridge's sink interface.
