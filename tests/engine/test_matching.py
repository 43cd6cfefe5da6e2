"""Which rule answers a message: normalisation, the trigger kinds, case, whole words, precedence,
scopes, non-text messages and explain(). Rules are written as YAML and loaded through load_rules."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]

import pytest

from responder.dingtalk import Message, parse_message
from responder.engine.matching import Match, Matcher, normalise
from responder.rules.load import load_rules
from responder.rules.model import RulesError, RuleSet

SAMPLES = Path(__file__).resolve().parents[1] / "samples"

_RULES = """\
rules:
  - name: ip
    keywords: [ip, 公网ip, myip]
    msgtype: text
    body: ip
  - name: deploy
    keywords: Deploy
    case_sensitive: true
    msgtype: text
    body: deploy
  - name: weather
    command: [weather, 天气]
    msgtype: text
    body: weather
  - name: release
    regex: "^release (?P<env>prod|test)(?: (?P<version>v[0-9.]+))?$"
    msgtype: text
    body: release
  - name: mentions-ip
    contains: [ip, ip address]
    msgtype: text
    body: contains ip
  - name: help
    contains: 帮助
    msgtype: text
    body: help
  - name: unknown
    fallback: true
    msgtype: text
    body: what?
"""


def fw(text: str) -> str:
    """`text` in full-width form, as Chinese input methods type it: ASCII +0xFEE0, space U+3000."""
    return "".join("\u3000" if c == " " else chr(ord(c) + 0xFEE0) for c in text)


def ruleset_from(tmp_path: Path, text: str) -> RuleSet:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    # content= skips only the settle-and-reread of the file (covered by test_loader), not the checks.
    return load_rules(path, {}, content=path.read_bytes())


@pytest.fixture
def matcher(tmp_path: Path) -> Matcher:
    return ruleset_from(tmp_path, _RULES).matcher


def message(
    text: str,
    *,
    group: bool = True,
    admin: bool = False,
    staff_id: str = "user123",
    conversation: str = "cidGROUP",
    msgtype: str = "text",
) -> Message:
    return Message(
        msg_id="msg1",
        msgtype=msgtype,
        text=text,
        conversation_id=conversation,
        is_group=group,
        conversation_title="test group" if group else "",
        sender_nick="张三",
        sender_staff_id=staff_id,
        sender_id="$:LWCP_v1:$sender",
        is_admin=admin,
        session_webhook="https://oapi.dingtalk.com/robot/sendBySession?session=0",
        session_webhook_expires_ms=None,
        created_ms=None,
        robot_code="",
    )


def winner(matcher: Matcher, msg: Message) -> str | None:
    found = matcher.find(msg)
    return None if found is None else found.rule.name


def find(matcher: Matcher, text: str) -> Match:
    found = matcher.find(message(text))
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" 你好", "你好"),
        ("  ip \n", "ip"),
        ("@Bot ip", "ip"),
        ("@机器人 帮助", "帮助"),
        ("@Bot @Other ip", "@Other ip"),
        ("ip@Bot", "ip@Bot"),
        ("\u3000ip\u3000", "ip"),
        ("weather\u3000杭州", "weather 杭州"),
        ("weather  杭州\t\t西湖\n", "weather 杭州 西湖"),
        (fw("ip"), "ip"),
        (fw("MyIP"), "MyIP"),
        (fw("weather") + "\u3000杭州", "weather 杭州"),
        ("", ""),
        ("   ", ""),
    ],
)
def test_normalise(raw: str, expected: str) -> None:
    assert normalise(raw) == expected


@pytest.mark.parametrize(
    "text",
    [
        " ip",
        "@Bot ip",
        "ip\u3000",
        fw("ip"),
        fw("IP"),
        "IP",
        "Ip",
        "MYIP",
        "公网ip",
        "公网IP",
        "公网" + fw("ip"),
        " 公网ip ",
    ],
)
def test_keyword_aliases_match_after_normalisation_in_any_case(matcher: Matcher, text: str) -> None:
    assert winner(matcher, message(text)) == "ip"


@pytest.mark.parametrize("text", ["ip please", "my ip", "ipip", "公网", "i p"])
def test_keywords_must_equal_the_whole_message(matcher: Matcher, text: str) -> None:
    assert winner(matcher, message(text)) != "ip"


def test_case_sensitive_rule_matches_only_its_exact_case(matcher: Matcher) -> None:
    assert winner(matcher, message("Deploy")) == "deploy"
    assert winner(matcher, message("deploy")) == "unknown"
    assert winner(matcher, message("DEPLOY")) == "unknown"


def test_case_sensitive_default_applies_to_every_rule_unless_overridden(tmp_path: Path) -> None:
    ruleset = ruleset_from(
        tmp_path,
        """\
