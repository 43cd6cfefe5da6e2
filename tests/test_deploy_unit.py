"""deploy/responder.service: readiness by sd_notify, no restart loop on a bad configuration, and a
unit systemd itself accepts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from responder.cli import EXIT_CONFIG
from tests.conftest import REPO

UNIT = REPO / "deploy" / "responder.service"
INSTALLED_COMMAND = "/opt/responder/bin/responder"


def service_settings() -> dict[str, list[str]]:
    """`[Service]` keys to their values, in order (systemd allows a key several times)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_started_means_listening_through_sd_notify() -> None:
    settings = service_settings()
    assert settings["Type"] == ["notify"]
    assert settings["NotifyAccess"] == ["main"]
    assert "AF_UNIX" in settings["RestrictAddressFamilies"][0].split()  # the READY=1 datagram


def test_a_configuration_error_is_not_restarted_in_a_loop() -> None:
    settings = service_settings()
    assert settings["Restart"] == ["on-failure"]
    assert settings["RestartPreventExitStatus"] == [str(EXIT_CONFIG)]


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    responder = shutil.which("responder")
    if analyze is None or responder is None:
        pytest.skip("needs systemd-analyze and an installed responder command")
    # The unit names the command where docs/deployment.md installs it; verify needs one that exists.
    unit = tmp_path / "responder.service"
    unit.write_text(UNIT.read_text(encoding="utf-8").replace(INSTALLED_COMMAND, responder), encoding="utf-8")
    verified = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # verify exits 0 even for an unknown Type= or a misspelt key; it only warns.
    assert (verified.returncode, verified.stdout + verified.stderr) == (0, "")
