# laurelin.asgi — the ASGI bridge shared by every wire protocol: scopes, the HTTP cycle,
# lifespan. It knows ASGI, not sockets nor HTTP versions, and never imports laurelin.protocols.
