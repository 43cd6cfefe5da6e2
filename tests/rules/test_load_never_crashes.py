"""Files that used to make the loader raise something other than RulesError (which ended the reload
task for good): every one is now a `file:line:col` problem, and `check` prints no traceback."""

from __future__ import annotations

import codecs
import os
import threading
import time
from pathlib import Path

import pytest

from responder.cli import main
from responder.dingtalk import Message, offline_message
from responder.engine.answer import RENDER_FAILED_TEXT
from responder.rules.files import FileUnstableError, wait_until_settled
from responder.rules.load import load_rules
from responder.rules.model import RulesError
from responder.rules.templates import MAX_TEMPLATE_BYTES
from tests.conftest import offline

RULE = "rules:\n  - {name: hi, keywords: hi, msgtype: markdown, title: t, template: hi.md.j2}\n"


def private_message(text: str) -> Message:
    return offline_message(text, msg_id="m1", conversation_id="c1", nick="n", staff_id="s", is_group=False)


def write(tmp_path: Path, rules: str = RULE, templates: dict[str, bytes] | None = None) -> Path:
    (tmp_path / "templates").mkdir(exist_ok=True)
    for name, content in (templates or {}).items():
        (tmp_path / "templates" / name).write_bytes(content)
    path = tmp_path / "rules.yaml"
    path.write_text(rules, encoding="utf-8")
    return path


def problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(RulesError) as caught:
        load_rules(path, environ or {})
    return [str(p) for p in caught.value.problems]


def test_a_template_saved_in_gbk_is_reported_at_its_first_bad_byte(tmp_path: Path) -> None:
    path = write(tmp_path, templates={"hi.md.j2": "#### 标题\n正文".encode("gbk")})
    (problem,) = problems(path)
    assert problem == f"{tmp_path}/templates/hi.md.j2:1:6: rule 'hi': not UTF-8: save the file as UTF-8"


async def test_a_utf8_bom_is_dropped_so_a_heading_stays_a_heading(tmp_path: Path) -> None:
    path = write(tmp_path, templates={"hi.md.j2": codecs.BOM_UTF8 + "#### 标题".encode()})
    handled = await offline(private_message("hi"), load_rules(path, {}))
    assert handled.reply is not None and handled.reply.text == "#### 标题"


async def test_a_constant_too_big_to_print_loads_and_renders_the_apology(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Jinja used to fold this constant while compiling and fail in repr(): a crash of the loader.
    path = write(tmp_path, "rules:\n  - {name: big, keywords: big, msgtype: text, body: '{{ 10**5000 }}'}\n")
    handled = await offline(private_message("big"), load_rules(path, {}))
    assert handled.reply is not None and handled.reply.text == RENDER_FAILED_TEXT
    assert "render_failed rule=big" in caplog.text


def test_a_symlink_out_of_templates_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2-secret-text", encoding="utf-8")
    path = write(tmp_path)
    os.symlink(secret, tmp_path / "templates" / "hi.md.j2")
    (problem,) = problems(path)
    assert "resolves outside" in problem and "hunter2" not in problem
    assert problem.startswith(f"{tmp_path}/templates/hi.md.j2:1:1: rule 'hi': ")


def test_an_oversized_template_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, templates={"hi.md.j2": b"x" * (MAX_TEMPLATE_BYTES + 1)})
    (problem,) = problems(path)
    assert f"over the limit of {MAX_TEMPLATE_BYTES}" in problem


def test_an_oversized_regex_is_refused_by_the_schema(tmp_path: Path) -> None:
    pattern = "a" * 5000
    path = write(tmp_path, f"rules:\n  - {{name: r, regex: '{pattern}', msgtype: text, body: x}}\n")
    (problem,) = problems(path)
    assert problem.endswith("rule 'r': regex: longer than 4096 characters")


def test_check_prints_every_such_problem_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, templates={"hi.md.j2": "标题".encode("gbk")})
    assert main(["check", "--config", str(path)], environ={}) == 1
    err = capsys.readouterr().err
    assert "not UTF-8" in err and "Traceback" not in err


def test_an_unexpected_error_inside_the_loader_is_still_a_report(tmp_path: Path) -> None:
    # A FIFO instead of a template: not something the loader plans for.
    path = write(tmp_path)
    os.mkfifo(tmp_path / "templates" / "hi.md.j2")
    messages = problems(path)
    assert messages and all("Traceback" not in m for m in messages)


def test_interpolated_values_never_appear_in_problems(tmp_path: Path) -> None:
    rules = (
        "sources:\n  ip:\n    kind: public_ip\n    providers: ['https://${HOST}/']\n"
        "rules:\n  - {name: ip, keywords: ip, source: ip, msgtype: text, body: '{{ source }}'}\n"
    )
    path = write(tmp_path, rules)
    reported = "\n".join(problems(path, {"HOST": "user:s3cr3t-token-value@ip.example"}))
    assert "s3cr3t-token-value" not in reported and "'https://***/'" in reported


# The settle window


def test_a_file_written_in_pieces_is_read_only_once_it_has_been_quiet(tmp_path: Path) -> None:
    target = tmp_path / "rules.yaml"
    target.write_text("start\n", encoding="utf-8")
    finished = threading.Event()

    def writer() -> None:  # appends every 0.1-0.2 s, like an editor saving a big file in chunks
        for i in range(8):
            with target.open("a", encoding="utf-8") as f:
                f.write(f"chunk {i}\n")
            time.sleep(0.1 + 0.1 * (i % 2))  # the writer's own pace, not synchronisation
        finished.set()

    thread = threading.Thread(target=writer)
    thread.start()
    wait_until_settled([target], settle_s=0.5)
    assert finished.is_set()
    thread.join()


def test_a_file_that_never_stops_changing_is_not_loaded(tmp_path: Path) -> None:
    target = tmp_path / "rules.yaml"
    target.write_text("x", encoding="utf-8")
    clock = [time.time()]

    def wait(seconds: float) -> None:  # a fake clock, and a writer that touches the file meanwhile
        clock[0] += seconds
        os.utime(target, (clock[0] - 0.1, clock[0] - 0.1))

    os.utime(target, (clock[0], clock[0]))
    with pytest.raises(FileUnstableError, match="still being written"):
        wait_until_settled([target], settle_s=1.0, max_wait_s=5.0, wall_clock=lambda: clock[0], wait=wait)


def test_an_mtime_in_the_future_does_not_block_a_reload(tmp_path: Path) -> None:
    target = tmp_path / "rules.yaml"
    target.write_text("x", encoding="utf-8")
    future = time.time() + 3600
    os.utime(target, (future, future))
    wait_until_settled([target], settle_s=0.5, max_wait_s=1.0)


def test_a_secret_written_as_an_unquoted_number_is_not_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, "dingtalk:\n  app_secret: 8675309123\nrules: []\n")
    (problem,) = problems(path)
    assert "8675309123" not in problem
    assert problem.endswith("app_secret: YAML reads this unquoted value as number; write it in quotes")
