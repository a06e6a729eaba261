"""The canary sets shipped with the package: versioned, since a fingerprint compares only with
answers to the very same prompts under the very same settings."""

from __future__ import annotations

from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from entrepot.exceptions import ConfigError

CURRENT = "v1"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(ge=0)
    seed: int
    max_tokens: int = Field(ge=1)


class Canary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64)
    prompt: str = Field(min_length=1)


class CanarySet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str
    settings: Settings
    canaries: list[Canary] = Field(min_length=2)

    def body(self, canary: Canary) -> dict[str, object]:
        """The request for one canary: the same for every model, every time."""
        settings = self.settings
        return {
            "messages": [{"role": "user", "content": canary.prompt}],
            "temperature": settings.temperature,
            "seed": settings.seed,
            "max_tokens": settings.max_tokens,
        }


def load(version: str = CURRENT) -> CanarySet:
    """A shipped set by version (`v1`): an unknown version is the user's mistake, named."""
    source = resources.files("entrepot.fingerprint").joinpath(f"canaries_{version}.yaml")
    if not source.is_file():
        raise ConfigError(f"no canary set {version!r} (shipped: {', '.join(shipped())})")
    try:
        loaded = CanarySet.model_validate(yaml.safe_load(source.read_text(encoding="utf-8")))
    except ValidationError as exc:  # a broken package, not a user's input
        raise ConfigError(f"canaries_{version}.yaml: {exc}") from None
    if loaded.version != version:
        raise ConfigError(f"canaries_{version}.yaml says it is version {loaded.version!r}")
    return loaded


def shipped() -> list[str]:
    folder = resources.files("entrepot.fingerprint")
    names = [entry.name for entry in folder.iterdir()]
    prefix, suffix = "canaries_", ".yaml"
    return sorted(n[len(prefix) : -len(suffix)] for n in names if n.startswith(prefix))
