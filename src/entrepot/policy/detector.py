"""Finds personal data and secrets in what a request would send upstream, so its data class can
be raised before a deployment is chosen.

Only counts per kind leave this module — never the matched values — so findings can be logged,
stored and shown without becoming a leak themselves. The scan runs on every request: patterns are
compiled once, digit runs are matched possessively (no catastrophic backtracking on long inputs),
and structured kinds are confirmed by their checksums rather than by shape alone, since a false
positive here silently reroutes a request to a weaker model.

Phones are the loosest kind and deliberately conservative: a number counts only when it starts
with `+` (international), has the North American `(555) 123-4567` / `555-123-4567` shape, or is a
trunk-prefixed national number (`020 7946 0958`, `01 23 45 67 89`) with one consistent separator;
and it must hold 9–15 digits and not follow another digit group. Bare digit runs (`order
1234567890123`), dates, versions, IP addresses and `1 050 000 000` are therefore not phones — at
the price of missing numbers written without any separator or prefix, and of counting
`+`-numbers that are not phones.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from entrepot.config import DetectorConfig
from entrepot.exceptions import ConfigError

# Scan results of recent texts, oldest evicted first. Short texts are their own key; longer ones
# are keyed by a 128-bit digest so the cache never holds more than a few MB of prompts.
CACHE_ENTRIES = 4096
CACHE_KEY_MAX_CHARS = 1024


@dataclass(frozen=True, slots=True)
class _Pattern:
    kind: str
    regex: re.Pattern[str]
    confirm: Callable[[str], bool] | None = None
    hint: str | None = None  # a substring every match contains: skips the regex when absent


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def _phone(match: str) -> bool:
    return 9 <= len(_digits(match)) <= 15


def _mod97(number: str) -> int:
    return int("".join(str(int(c, 36)) for c in number)) % 97


def _iban(match: str) -> bool:
    """Grouped IBANs can run into a following capitalised word, so shorter groupings are tried."""
    return any(15 <= len(c) <= 34 and _mod97(c[4:] + c[:4]) == 1 for c in _truncations(match, " "))


def _luhn(number: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(number)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _card(match: str) -> bool:
    """Luhn alone passes one random number in ten, so the issuer prefix must be a real one too."""
    for number in _truncations(match, " -"):
        issuer = number[0] in "3456" or 2221 <= int(number[:4]) <= 2720
        if 13 <= len(number) <= 19 and issuer and _luhn(number):
            return True
    return False


def _truncations(match: str, separators: str) -> Iterator[str]:
    """The match without separators, then cut back one separated group at a time."""
    groups = re.split(f"[{re.escape(separators)}]", match)
    for end in range(len(groups), 0, -1):
        yield "".join(groups[:end])


_CN_WEIGHTS = [pow(2, 17 - i, 11) for i in range(17)]


def _cn_resident_id(match: str) -> bool:
    """ISO 7064 MOD 11-2 check character."""
    total = sum(int(c) * w for c, w in zip(match[:17], _CN_WEIGHTS, strict=True))
    return "10X98765432"[total % 11] == match[17].upper()


def _french_nir(match: str) -> bool:
    """Key = 97 − (first 13 digits mod 97); Corsica's 2A/2B count as 19/18 for the key."""
    compact = match.replace(" ", "").upper()
    number = compact[:13].replace("2A", "19", 1).replace("2B", "18", 1)
    return 97 - int(number) % 97 == int(compact[13:])


def _rx(lead: str, rest: str, *, left: tuple[str, ...] = (), right: str = "") -> re.Pattern[str]:
    """`lead + rest`, preceded by none of `left` (one character each) and not followed by `right`.

    `lead` — one character class or a literal — comes first so that sre jumps between candidate
    positions in C instead of attempting the pattern at every character, which is most of what a
    scan costs; that is why the left boundary is checked after it, not before.
    """
    is_class = lead.startswith("[")
    width = 1 if is_class else len(lead)
    behind = "".join(f"(?<!{before}.{{{width}}})" for before in left)
    ahead = f"(?!{right})" if right else ""
    head = lead if is_class else re.escape(lead)
    return re.compile(f"{head}{behind}(?:{rest}){ahead}", re.ASCII)


def _word(lead: str, rest: str) -> re.Pattern[str]:
    return _rx(lead, rest, left=(r"\w",), right=r"\w")


def _token(lead: str, rest: str) -> re.Pattern[str]:
    """Not part of a longer hyphenated or underscored token either."""
    return _rx(lead, rest, left=(r"[\w-]",), right=r"[\w-]")


def _number(lead: str, rest: str) -> re.Pattern[str]:
    """Not inside a word, a decimal, a date or a path, nor after another group of digits."""
    return _rx(lead, rest, left=(r"[\w+./-]", r"\d[ .,]"), right=r"[\w-]|[.,/:]\d")


_LOCAL_PART = "[A-Za-z0-9._%+-]"
_API_KEYS = {  # prefix → rest; `sk-` needs a digit, or `sk-learn-compatible-estimators` counts
    "sk-": r"(?=[A-Za-z_-]*\d)[\w-]{20,}",
    "ek-": r"[\w-]{40,}",
    "AKIA": r"[0-9A-Z]{16}",
    "gh": r"[opsur]_[A-Za-z0-9]{36,255}",
    "github_pat_": r"\w{22,255}",
    "xox": r"[abprs]-[A-Za-z0-9-]{10,}",
    "AIza": r"[\w-]{35}",
}

