# laurelin.supervisor — process-level concerns: logging set-up, the event loop, signals, exit codes.
#
# It turns a Config into a running server and an exit status, and knows nothing of HTTP:
# SIGTERM / SIGINT start a graceful drain; a second SIGINT exits at once. Every start-up failure
# is one CRITICAL line and a non-zero exit, never a traceback.
from __future__ import annotations

from laurelin.supervisor.single import run_from_config

__all__ = ["run_from_config"]
