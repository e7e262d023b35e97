"""值班台, the duty-room console: a live board of open incidents, each incident's timeline and actions.

Server-rendered pages (aiohttp-jinja2), one small script (the live board's server-sent events, a sound and a
flashing title for a new alarm), every asset in the package: no CDN, no build step, no internet.

Who may do what (alertd.accounts): a session cookie (HttpOnly, SameSite=Strict, Secure behind https) opens a
session; every POST carries the session's CSRF token; a grid worker or leader sees and acts on their own groups
only, and the server checks it on every request, not the page. An action on an incident goes to the engine as
an operator command, so it lands in the incident's timeline as `name (console, address)`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.resources import files
from urllib.parse import quote
from zoneinfo import ZoneInfo

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_sse import sse_response

from alertd.accounts import AccountError, Accounts, Session
from alertd.core.access import Role, User
from alertd.core.events import Action, Evaluation, Input, OperatorCommand, Outcome, Satisfaction, Via
from alertd.core.messages import CONDITION_ZH, DEVICE_ZH, KIND_ZH
from alertd.core.model import Roster
from alertd.core.profile import DeviceProfile
from alertd.core.records import Incident
from alertd.core.results import Result
from alertd.phones import mask
from alertd.report import device_health, show
from alertd.store import Store
from alertd.web.live import EVERYTHING, Live

_LOGGER = logging.getLogger(__name__)

COOKIE = "alertd_session"
LOGIN_COOKIE = "alertd_login"  # the login form's CSRF token (double submit: cookie and form field)
HEARTBEAT_S = 15.0
MAX_NOTE = 500

_ACTIONS = {a.value: a for a in (Action.ACKNOWLEDGE, Action.ON_SCENE, Action.RESOLVE, Action.CANCEL)}
_OUTCOMES = {o.value: o for o in Outcome}
STATE_ZH = {
    "open": "待响应",
    "acknowledged": "已确认",
    "on_scene": "已到场",
    "resolved": "已处置",
    "cancelled": "已取消",
}
OUTCOME_ZH = {"real": "真实警情", "false_alarm": "误报", "drill": "演练"}
SATISFACTION_ZH = {"satisfied": "满意", "fair": "基本满意", "dissatisfied": "不满意"}
ROLE_ZH = {"admin": "管理员", "duty": "值班员", "grid": "网格员", "leader": "联防组长", "viewer": "只读"}


@dataclass(frozen=True, slots=True)
class ConsoleDeps:
    accounts: Accounts
    store: Store
    call: Callable[[Input], Awaitable[Result]]  # the engine: submit and wait for the commit
    roster: Callable[[], Roster]  # the roster now (a reload replaces it)
    profiles: Callable[[], Mapping[str, DeviceProfile]]  # the device profiles now
    live: Live
    clock: Callable[[], float]
    zone: ZoneInfo
    secure_cookies: bool  # public_url is https


CONSOLE = web.AppKey("console", ConsoleDeps)
SESSION = web.RequestKey("session", Session)  # the session of a logged-in request


def add_console(app: web.Application, deps: ConsoleDeps) -> None:
    """The console's routes, templates and static files on `app` (the daemon's TCP app)."""
    app[CONSOLE] = deps
    app[BOARDS] = _Boards()
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("alertd.web", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    env.globals.update(STATE_ZH=STATE_ZH, OUTCOME_ZH=OUTCOME_ZH, ROLE_ZH=ROLE_ZH, SATISFACTION_ZH=SATISFACTION_ZH)
    app[aiohttp_jinja2.static_root_key] = "/static"
    app.middlewares.append(_guard)
    app.router.add_get("/", board)
    app.router.add_get("/login", login_page)
    app.router.add_get("/favicon.ico", no_icon)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/board/rows", board_rows)
    app.router.add_get("/events", events)
    app.router.add_get("/incidents/{id:\\d+}", incident_page)
    app.router.add_get("/devices", devices_page)
    app.router.add_get("/roster", roster_page)
    app.router.add_get("/admin/users", users_page)
    app.router.add_post("/admin/users", users_action)
    app.router.add_post("/incidents/{id:\\d+}/act", act)
    app.router.add_post("/incidents/{id:\\d+}/evaluate", evaluate)
    app.router.add_static("/static/", path=str(files("alertd.web") / "static"), append_version=True)
    app.on_shutdown.append(_end_streams)


async def _end_streams(app: web.Application) -> None:
    app[CONSOLE].live.close()  # open boards' event streams end, or the HTTP shutdown would wait for them


# --- sessions, CSRF and headers -----------------------------------------------------------------------

_OPEN = ("/login", "/favicon.ico", "/static/", "/healthz", "/metrics", "/twilio/", "/api/")


@web.middleware
async def _guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every console page needs a session; every console POST its CSRF token and no foreign Origin."""
    path = request.path
    if not path.startswith(_OPEN):
        deps = request.app[CONSOLE]
        session = await deps.accounts.session(request.cookies.get(COOKIE, ""), deps.clock())
        if session is None:
            if request.method == "GET" and path != "/events" and not path.startswith("/board/"):
                raise web.HTTPSeeOther("/login")
            raise web.HTTPUnauthorized(text="log in first")
        if request.method not in ("GET", "HEAD"):
            await _check_csrf(request, session.csrf)
        request[SESSION] = session
    elif request.method == "POST" and path == "/login":
        await _check_csrf(request, request.cookies.get(LOGIN_COOKIE, ""))
    response = await handler(request)
    if not path.startswith(("/static/", "/healthz", "/metrics", "/twilio/", "/api/")):
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; "
            "form-action 'self'; base-uri 'none'",
        )
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Cache-Control", "no-store")
    return response