_BUILTIN: tuple[_Pattern, ...] = (
    _Pattern(
        "email",
        _rx(
            _LOCAL_PART,
            _LOCAL_PART + r"{0,63}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,63}",
            left=(_LOCAL_PART,),
            right=r"\w",
        ),
        hint="@",
    ),
    # Phones: international; North American with area code in brackets, plain, or after `1`;
    # trunk-prefixed national numbers with one consistent separator.
    _Pattern("phone", _number("+", r"\d++(?:[ .-]?\(\d++\)[ .-]?\d++|[ .-]\d++)*"), _phone),
    _Pattern("phone", _number("(", r"[2-9]\d{2}\)[ .-]?\d{3}[ .-]\d{4}")),
    _Pattern("phone", _number("[2-9]", r"\d{2}([ .-])\d{3}\1\d{4}")),
    _Pattern(
        "phone",
        _number("1", r"([ .-])[2-9]\d{2}\1\d{3}\1\d{4}|[ .-]?\([2-9]\d{2}\)[ .-]?\d{3}[ .-]\d{4}"),
    ),
    _Pattern("phone", _number("0", r"[1-9]\d*+([ .-])\d{2,}+(?:\1\d{2,}+)*"), _phone),
    _Pattern("iban", _word("[A-Z]", r"[A-Z]\d{2}(?: ?[A-Z0-9]){11,30}"), _iban),
    _Pattern(
        "card", _rx("[2-6]", r"\d(?:[ -]?\d){11,17}", left=(r"[\w+-]",), right=r"[\w-]"), _card
    ),
    _Pattern(  # US SSN; never-issued areas (000, 666, 9xx), groups and serials excluded
        "national_id", _token("[0-8]", r"\d{2}(?<!000|666)-(?!00)\d{2}-(?!0000)\d{4}")
    ),
    _Pattern(  # UK National Insurance number; unallocated prefixes excluded
        "national_id",
        _word(
            "[A-CEGHJ-PR-TW-Z]",
            r"[A-CEGHJ-NPR-TW-Z](?<!BG|GB|KN|NK|NT|TN|ZZ) ?\d{2} ?\d{2} ?\d{2} ?[A-D]",
        ),
    ),
    _Pattern(  # Chinese resident identity card: region, birth date, sequence, check
        "national_id",
        _word(
            "[1-9]", r"\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]"
        ),
        _cn_resident_id,
    ),
    _Pattern(  # French NIR (numéro de sécurité sociale)
        "national_id",
        _word(
            "[12]", r" ?\d{2} ?(?:0[1-9]|1[0-2]|[2-9]\d) ?(?:\d{2}|2[ABab]) ?\d{3} ?\d{3} ?\d{2}"
        ),
        _french_nir,
    ),
    *(_Pattern("api_key", _token(prefix, rest)) for prefix, rest in _API_KEYS.items()),
    _Pattern("private_key", _rx("-----BEGIN ", r"(?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
)


class PiiDetector:
    def __init__(self, config: DetectorConfig) -> None:
        self._enabled = config.enabled
        kinds = set(config.kinds)
        self._patterns = [p for p in _BUILTIN if p.kind in kinds]
        for name, source in config.custom.items():
            try:
                regex = re.compile(source)
            except re.error as exc:
                raise ConfigError(
                    f"policy.detector.custom.{name}: invalid regular expression: {exc}"
                ) from None
            self._patterns.append(_Pattern(f"custom:{name}", regex))
        self._cache: dict[str | bytes, tuple[tuple[str, int], ...]] = {}

    def scan(self, body: dict[str, Any]) -> dict[str, int]:
        """Counts per kind, for kinds found at least once; the values themselves are dropped.

        Texts are scanned one by one (newlines stop every pattern, so nothing matches across
        two texts anyway) and each distinct text once while it stays in a bounded cache: a
        system prompt and the conversation so far are re-sent on every turn of a chat."""
        if not self._enabled or not self._patterns:
            return {}
        counts: dict[str, int] = {}
        for text in _outbound_texts(body):
            for kind, found in self._scan_text(text):
                counts[kind] = counts.get(kind, 0) + found
        return counts

    def _scan_text(self, text: str) -> tuple[tuple[str, int], ...]:
        key: str | bytes = text
        if len(text) > CACHE_KEY_MAX_CHARS:
            key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        counts: dict[str, int] = {}
        for pattern in self._patterns:
            if pattern.hint is not None and pattern.hint not in text:
                continue
            found = sum(
                1
                for m in pattern.regex.finditer(text)
                if pattern.confirm is None or pattern.confirm(m.group())
            )
            if found:
                counts[pattern.kind] = counts.get(pattern.kind, 0) + found
        if len(self._cache) >= CACHE_ENTRIES:
            del self._cache[next(iter(self._cache))]
        result = self._cache[key] = tuple(counts.items())
        return result


def _outbound_texts(body: dict[str, Any]) -> Iterator[str]:
    """Every free-text field of a chat, completion or embeddings request — including a previous
    answer's reasoning, which the Responses and Messages surfaces send back on a tool turn, and
    tool descriptions, which a client may fill from its own data."""
    for message in _list(body.get("messages")):
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            yield content
        yield from _strings(message.get("reasoning_content"))
        for part in _list(content):
            if isinstance(part, dict) and part.get("type") == "text":
                yield from _strings(part.get("text"))
        calls = [c.get("function") for c in _list(message.get("tool_calls")) if isinstance(c, dict)]
        for function in [*calls, message.get("function_call")]:
            if isinstance(function, dict):
                yield from _strings(function.get("arguments"))
    for tool in _list(body.get("tools")):
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict):
            yield from _strings(function.get("description"))
    for field in ("prompt", "input"):
        value = body.get(field)
        yield from _strings(value)
        for item in _list(value):
            yield from _strings(item)


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
