"""The base of every configuration section: a misspelt key is an error rather than silently
ignored, and a loaded configuration cannot be changed behind the back of code that checked it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
