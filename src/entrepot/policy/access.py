"""Which models a key may use. Checked on every endpoint, before any upstream is chosen."""

from __future__ import annotations

from entrepot.exceptions import PermissionDeniedError
from entrepot.types import ApiKey


def authorize_model(key: ApiKey | None, alias: str) -> None:
    if key is not None and not key.may_use(alias):
        raise PermissionDeniedError(
            f"key {key.name!r} may not use model {alias[:200]!r}",
            param="model",
            code="model_not_allowed",
        )


def visible_models(key: ApiKey | None, aliases: list[str]) -> list[str]:
    return [alias for alias in aliases if key is None or key.may_use(alias)]
