"""The base of every JSON request body model."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class JsonBody(BaseModel):
    """A JSON request body. Fields it does not declare are refused, and values are taken
    as JSON types them: "1" is no number and 0 no boolean, so a body the OpenAPI document
    calls invalid is refused rather than guessed at. (Moments, text in JSON, are
    hexahub.core.timestamps.Timestamp.)"""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _whole_numbers(cls, data: Any) -> Any:
        # JSON has one kind of number: 8.0 is the integer 8, as JSON Schema counts it,
        # while strict validation would refuse it for an int field.
        if not isinstance(data, dict):
            return data
        return {
            name: int(value) if isinstance(value, float) and value.is_integer() else value
            for name, value in data.items()
        }
