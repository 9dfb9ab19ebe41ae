"""The console: web pages at /ui for the team lead, the analyst and the reviewer, served by
the API process through the same services as the REST API (app/web/pages.py)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from app.web import pages
from app.web.security import CsrfRefused, SignInNeeded

STATIC = Path(__file__).parent / "static"


def mount_console(app: FastAPI, error_hook: str) -> None:
    """The pages, their static files (vendored: nothing from a CDN), `/` sent to `/ui`, and the
    console's answers to its own errors (`error_hook`: the app.state attribute app/api/errors.py
    calls for paths under /ui)."""
    app.include_router(pages.router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="console-static")
    setattr(app.state, error_hook, pages.render_error)

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/ui", status_code=307)

    @app.exception_handler(SignInNeeded)
    async def _sign_in(request: Request, exc: SignInNeeded) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        query = f"next={pages.quote(target)}" + ("&expired=1" if exc.expired else "")
        if request.headers.get("HX-Request"):  # htmx: a full page load, not a swapped fragment
            return Response(status_code=204, headers={"HX-Redirect": f"/ui/login?{query}"})
        return RedirectResponse(f"/ui/login?{query}", status_code=303)

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, _: CsrfRefused) -> Response:
        return pages.render_error(request, 403, pages.words(request)("error.csrf"))
