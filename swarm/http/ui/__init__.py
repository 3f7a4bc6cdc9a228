"""The dashboard: static files served by the API at ``/ui`` (see ``app.js``).

No build step and no CDN: the page works offline, behind a firewall, from the wheel. Every
request it makes goes to the public HTTP API with the key the user typed, kept in the tab's
``sessionStorage`` only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.responses import Response
from starlette.staticfiles import StaticFiles

FOLDER = Path(__file__).parent

SECURITY_HEADERS = {
    # Only this page's own files and the API; no inline script, no framing.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class Dashboard(StaticFiles):
    """The dashboard's files, each answered with :data:`SECURITY_HEADERS`."""

    def __init__(self) -> None:
        super().__init__(directory=FOLDER, html=True)

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(SECURITY_HEADERS)
        return response
