"""`responder check` on broken files: every problem listed as PATH:LINE:COL: message, exit code 1.

Each file in tests/rules/broken/ states what check must say about it in `# expect [FILE:]LINE:COL: text`
comment lines (FILE, when given, is relative to tests/rules/broken/). The test demands exactly those
problems, in that order, each at that position and each message containing that text.
Files that cannot be written by hand (too large, not UTF-8, empty, an alias bomb) are made here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from responder.cli import main

ROOT = Path(__file__).resolve().parents[2]
BROKEN = Path(__file__).resolve().parent / "broken"
_EXPECT = re.compile(r"^# expect (?:(?P<file>[^:\s]+):)?(?P<line>\d+):(?P<col>\d+): (?P<text>.+)$")
_REPORTED = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<message>.*)$")
SECRET = "hunter2-do-not-print-me"


@dataclass(frozen=True, slots=True)
class Reported:
    file: str
    line: int
    column: int
    message: str


@dataclass(frozen=True, slots=True)
class CheckRun:
    code: int
    out: str
    err: str

    @property
    def problems(self) -> list[Reported]:
        found = (_REPORTED.match(line) for line in self.err.splitlines())
        return [Reported(m["file"], int(m["line"]), int(m["col"]), m["message"]) for m in found if m]


def run_check(
    capsys: pytest.CaptureFixture[str], path: Path, environ: dict[str, str] | None = None
) -> CheckRun:
    code = main(["check", "--config", str(path)], environ={} if environ is None else environ)
    captured = capsys.readouterr()
    return CheckRun(code, captured.out, captured.err)


def expectations(path: Path) -> list[tuple[str, int, int, str]]:
    found = (_EXPECT.match(line) for line in path.read_text(encoding="utf-8").splitlines())
    return [
        (str(BROKEN / m["file"]) if m["file"] else str(path), int(m["line"]), int(m["col"]), m["text"])
        for m in found
        if m
    ]


def assert_reports_exactly(run: CheckRun, path: Path) -> None:
    expected = expectations(path)
    assert expected, f"{path.name} has no '# expect' lines"
    assert run.code == 1
    assert run.out == ""
    got = [(p.file, p.line, p.column) for p in run.problems]
    assert got == [e[:3] for e in expected], run.err
    for problem, (*_, text) in zip(run.problems, expected, strict=True):
        assert text in problem.message
    assert run.err.splitlines()[-1] == f"{path}: {len(expected)} problem(s)"


BROKEN_FILES = [
    "yaml_syntax.yaml",
    "duplicate_key.yaml",
    "anchor_alias.yaml",
    "several_documents.yaml",
    "unknown_key.yaml",
    "wrong_msgtype.yaml",
    "two_match_kinds.yaml",
    "no_match_kind.yaml",
    "yaml11_scalars.yaml",
    "duplicate_rule_name.yaml",
    "two_fallbacks.yaml",
    "unknown_source.yaml",
    "bad_regex.yaml",
    "regex_re2_refuses.yaml",
    "jinja_inline_block.yaml",
    "jinja_template_file.yaml",
    "template_missing.yaml",
    "on_error_without_source.yaml",
    "three_problems.yaml",
    "schema_problems.yaml",
    "missing_msgtype.yaml",
    "yaml11_in_list.yaml",
    "empty_word_list.yaml",
    "jinja_folded_block.yaml",
    "actioncard_without_button.yaml",
    "key_not_for_msgtype.yaml",
]


@pytest.mark.parametrize("name", BROKEN_FILES)
def test_broken_file_reports_every_problem_at_its_position(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    path = BROKEN / name
    assert_reports_exactly(run_check(capsys, path), path)


def test_broken_fixtures_all_state_their_expectations() -> None:
    listed = {str(p.values[0]) if isinstance(p, pytest.ParameterSet) else p for p in BROKEN_FILES}
    on_disk = {p.name for p in BROKEN.glob("*.yaml")}
    assert listed == on_disk
    assert all(expectations(BROKEN / name) for name in on_disk)


def test_file_with_three_problems_lists_three(capsys: pytest.CaptureFixture[str]) -> None:
    run = run_check(capsys, BROKEN / "three_problems.yaml")
    assert run.code == 1
    assert len(run.problems) == 3
    assert [p.line for p in run.problems] == [10, 11, 16]


def test_duplicate_rule_name_points_at_second_and_names_first_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = run_check(capsys, BROKEN / "duplicate_rule_name.yaml")
    (problem,) = run.problems
    assert (problem.line, problem.column) == (7, 11)
    assert "'ip'" in problem.message
    assert "line 3" in problem.message


def test_bad_regex_quotes_what_re2_refused(capsys: pytest.CaptureFixture[str]) -> None:
    run = run_check(capsys, BROKEN / "bad_regex.yaml")
    (problem,) = run.problems
    assert problem.message == "rule 'deploy': regex: missing ): ^deploy(?P<env>prod|test"


def test_regex_errors_reach_stderr_only_as_problem_lines(capfd: pytest.CaptureFixture[str]) -> None:
    # capfd reads file descriptor 2 itself, where RE2's C++ logging would write.
    path = BROKEN / "regex_re2_refuses.yaml"
    assert main(["check", "--config", str(path)], environ={}) == 1
    captured = capfd.readouterr()
    *problems, summary = captured.err.splitlines()
    assert summary == f"{path}: 11 problem(s)"
    assert [line.split(": rule ")[0] for line in problems] == [
        f"{path}:{line}:{column}" for _, line, column, _ in expectations(path)
    ]


def test_jinja_error_in_block_scalar_is_placed_on_its_own_file_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = run_check(capsys, BROKEN / "jinja_inline_block.yaml")
    (problem,) = run.problems
    assert problem.line == 9
    assert "{{ text | }}" in (BROKEN / "jinja_inline_block.yaml").read_text().splitlines()[problem.line - 1]
    assert "rule 'greet'" in problem.message


def test_jinja_error_in_template_file_names_template_path_and_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = run_check(capsys, BROKEN / "jinja_template_file.yaml")
    (problem,) = run.problems
    assert problem.file == str(BROKEN / "templates" / "broken_syntax.md.j2")
    assert problem.line == 3
    assert "rule 'status'" in problem.message


@pytest.mark.parametrize("name", ["unknown_key.yaml", "wrong_msgtype.yaml", "two_match_kinds.yaml"])
def test_schema_problem_inside_a_rule_names_the_rule(capsys: pytest.CaptureFixture[str], name: str) -> None:
    run = run_check(capsys, BROKEN / name)
    assert run.problems
    assert all("'ip'" in p.message for p in run.problems)


def test_alias_bomb_is_rejected_quickly(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    path = tmp_path / "rules.yaml"
    path.write_text("\n".join([*lines, "rules: []", ""]), encoding="utf-8")
    started = time.monotonic()
    run = run_check(capsys, path)
    assert time.monotonic() - started < 2.0
    assert run.code == 1
    assert [(p.line, p.column) for p in run.problems] == [(1, 5)]
    assert "anchors (&name) are not allowed" in run.problems[0].message


def test_alias_without_anchor_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - *elsewhere\n", encoding="utf-8")
    run = run_check(capsys, path)
    assert run.code == 1
    assert [(p.line, p.column) for p in run.problems] == [(2, 5)]
    assert "aliases (*name) are not allowed" in run.problems[0].message


def test_file_over_one_mebibyte_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules: []\n#" + "x" * (1024 * 1024) + "\n", encoding="utf-8")
    run = run_check(capsys, path)
    assert run.code == 1
    (problem,) = run.problems
    assert (problem.file, problem.line, problem.column) == (str(path), 1, 1)
    assert "larger than 1048576 bytes" in problem.message


def test_non_utf8_file_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes("rules:\n  - name: café\n".encode("latin-1"))
    run = run_check(capsys, path)
    assert run.code == 1
    (problem,) = run.problems
    assert "not UTF-8" in problem.message


def test_non_utf8_file_points_at_the_bad_byte(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes("rules:\n  - name: café\n".encode("latin-1"))
    (problem,) = run_check(capsys, path).problems
    assert (problem.line, problem.column) == (2, 14)


@pytest.mark.parametrize(
    "content", ["", "\n\n", "# nothing but a comment\n"], ids=["empty", "blank", "comment"]
)
def test_empty_file_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(content, encoding="utf-8")
    run = run_check(capsys, path)
    assert run.code == 1
    assert [(p.line, p.column, p.message) for p in run.problems] == [(1, 1, "the file is empty")]


def test_missing_file_is_reported(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = run_check(capsys, tmp_path / "absent.yaml")
    assert run.code == 1
    (problem,) = run.problems
    assert "cannot read" in problem.message


_ENV_RULES = """\
dingtalk:
  mode: stream
  app_secret: ${DINGTALK_APP_SECRET}
  client_id: ${DINGTALK_CLIENT_ID}
  client_secret: ${DINGTALK_CLIENT_SECRET}
