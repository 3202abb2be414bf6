"""What can go wrong with a local model, with the HTTP status each failure deserves.

The gateway's `local` provider turns these into UpstreamError; `retryable` failures let the
router retry or fall back to another deployment.
"""

from __future__ import annotations


class LocalModelError(Exception):
    status = 500
    error_type = "api_error"
    retryable = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class InvalidRequest(LocalModelError):
    """The request cannot be served by this model as asked (too long, unsupported field)."""

    status = 400
    error_type = "invalid_request_error"


class ModelNotFound(LocalModelError):
    status = 404
    error_type = "not_found_error"


class ModelUnavailable(LocalModelError):
    """The model cannot be loaded: a package or file is missing, the file is corrupt.

    Retryable so that a model with fallbacks falls back; the worker remembers the failure
    until the file changes, so retries cost nothing."""

    status = 503
    error_type = "model_unavailable"
    retryable = True


class Busy(LocalModelError):
    """The model's queue has no room (503), or this caller's share of it is used (429)."""

    status = 503
    error_type = "overloaded_error"
    retryable = True


class CallerBusy(Busy):
    status = 429
    error_type = "rate_limit_error"


class InferenceFailed(LocalModelError):
    status = 500
    error_type = "api_error"
    retryable = True