async def _check_csrf(request: web.Request, expected: str) -> None:
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise web.HTTPForbidden(text="cross-site request refused")
    form = await request.post()
    given = str(form.get("csrf", ""))
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise web.HTTPForbidden(text="missing or wrong CSRF token; reload the page")


def _session(request: web.Request) -> Session:
    return request[SESSION]


def _address(request: web.Request) -> str:
    return request.remote or "?"


def _set_cookie(response: web.StreamResponse, deps: ConsoleDeps, name: str, value: str) -> None:
    response.set_cookie(name, value, httponly=True, samesite="Strict", secure=deps.secure_cookies, path="/")


# --- logging in and out -------------------------------------------------------------------------------


async def no_icon(request: web.Request) -> web.StreamResponse:
    return web.Response(status=204)


async def login_page(request: web.Request) -> web.StreamResponse:
    return _login_form(request, "")


def _login_form(request: web.Request, error: str, status: int = 200) -> web.StreamResponse:
    # The browser's token, if it has one: another tab, or a request of the page's own (the favicon once
    # redirected here), must not replace the token of the form already shown.
    token = request.cookies.get(LOGIN_COOKIE, "")
    if not (32 <= len(token) <= 64 and token.replace("-", "").replace("_", "").isalnum()):
        token = secrets.token_urlsafe(32)
    response = aiohttp_jinja2.render_template("login.html", request, {"csrf": token, "error": error}, status=status)
    _set_cookie(response, request.app[CONSOLE], LOGIN_COOKIE, token)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    deps = request.app[CONSOLE]
    form = await request.post()
    name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
    outcome = await deps.accounts.login(name, password, _address(request), deps.clock())
    if isinstance(outcome, str):
        return _login_form(request, outcome, status=401)
    token, session = outcome
    _LOGGER.info("Console login: %s (%s) from %s", session.user.name, session.user.role, _address(request))
    response = web.HTTPSeeOther("/")
    _set_cookie(response, deps, COOKIE, token)
    response.del_cookie(LOGIN_COOKIE, path="/")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    deps = request.app[CONSOLE]
    await deps.accounts.logout(request.cookies.get(COOKIE, ""), _address(request), deps.clock())
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE, path="/")
    raise response


# --- the live board -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """One incident as the board shows it."""

    id: int
    alarm: bool  # an alarm (not a maintenance visit)
    what: str  # 火警, 求救… or the device's condition
    state: str
    label: str
    address: str
    group: str
    village: str
    opened_at: float
    opened: str  # local time
    told: int  # people texted (sent or delivered)
    delivered: int
    rung: int
    acknowledged_by: str
    on_scene: bool
    responded: int  # households whose answer is in the timeline


# Every open board refetches its rows on each change; boards with the same scope share one rendering per
# change (bench/bench_console.py: 20 boards each querying every row made a new alarm's row 3 s late). Delivery
# reports change rows without a change to an incident: a rendering is reused for at most this long.
BOARD_REUSE_S = 5.0
MAX_BOARD = 5000  # rows; far beyond any township's open incidents


@dataclass
class _Boards:
    rendered: dict[tuple[str, ...], tuple[int, float, list[Row]]] = field(default_factory=dict)
    building: dict[tuple[tuple[str, ...], int], asyncio.Future[list[Row]]] = field(default_factory=dict)