rules:
  - name: ip
    keywords: ip
    msgtype: text
    body: hello
"""


def test_missing_env_var_is_named_and_no_secret_is_printed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(_ENV_RULES, encoding="utf-8")
    environ = {"DINGTALK_APP_SECRET": SECRET, "DINGTALK_CLIENT_ID": SECRET + "-id"}
    run = run_check(capsys, path, environ)
    assert run.code == 1
    assert [(p.line, p.column) for p in run.problems] == [(5, 18)]
    assert "DINGTALK_CLIENT_SECRET is not set" in run.problems[0].message
    assert SECRET not in run.out + run.err


def test_bundled_rules_pass_with_one_line_summary(capsys: pytest.CaptureFixture[str]) -> None:
    run = run_check(capsys, ROOT / "rules.yaml", {"DINGTALK_APP_SECRET": SECRET})
    assert run.code == 0
    assert run.err == ""
    (line,) = run.out.splitlines()
    assert line.startswith(f"{ROOT / 'rules.yaml'}: OK, 7 rules, 1 sources, 2 pushes")
    assert SECRET not in run.out


@pytest.mark.slow
def test_check_subprocess_exits_1_and_lists_every_problem() -> None:
    path = BROKEN / "three_problems.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DINGTALK")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "responder", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=30,
        check=False,
    )
    assert_reports_exactly(CheckRun(done.returncode, done.stdout, done.stderr), path)
