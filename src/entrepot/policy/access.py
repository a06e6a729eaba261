"""Which models a key may use. Checked on every endpoint, before any upstream is chosen.

A refusal names the models the key may use, so a client that asked for a wrong name learns the
right ones from the error (in its door's own format); the list is bounded, as a configuration
may hold hundreds of aliases.
"""

from __future__ import annotations

from collections.abc import Iterable

from entrepot.exceptions import ModelNotFoundError, PermissionDeniedError
from entrepot.types import ApiKey

SHOWN_MODELS = 20  # at most this many names in an error; the rest are counted


def authorize_model(key: ApiKey | None, alias: str) -> None:
    if key is not None and not key.may_use(alias):
        raise PermissionDeniedError(
            f"key {key.name!r} may not use model {alias[:200]!r}; it may use"
            f" {_listed(key.allowed_models or ())}",
            param="model",
            code="model_not_allowed",
        )


def unknown_model(key: ApiKey | None, alias: str, aliases: Iterable[str]) -> ModelNotFoundError:
    """The 404 for a name no model or route has, naming those this key may use."""
    usable = visible_models(key, list(aliases))
    return ModelNotFoundError(
        f"the model {alias[:200]!r} does not exist or is not configured;"
        f" {'this key' if key else 'you'} may use {_listed(usable)}",
        param="model",
    )


def visible_models(key: ApiKey | None, aliases: list[str]) -> list[str]:
    return [alias for alias in aliases if key is None or key.may_use(alias)]


def _listed(aliases: Iterable[str]) -> str:
    names = [name[:200] for name in aliases]
    if not names:
        return "none"
    shown = ", ".join(names[:SHOWN_MODELS])
    more = len(names) - SHOWN_MODELS
    return f"{shown} (and {more} more: GET /v1/models lists them)" if more > 0 else shown
