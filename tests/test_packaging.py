"""The distribution's name, version lookup and license agree with pyproject.toml."""

from __future__ import annotations

import tomllib
from importlib.metadata import metadata

import responder
from tests.conftest import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_version_is_looked_up_under_the_distributions_own_name() -> None:
    # `responder` on PyPI is an unrelated project; a lookup under that name would find nothing
    # here (or, worse, the other project's version) and `about` would show 0.0.0+unknown.
    assert PROJECT["name"] == responder.DISTRIBUTION == "dingtalk-responder"
    assert responder.__version__ == PROJECT["version"]
    assert metadata(responder.DISTRIBUTION)["Name"] == "dingtalk-responder"


def test_the_command_keeps_its_name() -> None:
    assert PROJECT["scripts"] == {"responder": "responder.cli:main"}


def test_the_license_file_matches_the_metadata() -> None:
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert PROJECT["license"] == "MIT"
    assert text.startswith("MIT License\n\nCopyright (c) the responder authors\n")
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text
