"""Storm control: a flood, an earthquake or lightning on a feeder sets off many alarms at once. Then the
patrol and the duty room must not get a hundred texts in a minute they cannot read.

While `threshold` alarms or more were opened within the last `window_s`, a storm is on. In a storm:
* rings are never delayed or merged (they are not texts, and never pass through here);
* the first alert text to each group's leader goes out at once, as always;
* every other alert text is merged: it stays in the outbox, marked merged, and its recipient gets one
  summary per window instead (alarms in the window, by group; Texts.storm), sent at the window's end.

The summary is planned in the same commit as the first alert it carries (and rewritten with each one
after it while it waits), so a crash never loses what was merged. Pure: time is an argument.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from alertd.core.messages import Texts, text_to
from alertd.core.model import Roster
from alertd.core.records import Channel, Notification, Purpose

THRESHOLD = 5
WINDOW_S = 60.0


@dataclass(slots=True)
class Storm:
    threshold: int = THRESHOLD  # 0: never
    window_s: float = WINDOW_S
    _opened: deque[float] = field(default_factory=deque)  # when recent alarms were opened
    _window: tuple[float, float] | None = None  # the current summary window (start, end), in a storm
    _leaders_told: set[str] = field(default_factory=set)  # groups whose leader had the first text
    _merged: dict[str, dict[str, int]] = field(default_factory=dict)  # recipient -> group -> alerts

    def opened(self, now: float) -> None:
        """An alarm was opened (drills too: they ring and text like real ones)."""
        self._opened.append(now)
        while self._opened and self._opened[0] <= now - self.window_s:
            self._opened.popleft()

    def raging(self, now: float) -> bool:
        while self._opened and self._opened[0] <= now - self.window_s:
            self._opened.popleft()
        return self.threshold > 0 and len(self._opened) >= self.threshold

    def screen(
        self, notes: Iterable[Notification], group_of: Callable[[int], str | None], roster: Roster, texts: Texts,
        now: float,
    ) -> list[Notification]:  # fmt: skip
        """The batch's notifications as they are to be committed: alert texts merged in a storm (marked,
        with their recipient's summary planned or rewritten), everything else as it was."""
        notes = list(notes)
        window = self._current_window(now)
        if window is None:
            return notes
        start, end = window
        out: list[Notification] = []
        touched: set[str] = set()
        for note in notes:
            group = group_of(note.incident_id) if note.incident_id is not None else None
            if note.channel != Channel.SMS or note.purpose != Purpose.ALERT or group is None:
                out.append(note)
                continue
            if group not in self._leaders_told and note.recipient in _leaders(roster, group):
                self._leaders_told.add(group)
                out.append(note)  # the first text to each group's leader is never held
                continue
            counts = self._merged.setdefault(note.recipient, {})
            counts[group] = counts.get(group, 0) + 1
            touched.add(note.recipient)
            out.append(replace(note, merged_into=summary_scope(start)))
        for recipient in touched:
            person = roster.people.get(recipient)
            if person is None:
                continue
            text = texts.storm(self._merged[recipient], roster.groups, self.window_s, person.language)
            summary = text_to(person, text, None, 0, Purpose.ALERT, scope=summary_scope(start))
            out.append(replace(summary, not_before=end, rewrite=True))
        return out

    def next_wakeup(self) -> float | None:
        return self._window[1] if self._window is not None else None

    def _current_window(self, now: float) -> tuple[float, float] | None:
        if self._window is not None and now >= self._window[1]:
            # The window's summaries are due; a new one starts if the storm goes on.
            self._window = None
            self._merged.clear()
        if self._window is None:
            if not self.raging(now):
                self._leaders_told.clear()  # the storm is over: the next one tells leaders first again
                return None
            self._window = (now, now + self.window_s)
        return self._window


def summary_scope(window_start: float) -> str:
    return f"storm:{int(window_start)}"


def _leaders(roster: Roster, group_id: str) -> set[str]:
    group = roster.groups.get(group_id)
    return {group.leader} if group is not None else set()
