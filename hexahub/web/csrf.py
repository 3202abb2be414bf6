"""CSRF protection for the web forms: the double-submit pattern.

Each browser holds a random token in the `hexahub_csrf` cookie (HttpOnly, SameSite=Strict)
and every form repeats it in a hidden field. A cross-site page can make a browser send the
cookie only under SameSite rules, and can never read it to copy it into the form, so a POST
whose field does not match its cookie did not come from one of our pages.
"""

from __future__ import annotations

import hmac
import re
import secrets
from typing import Annotated

from fastapi import Form, Request
from starlette.responses import Response

CSRF_COOKIE = "hexahub_csrf"
CSRF_FIELD = "csrf_token"
# token_urlsafe(32) gives 43 characters; anything else in the cookie is replaced.
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")


class CsrfRejected(Exception):
    """A form POST without a matching CSRF token (an old page, or another site's form)."""


def _cookie_token(request: Request) -> str | None:
    value = request.cookies.get(CSRF_COOKIE, "")
    return value if _TOKEN_SHAPE.match(value) else None


def csrf_token(request: Request) -> str:
    """The token to put in this response's forms; a new one when the browser has none."""
    token: str | None = getattr(request.state, "csrf_token", None)
    if token is None:
        token = _cookie_token(request)
        if token is None:
            token = secrets.token_urlsafe(32)
            request.state.csrf_cookie_is_new = True
        request.state.csrf_token = token
    return token


def attach_csrf_cookie(request: Request, response: Response, *, secure: bool) -> None:
    """Send the cookie when this response handed out a token the browser does not hold."""
    if getattr(request.state, "csrf_cookie_is_new", False):
        response.set_cookie(
            CSRF_COOKIE,
            request.state.csrf_token,
            path="/",
            secure=secure,
            httponly=True,
            samesite="strict",
        )


async def require_csrf(
    request: Request, csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = ""
) -> None:
    """Dependency for every form POST: the field must equal the cookie."""
    expected = _cookie_token(request)
    if expected is None or not hmac.compare_digest(expected.encode(), csrf_token.encode()):
        raise CsrfRejected()