defaults:
  case_sensitive: true
rules:
  - {name: status, keywords: Status, msgtype: text, body: s}
  - {name: logs, command: Logs, msgtype: text, body: l}
  - {name: build, regex: "^Build$", msgtype: text, body: b}
  - {name: ping, keywords: Ping, case_sensitive: false, msgtype: text, body: p}
""",
    )
    names = {
        text: winner(ruleset.matcher, message(text)) for text in ["Status", "status", "Logs x", "logs x"]
    }
    assert names == {"Status": "status", "status": None, "Logs x": "logs", "logs x": None}
    assert winner(ruleset.matcher, message("Build")) == "build"
    assert winner(ruleset.matcher, message("build")) is None
    assert winner(ruleset.matcher, message("PING")) == "ping"


@pytest.mark.parametrize("text", ["tip", "zip", "description", "ipconfig", "ip6", "my_ip", "tips and zips"])
def test_ip_never_fires_inside_another_word(matcher: Matcher, text: str) -> None:
    assert winner(matcher, message(text)) == "unknown"


@pytest.mark.parametrize(
    "text",
    [
        "what is my ip",
        "ip?",
        "my IP, please",
        "(ip)",
        "查询ip地址",
        "IP地址",
        fw("my IP address"),
        "the ip address",
    ],
)
def test_contains_finds_a_whole_word(matcher: Matcher, text: str) -> None:
    assert winner(matcher, message(text)) == "mentions-ip"


@pytest.mark.parametrize("text", ["请帮助我", "帮助", "需要帮助!", "help 帮助"])
def test_contains_chinese_word_fires_inside_a_sentence(matcher: Matcher, text: str) -> None:
    assert winner(matcher, message(text)) == "help"


def test_contains_is_case_sensitive_when_asked(tmp_path: Path) -> None:
    ruleset = ruleset_from(
        tmp_path, "rules:\n  - {name: k8s, contains: K8s, case_sensitive: true, msgtype: text, body: k}\n"
    )
    assert winner(ruleset.matcher, message("restart K8s now")) == "k8s"
    assert winner(ruleset.matcher, message("restart k8s now")) is None


@pytest.mark.parametrize(
    ("text", "args", "args_text"),
    [
        ("weather 杭州 西湖", ("杭州", "西湖"), "杭州 西湖"),
        ("Weather  杭州\u3000西湖 ", ("杭州", "西湖"), "杭州 西湖"),
        ("@Bot 天气 北京", ("北京",), "北京"),
        ("weather", (), ""),
    ],
)
def test_command_splits_its_arguments(
    matcher: Matcher, text: str, args: tuple[str, ...], args_text: str
) -> None:
    found = find(matcher, text)
    assert found.rule.name == "weather"
    assert (found.args, found.args_text) == (args, args_text)


@pytest.mark.parametrize("text", ["weatherman 杭州", "the weather 杭州", "天气预报"])
def test_command_must_be_the_first_whole_word(matcher: Matcher, text: str) -> None:
    assert find(matcher, text).rule.name != "weather"


def test_regex_named_groups_reach_the_match(matcher: Matcher) -> None:
    assert dict(find(matcher, "release prod v1.2").groups) == {"env": "prod", "version": "v1.2"}
    assert dict(find(matcher, "RELEASE test").groups) == {"env": "test"}
    assert find(matcher, "release staging").rule.name == "unknown"


_CHINESE_REGEXES = """\
rules:
  - {name: weather, regex: '^天气 (?P<city>\\w+)$', msgtype: text, body: w}
  - {name: ip-word, regex: '\\bip\\b', msgtype: text, body: i}
  - {name: digits, regex: '^(?P<n>\\d+)号$', msgtype: text, body: d}
