"""docs/sources.md stays true: every schema field is documented and every example loads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from responder.sources import KNOWN_KINDS, compile_source

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "sources.md").read_text()
SCHEMA = json.loads((ROOT / "schema" / "rules.schema.json").read_text())
EXAMPLES = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", DOC, re.S)]


@pytest.mark.parametrize("kind", KNOWN_KINDS)
def test_every_field_of_every_kind_is_documented(kind: str) -> None:
    assert f"## `{kind}`" in DOC
    for field in SCHEMA["$defs"][f"source_{kind}"]["properties"]:
        assert f"`{field}`" in DOC, f"{kind}.{field} is missing from docs/sources.md"


@pytest.mark.parametrize("kind", KNOWN_KINDS)
def test_every_kind_schema_is_strict(kind: str) -> None:
    definition = SCHEMA["$defs"][f"source_{kind}"]
    assert definition["additionalProperties"] is False
    assert all(
        "type" in p or "enum" in p or "const" in p or "oneOf" in p for p in definition["properties"].values()
    )


def example_sources() -> list[tuple[str, dict[str, Any]]]:
    return [(n, c) for doc in EXAMPLES for n, c in doc.get("sources", {}).items()]


@pytest.mark.parametrize(("name", "config"), example_sources())
def test_documented_examples_pass_the_schema_and_compile(name: str, config: dict[str, Any]) -> None:
    document = {"rules": [], "sources": {name: config}}
    jsonschema.Draft202012Validator(SCHEMA).validate(document)
    if config["kind"] != "exec":  # the example program may not exist on this machine
        compile_source(name, config)


@pytest.mark.parametrize(
    "config",
    [
        {"kind": "http", "url": "https://{{ args[0] }}.example.com/"},
        {"kind": "http", "url": "https://a.example/", "extra": 1},
        {"kind": "time", "tz": "UTC"},
        {"kind": "exec"},
        {"kind": "exec", "argv": ["/bin/true"], "shell": True},
        {"kind": "system", "paths": ["relative"]},
        {"kind": "public_ip", "family": "ipv5"},
    ],
)
def test_schema_refuses_unknown_or_mistyped_fields(config: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    assert list(validator.iter_errors({"rules": [], "sources": {"s": config}}))