BOARDS = web.AppKey("boards", _Boards)


async def _rows(request: web.Request, user: User) -> list[Row]:
    """The board for `user`'s scope, rendered once per committed change for every board of that scope."""
    deps, boards = request.app[CONSOLE], request.app[BOARDS]
    scope = ("*",) if not user.role_is_scoped else tuple(sorted(user.groups))
    version, now = deps.live.version, deps.clock()
    cached = boards.rendered.get(scope)
    if cached is not None and cached[0] == version and now - cached[1] < BOARD_REUSE_S:
        return cached[2]
    key = (scope, version)
    building = boards.building.get(key)
    if building is None:  # the first board to ask builds it; the others of that moment wait for it
        building = boards.building[key] = asyncio.ensure_future(_build_rows(deps, user))
        building.add_done_callback(lambda _: boards.building.pop(key, None))
    rows = await asyncio.shield(building)
    boards.rendered[scope] = (version, now, rows)
    return rows


async def _build_rows(deps: ConsoleDeps, user: User) -> list[Row]:
    roster = deps.roster()
    incidents = [i for i in await deps.store.incidents(active_only=True, limit=MAX_BOARD) if user.sees(i.group_id)]
    # Alarms first, newest first; then the maintenance visits.
    incidents.sort(key=lambda i: (i.maintenance is not None, -i.opened_at))
    counts = await deps.store.board_counts([i.id for i in incidents])
    rows = []
    for incident in incidents:
        household = roster.households.get(incident.household_id)
        group = roster.groups.get(incident.group_id)
        told, delivered, responded = counts.get(incident.id, (0, 0, 0))
        rows.append(
            Row(
                id=incident.id,
                alarm=incident.maintenance is None,
                what=_what(incident),
                state=incident.state.value,
                label=household.label if household else incident.household_id,
                address=household.address if household else "",
                group=group.name if group else incident.group_id,
                village=group.village if group else "",
                opened_at=incident.opened_at,
                opened=_local(incident.opened_at, deps.zone),
                told=told,
                delivered=delivered,
                rung=len(incident.rung),
                acknowledged_by=incident.acknowledged_by or "",
                on_scene=incident.on_scene_at is not None,
                responded=responded,
            )
        )
    return rows


def _what(incident: Incident) -> str:
    if incident.maintenance is not None:
        return f"设备{CONDITION_ZH.get(incident.maintenance, incident.maintenance.value)}"
    return KIND_ZH.get(incident.kind, incident.kind.value) + ("（无声）" if incident.silent else "")