"""


def test_regex_word_class_matches_chinese_as_python_re_did(tmp_path: Path) -> None:
    matcher = ruleset_from(tmp_path, _CHINESE_REGEXES).matcher
    assert dict(find(matcher, "天气 杭州").groups) == {"city": "杭州"}
    assert dict(find(matcher, "３号").groups) == {"n": "3"}  # full-width: NFKC makes it ASCII first


@pytest.mark.parametrize(("text", "name"), [("查ip地址", "ip-word"), ("ip", "ip-word"), ("tip", None)])
def test_regex_word_boundary_counts_only_ascii_as_word_characters(
    tmp_path: Path, text: str, name: str | None
) -> None:
    # Python's re found no \b between 查 and ip; RE2's \b does, as contains rules do.
    assert winner(ruleset_from(tmp_path, _CHINESE_REGEXES).matcher, message(text)) == name


def test_regex_rules_survive_a_lone_surrogate(tmp_path: Path) -> None:
    # `responder try` with undecodable argv bytes and the playground's JSON can carry one.
    assert winner(ruleset_from(tmp_path, _CHINESE_REGEXES).matcher, message("查ip\udcff")) == "ip-word"


def test_regex_that_backtracked_in_python_re_answers_a_hostile_message(tmp_path: Path) -> None:
    text = "rules:\n  - {name: as, regex: '^(a+)+$', msgtype: text, body: a}\n"
    matcher = ruleset_from(tmp_path, text).matcher
    assert winner(matcher, message("a" * 40 + "!")) is None
    assert winner(matcher, message("a" * 40)) == "as"


def test_contains_patterns_are_literals_between_one_character_guards(tmp_path: Path) -> None:
    """Why contains may stay on Python's re: its pattern repeats nothing, so the work at each
    position of a message is bounded by the words' total length, whatever the message says."""
    words = ["ip", "ip address", "帮助", "c++", "a.b*", "x|y", "(k8s)", "Ä_1"]
    rules = f"rules:\n  - {{name: c, contains: {words!r}, msgtype: text, body: c}}\n"
    pattern = ruleset_from(tmp_path, rules).rules[0].trigger.pattern
    assert isinstance(pattern, re.Pattern)
    (branch,) = sre_parse.parse(pattern.pattern, pattern.flags)
    assert branch[0] is sre.BRANCH
    alternatives = [list(alternative) for alternative in branch[1][1]]
    assert len(alternatives) == len(words)
    for word, alternative in zip(words, alternatives, strict=True):
        guards = [item for item in alternative if item[0] is not sre.LITERAL]
        literals = "".join(chr(av) for op, av in alternative if op is sre.LITERAL)
        assert literals == word.lower()
        for op, (direction, body) in guards:
            assert op is sre.ASSERT_NOT and direction in (-1, 1)
            (only,) = list(body)
            assert only[0] is sre.IN  # one character class, one character wide


def test_match_text_is_the_normalised_message(matcher: Matcher) -> None:
    assert find(matcher, "@Bot   release\u3000prod ").text == "release prod"


_PRECEDENCE = """\
rules:
  - {name: early-contains, contains: status, msgtype: text, body: a}
  - {name: keyword, keywords: status, msgtype: text, body: b}
  - {name: late-regex, regex: "^status$", priority: 5, msgtype: text, body: c}
  - {name: urgent-keyword, keywords: [status], priority: 5, msgtype: text, body: d}
  - {name: low, keywords: ping, priority: -1, msgtype: text, body: e}
  - {name: pong, contains: ping, msgtype: text, body: f}
"""


def test_higher_priority_wins_then_file_order(tmp_path: Path) -> None:
    matcher = ruleset_from(tmp_path, _PRECEDENCE).matcher
    assert winner(matcher, message("status")) == "late-regex"
    assert winner(matcher, message("ping")) == "pong"


def test_equal_priority_keeps_file_order_across_kinds(tmp_path: Path) -> None:
    text = _PRECEDENCE.replace("priority: 5, ", "")
    matcher = ruleset_from(tmp_path, text).matcher
    assert winner(matcher, message("status")) == "early-contains"


_SCOPED = """\
rules:
  - {name: group-ip, keywords: ip, scope: {chat: group}, msgtype: text, body: a}
  - {name: private-ip, keywords: ip, scope: {chat: private}, msgtype: text, body: b}
  - {name: ops-deploy, command: deploy, scope: {conversations: [cidOPS]}, msgtype: text, body: c}
  - {name: alice-deploy, command: deploy, scope: {senders: [alice]}, msgtype: text, body: d}
  - {name: admin-reboot, keywords: reboot, scope: {admins_only: true}, msgtype: text, body: e}
  - {name: any-deploy, regex: "^deploy", priority: -1, msgtype: text, body: f}
  - {name: unknown, fallback: true, msgtype: text, body: g}
"""


@pytest.fixture
def scoped(tmp_path: Path) -> Matcher:
    return ruleset_from(tmp_path, _SCOPED).matcher


def test_chat_scope_separates_group_and_private(scoped: Matcher) -> None:
    assert winner(scoped, message("ip", group=True)) == "group-ip"
    assert winner(scoped, message("ip", group=False)) == "private-ip"


def test_conversation_and_sender_scopes(scoped: Matcher) -> None:
    assert winner(scoped, message("deploy x", conversation="cidOPS")) == "ops-deploy"
    assert winner(scoped, message("deploy x", staff_id="alice")) == "alice-deploy"
    assert winner(scoped, message("deploy x", staff_id="bob")) == "any-deploy"


def test_sender_scope_refuses_sender_without_staff_id(scoped: Matcher) -> None:
    assert winner(scoped, message("deploy x", staff_id="")) == "any-deploy"


