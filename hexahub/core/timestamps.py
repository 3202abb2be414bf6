"""Moments given to the API (`since`, `until`, expiry dates): RFC 3339 text with a time
zone, as the OpenAPI document's `format: date-time` says, and nothing else.

Pydantic alone would also take a bare number (read as Unix seconds) or a time without a
zone (which the server could only guess), so a client could send what the document calls
invalid and have it mean something.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator

_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
EXAMPLE = "2026-01-31T00:00:00Z"


def _rfc3339(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError(f"give a time with its time zone, like {EXAMPLE}")
    # Parsed here, so that models validating strictly (JSON bodies) take it too.
    return datetime.fromisoformat(value.upper())


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
