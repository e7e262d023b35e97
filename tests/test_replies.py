"""SMS reply grammar: the commands we accept and the chat we must not mistake for one."""

from __future__ import annotations

import pytest

from alertd.core.events import Action
from alertd.core.incidents import Outcome
from alertd.protocols.replies import ParsedReply, parse_reply

ACK, ON_SCENE, RESOLVE = Action.ACKNOWLEDGE, Action.ON_SCENE, Action.RESOLVE
FALSE, DRILL = Outcome.FALSE_ALARM, Outcome.DRILL

ACCEPTED: list[tuple[str, ParsedReply]] = [
    # actions
    ("1", ParsedReply(ACK, None, None)),
    ("收到", ParsedReply(ACK, None, None)),
    ("已收到", ParsedReply(ACK, None, None)),
    ("2", ParsedReply(ON_SCENE, None, None)),
    ("到", ParsedReply(ON_SCENE, None, None)),
    ("到场", ParsedReply(ON_SCENE, None, None)),
    ("已到", ParsedReply(ON_SCENE, None, None)),
    ("已到场", ParsedReply(ON_SCENE, None, None)),
    ("3", ParsedReply(RESOLVE, None, None)),
    ("解除", ParsedReply(RESOLVE, None, None)),
    ("已解除", ParsedReply(RESOLVE, None, None)),
    # outcomes
    ("3 误报", ParsedReply(RESOLVE, None, FALSE)),
    ("3误报", ParsedReply(RESOLVE, None, FALSE)),
    ("解除 误报", ParsedReply(RESOLVE, None, FALSE)),
    ("解除误报", ParsedReply(RESOLVE, None, FALSE)),
    ("3 演练", ParsedReply(RESOLVE, None, DRILL)),
    ("解除，演练", ParsedReply(RESOLVE, None, DRILL)),
    # codes
    ("1 17", ParsedReply(ACK, "17", None)),
    ("1#17", ParsedReply(ACK, "17", None)),
    ("1 #17", ParsedReply(ACK, "17", None)),
    ("1# 17", ParsedReply(ACK, "17", None)),
    ("#17 1", ParsedReply(ACK, "17", None)),
    ("#17收到", ParsedReply(ACK, "17", None)),
    ("收到17", ParsedReply(ACK, "17", None)),
    ("收到 17", ParsedReply(ACK, "17", None)),
    ("收到#17", ParsedReply(ACK, "17", None)),
    ("2 17", ParsedReply(ON_SCENE, "17", None)),
    ("到场17", ParsedReply(ON_SCENE, "17", None)),
    ("1 1", ParsedReply(ACK, "1", None)),
    ("1 2", ParsedReply(ACK, "2", None)),
    ("1 017", ParsedReply(ACK, "17", None)),
    ("1 #0", ParsedReply(ACK, "0", None)),
    ("1 123456789012345678", ParsedReply(ACK, "123456789012345678", None)),
    ("3 17 误报", ParsedReply(RESOLVE, "17", FALSE)),
    ("3 误报 17", ParsedReply(RESOLVE, "17", FALSE)),
    ("3#17 演练", ParsedReply(RESOLVE, "17", DRILL)),
    ("#17 3 误报", ParsedReply(RESOLVE, "17", FALSE)),
    ("解除17误报", ParsedReply(RESOLVE, "17", FALSE)),
    # the alert says "回1收到 2到场 3解除": the digit followed by its own word
    ("1收到", ParsedReply(ACK, None, None)),
    ("1 收到", ParsedReply(ACK, None, None)),
    ("2到场", ParsedReply(ON_SCENE, None, None)),
    ("3解除", ParsedReply(RESOLVE, None, None)),
    ("3解除 误报", ParsedReply(RESOLVE, None, FALSE)),
    ("1收到 #17", ParsedReply(ACK, "17", None)),
    ("1收到17", ParsedReply(ACK, "17", None)),
    ("#17 1收到", ParsedReply(ACK, "17", None)),
    # whitespace, full width, punctuation
    ("  1  ", ParsedReply(ACK, None, None)),
    ("\n收到\n", ParsedReply(ACK, None, None)),
    ("１", ParsedReply(ACK, None, None)),
    ("１　１７", ParsedReply(ACK, "17", None)),
    ("１＃１７", ParsedReply(ACK, "17", None)),
    ("＃１７　２", ParsedReply(ON_SCENE, "17", None)),
    ("1，17", ParsedReply(ACK, "17", None)),
    ("1,17", ParsedReply(ACK, "17", None)),
    ("3、误报", ParsedReply(RESOLVE, None, FALSE)),
    ("3：误报", ParsedReply(RESOLVE, None, FALSE)),
    ("1;17", ParsedReply(ACK, "17", None)),
    ("收到。", ParsedReply(ACK, None, None)),
    ("收到.", ParsedReply(ACK, None, None)),
    ("收到！", ParsedReply(ACK, None, None)),
    ("1 17 。", ParsedReply(ACK, "17", None)),
    ("收到１７。", ParsedReply(ACK, "17", None)),
    ("３ 误报。", ParsedReply(RESOLVE, None, FALSE)),
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED)
def test_accepted(text: str, expected: ParsedReply) -> None:
    assert parse_reply(text) == expected


REJECTED = [
    "",
    "   ",
    "。",
    # numbers that are not an action: never split "17" into action 1, code 7
    "17",
    "117",
    "11",
    "4",
    "0",
    "21",
    "#17",
    "17 1",  # a code before the action needs '#'
    "17收到",
    # ordinary chat
    "好的，谢谢",
    "好的",
    "收到了",
    "我到了",
    "马上到",
    "到了吗",
    "谢谢收到",
    "ok",
    "yes",
    "1?",
    "收到？",
    # misplaced or repeated parts
    "误报",
    "演练",
    "1 误报",
    "2 演练",
    "误报 3",
    "3 误报 演练",
    "3 误报 误报",
    "1 2 3",
    "收到 1收到",
    "1到场",  # digit and word disagree
    "2收到",
    "1 17 收到",  # the word must follow the digit at once
    "1收到收到",
    "收到 到场",
    "1#17#18",
    "#17 #18 1",
    "1 17 18",
    "1 #",
    "#",
    "1.17",  # '.' is only a trailing full stop, not a separator
    "1 17。。",
    "收到!!",
    # out of range or odd digits
    "1 1234567890123456789",
    "\u0661",  # Arabic-Indic one is not a reply digit
    "1 \u0661\u0667",
    # too long to be a command
    "1" + " " * 60 + "17",
]


@pytest.mark.parametrize("text", REJECTED)
def test_rejected(text: str) -> None:
    assert parse_reply(text) is None


def test_only_resolve_carries_outcome() -> None:
    for text, reply in ACCEPTED:
        if reply.outcome is not None:
            assert reply.action is RESOLVE, text
