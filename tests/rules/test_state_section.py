"""rules.yaml's `state:` section: defaults, ${VAR}s, problems at their line that never echo the
URL or its password, the password kept out of logs, and a change reported as restart_required."""

from __future__ import annotations

from pathlib import Path

import pytest

from responder.rules.load import load_rules
from responder.rules.model import RulesError
from responder.rules.store import RuleStore

PASSWORD = "s3cr3t-redis-password"
RULES = "rules:\n  - {name: help, keywords: help, msgtype: text, body: help}\n"


def write(tmp_path: Path, state: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(state + RULES, encoding="utf-8")
    return path


def problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(RulesError) as caught:
        load_rules(path, environ or {})
    return [str(p) for p in caught.value.problems]


def test_without_a_state_section_the_backend_is_memory(tmp_path: Path) -> None:
    state = load_rules(write(tmp_path, ""), {}).state
    assert (state.backend, state.shared, state.key_prefix) == ("memory", False, "responder:")
    assert (state.timeout_s, state.connect_timeout_s) == (0.25, 1.0)


def test_the_url_comes_from_the_environment_and_its_password_becomes_a_secret(tmp_path: Path) -> None:
    path = write(tmp_path, "state:\n  backend: redis\n  url: ${REDIS_URL}\n  key_prefix: 'bot1:'\n")
    ruleset = load_rules(path, {"REDIS_URL": f"redis://:{PASSWORD}@redis.internal:6379/1"})
    assert ruleset.state.shared and ruleset.state.key_prefix == "bot1:"
    assert PASSWORD in ruleset.secrets
    assert PASSWORD not in repr(ruleset.state)


def test_a_password_written_in_the_file_is_a_secret_too(tmp_path: Path) -> None:
    path = write(tmp_path, f"state:\n  backend: redis\n  url: 'redis://user:{PASSWORD}@h:6379'\n")
    assert PASSWORD in load_rules(path, {}).secrets


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://:PW@h:6379", "state.url must start with redis:// or rediss://"),
        ("redis://:PW@h:99999", "state.url is not a valid URL"),
        ("redis://:PW@/0", "state.url names no host"),
        ("redis://:PW@h:6379/zero", "state.url has a path that is not a database number"),
        ("redis://:PW@h:6379/0?ssl_cert_reqs=none", "state.url must not have ?options"),
    ],
)
def test_a_bad_url_is_placed_at_its_line_and_never_echoed(tmp_path: Path, url: str, expected: str) -> None:
    password = PASSWORD + url[:4]
    path = write(tmp_path, "state:\n  backend: redis\n  url: ${REDIS_URL}\n")
    [problem] = problems(path, {"REDIS_URL": url.replace("PW", password)})
    assert problem.startswith(f"{path}:3:8: {expected}")
    assert password not in problem and "h:6379" not in problem


def test_redis_without_a_url_is_refused_at_backend(tmp_path: Path) -> None:
    path = write(tmp_path, "state:\n  backend: redis\n")
    assert problems(path) == [f"{path}:2:12: state.backend redis needs state.url (redis://HOST:PORT/DB)"]


def test_a_url_with_backend_memory_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "state:\n  url: redis://h:6379\n")
    [problem] = problems(path)
    assert problem.startswith(f"{path}:2:8: state.url is read only with backend: redis")


def test_schema_problems_in_state_never_echo_the_value(tmp_path: Path) -> None:
    path = write(tmp_path, f"state:\n  backend: redis\n  url: 12345678\n  key_prefix: '{PASSWORD} x'\n")
    found = problems(path)
    assert len(found) == 2 and not any(PASSWORD in p or "12345678" in p for p in found)
    assert found[0].startswith(f"{path}:3:8: state.url: ")


def test_a_typo_gets_the_nearest_key(tmp_path: Path) -> None:
    path = write(tmp_path, "state:\n  backend: redis\n  url: redis://h\n  timeout: 1\n")
    [problem] = problems(path)
    assert "unknown key 'timeout' (did you mean 'timeout_s'?)" in problem


async def test_a_reload_that_changes_state_is_restart_required(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    environ = {"REDIS_URL": "redis://127.0.0.1:6379/0"}
    store = RuleStore(load_rules(path, environ), environ, settle_s=0)
    path.write_text("state:\n  backend: redis\n  url: ${REDIS_URL}\n" + RULES, encoding="utf-8")
    status = await store.reload()
    assert status.last_ok and status.restart_required == ("state.backend", "state.url")
    assert store.running_state.backend == "memory"
