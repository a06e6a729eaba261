"""Which names a new key's model allow-list may hold: the configured aliases and routes.

A key allowed only a name nothing serves (a typo, a model since renamed) would be refused on every
request with a 403 that looks like a policy decision, far from the mistake. So the name is refused
when the key is made, by this one check, whichever door makes it: the admin API (a JSON error),
the console (a message on the form) and `entrepot keys create` (a message and exit code 2).
"""

from __future__ import annotations

from collections.abc import Iterable

from entrepot.config import Config
from entrepot.exceptions import InvalidRequestError

SHOWN_NAMES = 20  # at most this many configured names in the message; the rest are counted


def check_allowed_models(
    config: Config, allowed: Iterable[str] | None, field: str, param: str
) -> None:
    """Refuse an allow-list naming anything `config` does not serve. `field` is how the door
    calls the list (the message starts with it), `param` the error's parameter."""
    known = config.servable()
    unknown = sorted(set(allowed or ()) - known)
    if not unknown:
        return
    names = ", ".join(repr(name[:200]) for name in unknown[:SHOWN_NAMES])
    raise InvalidRequestError(
        f"{field}: {names}{_more(len(unknown))} not configured; known: {_listed(sorted(known))}",
        param=param,
        code="model_not_found",
    )


def _listed(names: list[str]) -> str:
    return (", ".join(names[:SHOWN_NAMES]) + _more(len(names))) if names else "none"


def _more(count: int) -> str:
    return f" (and {count - SHOWN_NAMES} more)" if count > SHOWN_NAMES else ""