def _local(at: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(at, UTC).astimezone(zone).strftime("%m-%d %H:%M:%S")


async def board(request: web.Request) -> web.StreamResponse:
    deps, session = request.app[CONSOLE], _session(request)
    context = {"session": session, "rows": await _rows(request, session.user), "now": deps.clock()}
    return aiohttp_jinja2.render_template("board.html", request, context)


async def board_rows(request: web.Request) -> web.StreamResponse:
    deps, session = request.app[CONSOLE], _session(request)
    context = {"session": session, "rows": await _rows(request, session.user), "now": deps.clock()}
    return aiohttp_jinja2.render_template("board_rows.html", request, context)


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: `changed` with the ids of visible incidents a commit changed; the page refetches."""
    deps, user = request.app[CONSOLE], _session(request).user
    with deps.live.board() as queue:
        async with sse_response(request, ping_interval=HEARTBEAT_S) as stream:
            await stream.send("{}", event="hello")  # the page refetches on (re)connect: nothing is missed
            while stream.is_connected():
                try:
                    async with asyncio.timeout(HEARTBEAT_S):  # a browser gone is noticed here, not at a send
                        change = await queue.get()
                except TimeoutError:
                    continue
                if change is None:  # the daemon is stopping; the browser reconnects to the next one
                    break
                incident_id, group_id = change
                if incident_id == EVERYTHING or user.sees(group_id):
                    await stream.send(json.dumps({"id": incident_id}), event="changed")
    return stream


# --- one incident ---------------------------------------------------------------------------------------


async def _visible(request: web.Request) -> Incident:
    deps, user = request.app[CONSOLE], _session(request).user
    incident = await deps.store.incident(int(request.match_info["id"]))
    if incident is None:
        raise web.HTTPNotFound(text="no such incident")
    if not user.sees(incident.group_id):
        _LOGGER.warning("Console: %s (%s) refused incident %d of group %s", user.name, user.scope, incident.id,
                        incident.group_id)  # fmt: skip
        raise web.HTTPForbidden(text="this incident is not in your groups")
    return incident


async def incident_page(request: web.Request) -> web.StreamResponse:
    deps, session = request.app[CONSOLE], _session(request)
    incident = await _visible(request)
    timeline = await deps.store.timeline(incident.id)
    notes = await deps.store.notifications(incident.id)
    context = {
        "session": session,
        "incident": incident,
        "what": _what(incident),
        "record": show(incident, timeline, notes, deps.roster(), deps.zone),
        "message": request.query.get("m", ""),
        "outcomes": list(OUTCOME_ZH.items()),
    }
    return aiohttp_jinja2.render_template("incident.html", request, context)


async def act(request: web.Request) -> web.StreamResponse:
    deps, session = request.app[CONSOLE], _session(request)
    incident = await _visible(request)
    user = session.user
    if not user.may_act:
        raise web.HTTPForbidden(text="a viewer account reads only")
    form = await request.post()
    action = _ACTIONS.get(str(form.get("action", "")))
    if action is None:
        raise web.HTTPBadRequest(text=f"action must be one of {', '.join(_ACTIONS)}")
    given = str(form.get("outcome", "") or "")
    outcome = _OUTCOMES.get(given) if given else None
    if given and outcome is None:
        raise web.HTTPBadRequest(text=f"outcome must be one of {', '.join(_OUTCOMES)}")
    note = " ".join(str(form.get("note", "")).split())[:MAX_NOTE]  # one line: it goes into the timeline
    actor = f"{user.name} (web:{_address(request)})"  # as `alertd ack` records "(os:user)"
    result = await deps.call(OperatorCommand(incident.id, action, actor, outcome, note, via=Via.CONSOLE))
    _LOGGER.info("Console: %s %s incident %d: %s", user.name, action, incident.id, result)
    message = "已记录 recorded" if result.accepted else str(result)
    raise web.HTTPSeeOther(f"/incidents/{incident.id}?m={_quote(message)}")


async def evaluate(request: web.Request) -> web.StreamResponse:
    """评单 entered for the household (a grid worker who asked them): through the engine, into the timeline."""
    deps, user = request.app[CONSOLE], _session(request).user
    incident = await _visible(request)
    if not user.may_act:
        raise web.HTTPForbidden(text="a viewer account reads only")
    form = await request.post()
    try:
        satisfaction = Satisfaction(str(form.get("satisfaction", "")))
    except ValueError:
        raise web.HTTPBadRequest(text=f"satisfaction must be one of {', '.join(SATISFACTION_ZH)}") from None
    actor = f"{user.name} (web:{_address(request)})"
    result = await deps.call(Evaluation(incident.id, satisfaction, actor, Via.CONSOLE))
    _LOGGER.info("Console: %s evaluated incident %d: %s", user.name, incident.id, result)
    message = "已记录 recorded" if result.accepted else str(result)
    raise web.HTTPSeeOther(f"/incidents/{incident.id}?m={_quote(message)}")


def _quote(text: str) -> str:
    return quote(text[:200])


# --- devices ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceRow:
    id: str
    kind: str
    household: str
    group_id: str
    group: str
    last_seen: str
    battery: str
    healthy: bool
    state: str  # 正常, or the conditions in Chinese
    armed: str


async def devices_page(request: web.Request) -> web.StreamResponse:
    """`alertd devices` as a page: each visible device's health, filtered by group and by "needs attention"."""
    deps, session = request.app[CONSOLE], _session(request)
    user, roster = session.user, deps.roster()
    groups = [g for g in roster.groups.values() if user.sees(g.id)]
    wanted = request.query.get("group", "")
    if wanted and not any(g.id == wanted for g in groups):
        raise web.HTTPForbidden(text="this group is not yours") if wanted in roster.groups else web.HTTPNotFound()
    problems_only = request.query.get("problems") == "1"
    records = await deps.store.devices()
    rows = []
    for device, health in device_health(roster, records, deps.profiles(), deps.clock()):
        household = roster.households[device.household_id]
        if not user.sees(household.group_id) or (wanted and household.group_id != wanted):
            continue
        if problems_only and health.healthy:
            continue
        record = records.get(device.id)
        group = roster.groups.get(household.group_id)
        rows.append(
            DeviceRow(
                id=device.id,
                kind=DEVICE_ZH.get(device.profile, device.profile),
                household=household.label,
                group_id=household.group_id,
                group=group.name if group else household.group_id,
                last_seen=_local(health.last_seen, deps.zone) if health.last_seen is not None else "从未 never",
                battery="" if health.battery is None else f"{health.battery}%",
                healthy=health.healthy,
                state="正常" if health.healthy else "、".join(CONDITION_ZH.get(c, c.value) for c in health.conditions),
                armed="" if record is None or record.armed is None else ("布防" if record.armed else "撤防"),
            )
        )
    context = {
        "session": session, "rows": rows, "groups": groups, "wanted": wanted, "problems_only": problems_only,
        "attention": sum(not r.healthy for r in rows),
    }  # fmt: skip
    return aiohttp_jinja2.render_template("devices.html", request, context)


# --- the roster -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PersonView:
    name: str
    phone: str  # masked but for admins


async def roster_page(request: web.Request) -> web.StreamResponse:
    """People, households, groups and patrols within the user's groups. Phone numbers are masked (138****0005)
    for everyone but admins: a leader needs to know who, not to copy a whole village's numbers."""
    session = _session(request)
    user, roster = session.user, request.app[CONSOLE].roster()

    def person(person_id: str | None) -> PersonView | None:
        found = roster.people.get(person_id) if person_id else None
        if found is None:
            return None
        return PersonView(found.name, found.phone if user.is_admin else mask(found.phone))

    groups = [
        {
            "group": group,
            "leader": person(group.leader),
            "deputy": person(group.deputy),
            "grid": person(group.grid_worker),
            "households": [
                {"household": h, "people": [p for p in map(person, h.people) if p is not None]}
                for h in (roster.households[i] for i in group.households if i in roster.households)
            ],
        }
        for group in roster.groups.values()
        if user.sees(group.id)
    ]
    patrols = [
        {"patrol": p, "members": [m for m in map(person, p.members) if m is not None]}
        for p in roster.patrols.values()
        if any(user.sees(g) for g in p.groups)
    ]
    context = {"session": session, "groups": groups, "patrols": patrols, "full_phones": user.is_admin}
    return aiohttp_jinja2.render_template("roster.html", request, context)


# --- accounts (admins) ------------------------------------------------------------------------------------


def _admin(request: web.Request) -> Session:
    session = _session(request)
    if not session.user.is_admin:
        raise web.HTTPForbidden(text="accounts are managed by admins")
    return session


async def users_page(request: web.Request) -> web.StreamResponse:
    """`alertd users` as a page, and the audit of logins and account changes."""
    return await _users(request, request.query.get("m", ""), "")


async def _users(request: web.Request, message: str, password: str) -> web.StreamResponse:
    session, deps = _admin(request), request.app[CONSOLE]
    audit = [(_local(at, deps.zone), actor, address, action, detail) for at, actor, address, action, detail in
             await deps.accounts.audit_log(100)]  # fmt: skip
    context = {
        "session": session, "users": await deps.accounts.users(), "roles": [r.value for r in Role],
        "groups": list(deps.roster().groups.values()), "audit": audit, "message": message, "password": password,
    }  # fmt: skip
    return aiohttp_jinja2.render_template("users.html", request, context)


async def users_action(request: web.Request) -> web.StreamResponse:
    """Add an account (its password generated and shown once), disable one, or give one a new password."""
    session, deps = _admin(request), request.app[CONSOLE]
    form = await request.post()
    what, name = str(form.get("do", "")), str(form.get("name", "")).strip()
    now, admin, address = deps.clock(), session.user.name, _address(request)
    password = secrets.token_urlsafe(12)
    try:
        match what:
            case "add":
                groups = [g for g in (str(v) for v in form.getall("groups", [])) if g in deps.roster().groups]
                user = await deps.accounts.add(name, Role(str(form.get("role", ""))), groups, password, now)
                detail = f"{user.name} ({user.role}, {user.scope})"
                await deps.accounts.audit(admin, address, "user added", detail, now)
            case "disable":
                await deps.accounts.disable(name, now)
                await deps.accounts.audit(admin, address, "user disabled", name, now)
                password = ""
            case "passwd":
                await deps.accounts.set_password(name, password, now)
                await deps.accounts.audit(admin, address, "password set", name, now)
            case _:
                raise web.HTTPBadRequest(text="do must be add, disable or passwd")
    except (AccountError, ValueError) as err:
        raise web.HTTPSeeOther(f"/admin/users?m={_quote(str(err))}") from None
    if not password:
        raise web.HTTPSeeOther(f"/admin/users?m={_quote(f'{what}: {name}')}")
    # A new password is shown once, in this answer (no-store), never in a URL the browser would keep.
    return await _users(request, f"{what}: {name}", password)
