# laurelin.asgi.errors — the small HTML error pages the server answers with in the app's place.
#
# Same shape as Daphne's pages (`text/html; charset=utf-8`, a title, a heading and one sentence),
# so proxies and users see the same thing after a switch. Built once per status, then reused.
from __future__ import annotations

from functools import cache
from http import HTTPStatus

_EXPLANATIONS = {
    400: "The request could not be understood by the server.",
    403: "The server refused the request.",
    404: "The requested resource was not found.",
    405: "The request method is not supported.",
    408: "The request was not received in time.",
    413: "The request body is larger than the server accepts.",
    414: "The request target is longer than the server accepts.",
    431: "The request header fields are larger than the server accepts.",
    500: "The server encountered an internal error and could not complete the request.",
    503: "The server cannot answer this request right now; try again later.",
    505: "The HTTP version of the request is not supported.",
}


def reason_phrase(status: int) -> str:
    """The standard reason phrase for `status`, or "" for unknown codes."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


@cache
def error_page(status: int) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body of the server's own response for `status` (the list is shared: copy it
    before changing it)."""
    title = f"{status} {reason_phrase(status)}".strip()
    text = _EXPLANATIONS.get(status, "")
    body = (
        "<!DOCTYPE html>\n<html><head><title>"
        f"{title}</title></head><body><h1>{title}</h1><p>{text}</p>"
        "<footer>laurelin</footer></body></html>\n"
    ).encode()
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    return headers, body
