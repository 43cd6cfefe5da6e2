"""The distribution's name, version and license agree with pyproject.toml and the installed metadata."""

from __future__ import annotations

import tomllib
from importlib.metadata import metadata

import responder
from tests.conftest import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_the_version_is_the_one_the_distribution_is_built_with() -> None:
    # `responder` on PyPI is an unrelated project: the distribution has a name of its own.
    assert PROJECT["name"] == responder.DISTRIBUTION == "dingtalk-responder"
    assert responder.__version__ == PROJECT["version"]
    installed = metadata(responder.DISTRIBUTION)
    assert (installed["Name"], installed["Version"]) == ("dingtalk-responder", responder.__version__)


def test_the_command_keeps_its_name() -> None:
    assert PROJECT["scripts"] == {"responder": "responder.cli:main"}


def test_the_license_file_matches_the_metadata() -> None:
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert PROJECT["license"] == "MIT"
    assert text.startswith("MIT License\n\nCopyright (c) the responder authors\n")
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text
