"""SMS reply grammar: what a leader or patrol member texts back to an alert, as a pure parser.

Accepted (after Unicode NFKC, so full-width digits, the full-width number sign and punctuation count as ASCII)::

    1 | 收到 | 已收到                  acknowledge
    2 | 到 | 到场 | 已到 | 已到场      on scene
    3 | 解除 | 已解除                  resolve; followed by 误报 (false alarm) or 演练 (drill)

and, from a household answering the follow-up text of a resolved alarm (评单)::

    满意 | 基本满意 | 不满意               satisfied, fair, dissatisfied

with an optional incident code (its decimal number): after the action (``1 17``, ``1#17``,
``1 #17``, ``收到17``) or before it when marked with ``#`` (``#17 1``). Tokens may be separated by
spaces or by ``, 、 : ;`` (ASCII or Chinese); one trailing ``.`` / ``。`` / ``!`` is allowed.
A digit may be followed by its own word (``1收到``), as the alert's hint "回1收到" invites.
Anything else is not a command: ordinary chat must never acknowledge an alarm by accident.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Final

from alertd.core.events import Action, Rating, Satisfaction
from alertd.core.incidents import Outcome

__all__ = ["ParsedReply", "Rating", "parse_reply"]

# Longer than any command with a code: not worth tokenizing, certainly chat.
_MAX_LEN: Final = 40
_MAX_CODE_DIGITS: Final = 18  # incident ids are SQLite integers

_DIGIT_ACTIONS: Final = {"1": Action.ACKNOWLEDGE, "2": Action.ON_SCENE, "3": Action.RESOLVE}
_WORD_ACTIONS: Final = {
    "收到": Action.ACKNOWLEDGE,
    "已收到": Action.ACKNOWLEDGE,
    "到": Action.ON_SCENE,
    "到场": Action.ON_SCENE,
    "已到": Action.ON_SCENE,
    "已到场": Action.ON_SCENE,
    "解除": Action.RESOLVE,
    "已解除": Action.RESOLVE,
}
_QUALIFIERS: Final = {"误报": Outcome.FALSE_ALARM, "演练": Outcome.DRILL}

# Longest words first, so "到场" is never read as "到" followed by an unknown "场".
_WORDS = "|".join(sorted((*_WORD_ACTIONS, *_QUALIFIERS), key=len, reverse=True))
_TOKEN = re.compile(rf"(?P<sep>[\s,、:;]+)|#\s*(?P<code>[0-9]+)|(?P<number>[0-9]+)|(?P<word>{_WORDS})")
_TRAILING = ".。!"
_RATINGS: Final = {"满意": Satisfaction.SATISFIED, "基本满意": Satisfaction.FAIR, "不满意": Satisfaction.DISSATISFIED}
_RATING = re.compile(
    r"(?:#\s*(?P<before>[0-9]+)[\s,、:;]*)?(?P<word>基本满意|不满意|满意)(?:[\s,、:;]*#?\s*(?P<after>[0-9]+))?"
)


@dataclass(frozen=True, slots=True)
class ParsedReply:
    action: Action
    code: str | None  # the incident's short code, normalized ("017" -> "17"); None: not given
    outcome: Outcome | None  # only with RESOLVE; None: the engine's default


def _code(digits: str) -> str | None:
    return str(int(digits)) if len(digits) <= _MAX_CODE_DIGITS else None


def parse_reply(text: str) -> ParsedReply | Rating | None:
    """The command (or the rating) in an SMS reply, or None if the text is not one."""
    normalized = unicodedata.normalize("NFKC", text).strip()
    if len(normalized) > _MAX_LEN:
        return None
    if normalized and normalized[-1] in _TRAILING:
        normalized = normalized[:-1].rstrip()
    if rating := _RATING.fullmatch(normalized):
        before, after = rating.group("before"), rating.group("after")
        if before is not None and after is not None:
            return None  # two codes
        digits = before or after
        rated = _code(digits) if digits is not None else None
        if digits is not None and rated is None:
            return None
        return Rating(_RATINGS[rating.group("word")], rated)

    action: Action | None = None
    code: str | None = None
    outcome: Outcome | None = None
    # The alert reads "回1收到 2到场 3解除", so people answer "1收到": a digit action may be
    # followed at once by its own word. Only then, since "收到1" means code 1.
    restatable = False
    position = 0
    while position < len(normalized):
        token = _TOKEN.match(normalized, position)
        if token is None:
            return None  # a character that is not part of the grammar: chat
        position = token.end()
        if token.lastgroup == "sep":
            continue
        follows_digit, restatable = restatable, False
        match token.lastgroup, token.group(token.lastgroup or 0):
            case "word", word if follows_digit and _WORD_ACTIONS.get(word) is action:
                pass  # "1收到": the word only repeats the digit
            case "code", digits:
                # "#17" may stand before or after the action, but only once.
                if code is not None or (code := _code(digits)) is None:
                    return None
            case "number", digits if action is None and digits in _DIGIT_ACTIONS:
                action = _DIGIT_ACTIONS[digits]
                restatable = True
            case "number", digits if action is not None and code is None:
                # A bare number is a code only after the action: "17" alone is not "1" + "7".
                if (code := _code(digits)) is None:
                    return None
            case "word", word if action is None and word in _WORD_ACTIONS:
                action = _WORD_ACTIONS[word]
            case "word", word if action is Action.RESOLVE and outcome is None and word in _QUALIFIERS:
                outcome = _QUALIFIERS[word]
            case _:
                return None  # a second action, a misplaced number or qualifier
    if action is None:
        return None
    return ParsedReply(action, code, outcome)
