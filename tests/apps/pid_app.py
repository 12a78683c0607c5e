# An app that says which process served it, for the worker tests: GET / answers the pid;
# /slow?seconds=N answers after N seconds; /block?seconds=N blocks the event loop (a hung
# worker); lifespan shutdown appends "shutdown <pid>" to the file in $PID_APP_LOG, if set.
import asyncio
import os
import time
from urllib.parse import parse_qs


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                log = os.environ.get("PID_APP_LOG")
                if log:
                    with open(log, "a") as f:
                        f.write(f"shutdown {os.getpid()}\n")
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    query = parse_qs(scope["query_string"].decode())
    seconds = float(query.get("seconds", ["0"])[0])
    if scope["path"] == "/slow":
        await asyncio.sleep(seconds)
    elif scope["path"] == "/block":
        time.sleep(seconds)
    body = str(os.getpid()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})
