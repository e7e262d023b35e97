"""Who may see and act on what in the duty-room console: the roles and an account's scope. Pure; the
accounts themselves (passwords, sessions) are kept by alertd.accounts."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"  # everything, and the accounts
    DUTY = "duty"  # the township duty room: every group
    GRID = "grid"  # a grid worker: their groups
    LEADER = "leader"  # a group leader: their group
    VIEWER = "viewer"  # reads every group, acts on none


SCOPED = frozenset({Role.GRID, Role.LEADER})


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    role: Role
    groups: frozenset[str]  # the groups a grid worker or leader covers; ignored for the other roles
    disabled: bool = False

    def sees(self, group_id: str) -> bool:
        return self.role not in SCOPED or group_id in self.groups

    @property
    def role_is_scoped(self) -> bool:
        return self.role in SCOPED

    @property
    def may_act(self) -> bool:
        return self.role != Role.VIEWER

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def scope(self) -> str:
        return "all groups" if self.role not in SCOPED else ", ".join(sorted(self.groups)) or "no group"
