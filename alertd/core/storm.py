"""Storm control: a flood, an earthquake or lightning on a feeder sets off many alarms at once. Then the
patrol and the duty room must not get a hundred texts in a minute they cannot read.

While `threshold` alarms or more were opened within the last `window_s`, a storm is on, and every alarm
opened in it belongs to it, escalation steps and all, even when they fire after the rate has dropped (a
storm's step 1 comes two minutes after its alarms). For a storm's alarms:
* rings are never delayed or merged (they are not texts, and never pass through here);
* the first alert text to each group's leader goes out at once, as always;
* every other alert text is merged: it stays in the outbox, marked merged, and its recipient gets one
  summary per window instead (the alarms in it, by group; Texts.storm), sent at the window's end.

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
MEMBERSHIP_S = 3600.0  # a storm's alarm stops being one after this (its escalation is long over)


@dataclass(slots=True)
class Storm:
    threshold: int = THRESHOLD  # 0: never
    window_s: float = WINDOW_S
    _opened: deque[tuple[float, int]] = field(default_factory=deque)  # recent alarms: (when opened, id)
    _window: tuple[float, float] | None = None  # the current summary window (start, end)
    _leaders_told: set[str] = field(default_factory=set)  # groups whose leader had the first text
    _merged: dict[str, dict[str, set[int]]] = field(default_factory=dict)  # recipient -> group -> alarms
    _members: dict[int, float] = field(default_factory=dict)  # the storm's alarms -> when opened
    _pending: list[tuple[int, float]] = field(default_factory=list)  # opened in this batch, not yet judged

    def opened(self, now: float, incident_id: int) -> None:
        """An alarm was opened (drills too: they ring and text like real ones)."""
        self._opened.append((now, incident_id))
        self._pending.append((incident_id, now))
        while self._opened and self._opened[0][0] <= now - self.window_s:
            self._opened.popleft()

    def raging(self, now: float) -> bool:
        while self._opened and self._opened[0][0] <= now - self.window_s:
            self._opened.popleft()
        return self.threshold > 0 and len(self._opened) >= self.threshold

    def screen(
        self, notes: Iterable[Notification], group_of: Callable[[int], str | None], roster: Roster, texts: Texts,
        now: float,
    ) -> list[Notification]:  # fmt: skip
        """The batch's notifications as they are to be committed: alert texts merged in a storm (marked,
        with their recipient's summary planned or rewritten), everything else as it was."""
        notes = list(notes)
        self._admit(now)
        if not self._members:
            return notes
        out: list[Notification] = []
        touched: set[str] = set()
        start, end = 0.0, 0.0
        for note in notes:
            group = group_of(note.incident_id) if note.incident_id is not None else None
            if (
                note.channel != Channel.SMS
                or note.purpose != Purpose.ALERT
                or group is None
                or note.incident_id not in self._members
            ):
                out.append(note)
                continue
            if group not in self._leaders_told and note.recipient in _leaders(roster, group):
                self._leaders_told.add(group)
                out.append(note)  # the first text to each group's leader is never held
                continue
            start, end = self._current_window(now)
            assert note.incident_id is not None  # noqa: S101 (a member has one)
            self._merged.setdefault(note.recipient, {}).setdefault(group, set()).add(note.incident_id)
            touched.add(note.recipient)
            out.append(replace(note, merged_into=summary_scope(start)))
        for recipient in touched:
            person = roster.people.get(recipient)
            if person is None:
                continue
            alarms = {group: len(ids) for group, ids in self._merged[recipient].items()}
            text = texts.storm(alarms, roster.groups, self.window_s, person.language)
            summary = text_to(person, text, None, 0, Purpose.ALERT, scope=summary_scope(start))
            out.append(replace(summary, not_before=end, rewrite=True))
        return out

    def next_wakeup(self) -> float | None:
        return self._window[1] if self._window is not None else None

    def _admit(self, now: float) -> None:
        """The alarms opened in this batch join the storm if one is on now (the one that tipped it too); the
        storm's old alarms are done escalating after an hour and leave it."""
        if self._pending and self.raging(now):
            # The alarms that made the storm belong to it too: their first texts went out one by one, their
            # escalations are summarised with the rest.
            self._members.update((incident_id, at) for at, incident_id in self._opened)
            self._members.update(self._pending)
        self._pending.clear()
        for incident_id in [i for i, at in self._members.items() if at <= now - MEMBERSHIP_S]:
            del self._members[incident_id]
        if not self._members:
            self._leaders_told.clear()  # over: the next storm tells each leader first again
        if self._window is not None and now >= self._window[1]:
            self._window = None  # its summaries are due; the next merged text opens the next window
            self._merged.clear()

    def _current_window(self, now: float) -> tuple[float, float]:
        if self._window is None:
            self._window = (now, now + self.window_s)
        return self._window


def summary_scope(window_start: float) -> str:
    return f"storm:{int(window_start)}"


def _leaders(roster: Roster, group_id: str) -> set[str]:
    group = roster.groups.get(group_id)
    return {group.leader} if group is not None else set()
