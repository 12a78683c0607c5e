# pid_app, but its lifespan startup forks a child that sleeps (as an app starting a process with
# multiprocessing's fork method does): the child inherits every descriptor of the worker.
import os
import time

from pid_app import app as pid_app


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        if os.fork() == 0:
            time.sleep(20)
            os._exit(0)
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    await pid_app(scope, receive, send)
