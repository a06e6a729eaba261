"""Validation against OpenAI's official OpenAPI spec (shipped in `tests/specs/`).

The spec mixes OpenAPI 3.0's `nullable: true` into 3.1 schemas; it is read the way its authors
mean it — the value may also be null — before handing the schemas to a JSON Schema validator.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.conftest import SPEC_PATH


def read_nullable(node: Any) -> Any:
    """`nullable: true` read as its authors mean it: the value may also be null."""
    if isinstance(node, dict):
        node = {k: read_nullable(v) for k, v in node.items()}
        if node.pop("nullable", False):
            kind = node.get("type")
            if isinstance(kind, str):
                node["type"] = [kind, "null"]
            if "enum" in node and None not in node["enum"]:
                node["enum"] = [*node["enum"], None]
            if "$ref" in node or "anyOf" in node or "oneOf" in node or "allOf" in node:
                node = {"anyOf": [node, {"type": "null"}]}
        return node
    if isinstance(node, list):
        return [read_nullable(v) for v in node]
    return node


@lru_cache(maxsize=1)
def openai_spec() -> dict[str, Any]:
    """OpenAI's description as published, parsed once (with libyaml where it is available)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    spec: dict[str, Any] = yaml.load(SPEC_PATH.read_text(), Loader=loader)
    return spec


@lru_cache(maxsize=1)
def _registry() -> Registry:
    spec = read_nullable(openai_spec())
    resource = Resource.from_contents(spec, default_specification=DRAFT202012)
    return Registry().with_resource("urn:openai", resource)


def validate(instance: Any, schema_name: str) -> None:
    schema = {"$ref": f"urn:openai#/components/schemas/{schema_name}"}
    validator = jsonschema.Draft202012Validator(schema, registry=_registry())
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    if errors:
        details = "; ".join(f"{list(e.path)}: {e.message[:200]}" for e in errors[:5])
        raise AssertionError(f"{schema_name} violated: {details}")