def test_admins_only_scope_lets_the_fallback_answer_others(scoped: Matcher) -> None:
    assert winner(scoped, message("reboot", admin=True)) == "admin-reboot"
    assert winner(scoped, message("reboot", admin=False)) == "unknown"


def test_fallback_scope_is_respected(tmp_path: Path) -> None:
    text = "rules:\n  - {name: unknown, fallback: true, scope: {chat: private}, msgtype: text, body: g}\n"
    matcher = ruleset_from(tmp_path, text).matcher
    assert winner(matcher, message("hello", group=False)) == "unknown"
    assert winner(matcher, message("hello", group=True)) is None


def test_no_rule_and_no_fallback_gives_none(tmp_path: Path) -> None:
    matcher = ruleset_from(tmp_path, "rules:\n  - {name: ip, keywords: ip, msgtype: text, body: a}\n").matcher
    assert matcher.find(message("hello")) is None


@pytest.mark.parametrize("sample", ["picture.json", "file.json", "video.json"])
def test_non_text_message_goes_to_the_non_text_rule(tmp_path: Path, sample: str) -> None:
    text = _RULES + "  - {name: not-text, non_text: true, msgtype: text, body: text only}\n"
    matcher = ruleset_from(tmp_path, text).matcher
    assert winner(matcher, parse_message((SAMPLES / sample).read_bytes())) == "not-text"


def test_non_text_message_without_non_text_rule_gets_nothing(matcher: Matcher) -> None:
    assert matcher.find(parse_message((SAMPLES / "picture.json").read_bytes())) is None


def test_non_text_message_never_reaches_text_rules_even_with_matching_text(matcher: Matcher) -> None:
    picture = dataclasses.replace(message("ip"), msgtype="picture")
    assert matcher.find(picture) is None


def test_explain_gives_a_verdict_for_every_rule_in_order(scoped: Matcher) -> None:
    verdicts = scoped.explain(message("deploy now", staff_id="alice"))
    assert [v.rule for v in verdicts] == [
        "group-ip",
        "private-ip",
        "ops-deploy",
        "alice-deploy",
        "admin-reboot",
        "unknown",
        "any-deploy",
    ]
    by_rule = {v.rule: v for v in verdicts}
    assert [v.rule for v in verdicts if v.matched] == ["alice-deploy"]
    assert by_rule["alice-deploy"].reason == "command 'deploy'"
    assert by_rule["group-ip"].reason == "keywords did not match"
    assert by_rule["ops-deploy"].reason == "matched command 'deploy', but scope: conversation not listed"
    assert by_rule["any-deploy"].reason == "matched regex 'deploy', but a rule before it won"
    assert by_rule["unknown"].reason == "fallback: not needed"


def test_explain_names_the_fallback_when_nothing_matched(scoped: Matcher) -> None:
    verdicts = {v.rule: v for v in scoped.explain(message("reboot"))}
    assert verdicts["unknown"].matched
    assert verdicts["unknown"].reason == "nothing else matched"
    assert verdicts["admin-reboot"].reason == "matched keyword 'reboot', but scope: admins only"


def test_explain_for_non_text_message(tmp_path: Path) -> None:
    text = _RULES + "  - {name: not-text, non_text: true, scope: {chat: group}, msgtype: text, body: t}\n"
    matcher = ruleset_from(tmp_path, text).matcher
    picture = dataclasses.replace(message(""), msgtype="picture")
    verdicts = {v.rule: v for v in matcher.explain(picture)}
    assert [name for name, v in verdicts.items() if v.matched] == ["not-text"]
    assert verdicts["not-text"].reason == "non-text message"
    assert verdicts["ip"].reason == "keywords did not match"
    private = {v.rule: v for v in matcher.explain(dataclasses.replace(picture, is_group=False))}
    assert not any(v.matched for v in private.values())
    assert private["not-text"].reason == "scope: group chats only"


def test_multi_word_command_is_refused_or_matches(tmp_path: Path) -> None:
    text = "rules:\n  - {name: show-ip, command: show ip, msgtype: text, body: a}\n"
    try:
        matcher = ruleset_from(tmp_path, text).matcher
    except RulesError:
        return
    found = find(matcher, "show ip eth0")
    assert (found.rule.name, found.args) == ("show-ip", ("eth0",))


def test_keyword_that_normalises_to_nothing_is_refused_or_never_fires_on_empty_text(tmp_path: Path) -> None:
    text = "rules:\n  - {name: everyone, keywords: '@all', msgtype: text, body: a}\n"
    try:
        matcher = ruleset_from(tmp_path, text).matcher
    except RulesError:
        return
    assert matcher.find(message("")) is None
