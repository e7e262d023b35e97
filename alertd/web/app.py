"""HTTP side: Twilio webhooks (signature verified), health and metrics on TCP; the operator API on a Unix
socket, where the kernel says who is acting. No state of its own."""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
import socket
import stat
import struct
import unicodedata
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

from aiohttp import web
from twilio.request_validator import RequestValidator

from alertd.core.events import Action, CheckInPause, DeliveryReport, Drill, Input, OperatorCommand, Outcome, Reply
from alertd.core.model import Kind
from alertd.core.ports import Health
from alertd.core.results import Result, Verdict
from alertd.metrics import Metrics
from alertd.phones import mask, normalize
from alertd.store import Store

_LOGGER = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
MAX_BODY = 64 * 1024


@dataclass(frozen=True, slots=True)
class WebDeps:
    call: Callable[[Input], Awaitable[Result]]  # the engine: submit and wait for the commit
    store: Store
    metrics: Metrics
    health_checks: Mapping[str, Callable[[], Health]]
    auth_token: str | None  # Twilio's; None: webhooks are refused
    public_url: str | None
    # This instance's role and who is active (alertd.lease_keeper), shown by /healthz and `alertd status`.
    role: Callable[[], Mapping[str, object]] = lambda: {"role": "active"}


DEPS = web.AppKey("deps", WebDeps)


def make_app(deps: WebDeps) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[DEPS] = deps
    app.router.add_post("/twilio/sms", inbound_sms)
    app.router.add_post("/twilio/status", status_callback)
    # TCP cannot say which local user is calling, and a browser on this machine can reach it (CSRF).
    for path in ("/api/incidents/{tail:.*}", "/api/drills", "/api/checkins/{tail:.*}"):
        app.router.add_route("*", path, operator_elsewhere)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


async def _verified_form(request: web.Request) -> Mapping[str, str]:
    """The webhook's form fields, or 403 unless X-Twilio-Signature matches our public URL and token."""
    deps = request.app[DEPS]
    form = await request.post()
    params = {k: str(v) for k, v in form.items()}
    signature = request.headers.get("X-Twilio-Signature", "")
    if deps.auth_token is None:
        _LOGGER.warning("Twilio webhook refused: no auth token configured")
        raise web.HTTPForbidden(text="twilio is not configured")
    # Twilio signs the URL it called: ours as the public sees it, not as the proxy forwards it.
    base = deps.public_url.rstrip("/") if deps.public_url else f"{request.scheme}://{request.host}"
    url = base + request.path_qs
    if not signature or not RequestValidator(deps.auth_token).validate(url, params, signature):
        deps.metrics.invalid.labels(reason="bad_signature").inc()
        _LOGGER.warning("Twilio webhook %s with a bad signature from %s rejected", request.path, request.remote)
        raise web.HTTPForbidden(text="bad signature")
    return params


async def inbound_sms(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    params = await _verified_form(request)
    try:
        phone = normalize(params.get("From", ""))
    except ValueError:
        deps.metrics.invalid.labels(reason="unknown_sender").inc()
        _LOGGER.warning("Inbound SMS with an unusable sender ignored")
        return web.Response(text=EMPTY_TWIML, content_type="application/xml")
    sid = params.get("MessageSid") or params.get("SmsSid")
    if not sid:
        # Every inbound message from Twilio has one; without it a replay could not be recognised.
        raise web.HTTPBadRequest(text="MessageSid is required")
    result = await deps.call(Reply(phone, params.get("Body", ""), "twilio", message_id=f"twilio:{sid}"))
    _LOGGER.info("Inbound SMS %s from %s: %s", sid, mask(phone), result)
    return web.Response(text=EMPTY_TWIML, content_type="application/xml")


async def status_callback(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    params = await _verified_form(request)
    sid, status = params.get("MessageSid"), params.get("MessageStatus")
    if not sid or not status:
        raise web.HTTPBadRequest(text="MessageSid and MessageStatus are required")
    token = request.headers.get("I-Twilio-Idempotency-Token") or None
    await deps.call(DeliveryReport(sid, status, params.get("ErrorCode") or None, token))
    return web.Response(status=204)


_ACTIONS = {"ack": Action.ACKNOWLEDGE, "on_scene": Action.ON_SCENE, "resolve": Action.RESOLVE, "cancel": Action.CANCEL}
_OUTCOMES = {o.value: o for o in Outcome}
_OUTCOME_CHOICES = ", ".join(list(_OUTCOMES)[:-1]) + " or " + list(_OUTCOMES)[-1]  # "real, false_alarm or drill"
_KINDS = {k.value: k for k in Kind}
_KIND_CHOICES = ", ".join(list(_KINDS)[:-1]) + " or " + list(_KINDS)[-1]
DEFAULT_DRILL_KIND = Kind.FIRE
# What a drill must come to: an incident opened (or an open one at the household joined). Anything else,
# an unknown household included, is a drill that did not happen.
_DRILL_DONE = frozenset({Verdict.OPENED, Verdict.JOINED})
# What a pause or a resume must come to; an unknown household or anything else means it was not recorded.
_PAUSE_DONE = frozenset({Verdict.RECORDED, Verdict.ACTED})
MAX_HOUSEHOLD = 64  # a household id as given (the engine decides whether it exists)
MAX_UNTIL = 253402300800.0  # 10000-01-01 UTC: beyond it, no date can show the moment
# Headers a proxy adds: operator actions come straight from a local process, never through a proxy.
_PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
MAX_NAME = 64  # the name an operator gives (--by); the OS user is added to it, never taken from it
SOCKET_MODE = 0o660
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid (SO_PEERCRED, Linux)
STALE_PROBE_TIMEOUT_S = 1.0


async def operator_elsewhere(request: web.Request) -> web.Response:
    raise web.HTTPForbidden(
        text="operator actions are taken only on the daemon's Unix socket ([http] socket), e.g. with alertd ack"
    )


@dataclass(frozen=True, slots=True)
class Peer:
    """The process at the other end of a Unix socket connection, as the kernel saw it when it connected."""

    pid: int
    uid: int
    gid: int

    @property
    def user(self) -> str:
        try:
            return pwd.getpwuid(self.uid).pw_name
        except KeyError:
            return f"uid={self.uid}"


@dataclass(frozen=True, slots=True)
class OperatorAccess:
    """Who may act: root, alertd's own user, and members of the socket's group (as the file mode says)."""

    path: Path
    gid: int
    owner_uid: int
    inode: int  # of the socket file we bound: at exit, remove ours, never a successor's

    def allows(self, peer: Peer) -> bool:
        if peer.uid in (0, self.owner_uid) or peer.gid == self.gid:
            return True
        try:
            account = pwd.getpwuid(peer.uid)
        except KeyError:
            return False
        return self.gid in os.getgrouplist(account.pw_name, account.pw_gid)

    @property
    def group(self) -> str:
        try:
            return grp.getgrgid(self.gid).gr_name
        except KeyError:
            return str(self.gid)


ACCESS = web.AppKey("access", OperatorAccess)


def make_operator_app(deps: WebDeps, access: OperatorAccess) -> web.Application:
    """The operator API, served only on the Unix socket `access.path` (see open_operator_socket)."""
    app = web.Application(client_max_size=MAX_BODY)
    app[DEPS] = deps
    app[ACCESS] = access
    app.router.add_post("/api/incidents/{id:\\d+}/{action}", operator_action)
    app.router.add_post("/api/drills", operator_drill)
    app.router.add_post("/api/checkins/{household}/pause", operator_pause)
    app.on_cleanup.append(_remove_socket)
    return app


def peer_of(request: web.Request) -> Peer | None:
    """The connecting process's credentials, or None when the request did not come over a Unix socket."""
    sock = request.transport.get_extra_info("socket") if request.transport is not None else None
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return Peer(pid, uid, gid)


@dataclass(frozen=True, slots=True)
class _Operator:
    """An operator request that passed the guards: its JSON object and who acts."""

    deps: WebDeps
    body: Mapping[str, object]
    actor: str  # the name given, then the OS user the kernel names: "张三 (os:root)"


async def _operator(request: web.Request) -> _Operator:
    """The guards every operator request passes (or an HTTP error says why not): no proxy, no web page,
    JSON, over the Unix socket from a process that may act, with a valid name of who acts ("by")."""
    deps, access = request.app[DEPS], request.app[ACCESS]
    # Belt and braces behind the socket's mode: a proxy or a browser in front of the socket would make
    # every request look like the proxy's user, so anything that looks like either is refused.
    if any(header in request.headers for header in _PROXY_HEADERS):
        raise web.HTTPForbidden(text="operator actions are not accepted through a proxy")
    if "Origin" in request.headers:
        raise web.HTTPForbidden(text="operator actions are not accepted from web pages")
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="operator actions take application/json")
    peer = peer_of(request)
    if peer is None:
        raise web.HTTPForbidden(text="operator actions are taken only on the daemon's Unix socket")
    if not access.allows(peer):
        # The socket's mode already keeps such users out; reaching here means the file was loosened.
        _LOGGER.warning(
            "Operator request from %s (pid %d) refused: not root, alertd's user or in group %s",
            peer.user, peer.pid, access.group,
        )  # fmt: skip
        raise web.HTTPForbidden(text=f"only root, alertd's user and group {access.group} may act")
    try:
        body = await request.json()
    except ValueError as err:
        raise web.HTTPBadRequest(text="body must be JSON") from err
    if not isinstance(body, dict):
        body = {}
    by = str(body.get("by") or "").strip()
    if problem := _name_problem(by):
        raise web.HTTPBadRequest(text=f'"by" (who is acting): {problem}')
    # The name is what the operator says; the OS user is what the kernel says. Both go in the record.
    return _Operator(deps, body, f"{by} (os:{peer.user})")


def _answer(result: Result, actor: str, ok: bool) -> web.Response:
    return web.json_response(
        {"ok": ok, "result": str(result), "verdict": result.verdict.value, "actor": actor},
        status=200 if ok else 409,
    )


async def operator_action(request: web.Request) -> web.Response:
    operator = await _operator(request)
    action = _ACTIONS.get(request.match_info["action"])
    if action is None:
        raise web.HTTPNotFound(text=f"unknown action; use one of {', '.join(_ACTIONS)}")
    given = operator.body.get("outcome")
    outcome = _OUTCOMES.get(given) if isinstance(given, str) else None
    if given is not None and outcome is None:
        raise web.HTTPBadRequest(text=f'"outcome" must be {_OUTCOME_CHOICES}')
    result = await operator.deps.call(OperatorCommand(int(request.match_info["id"]), action, operator.actor, outcome))
    return _answer(result, operator.actor, result.accepted)


async def operator_drill(request: web.Request) -> web.Response:
    """演练: {"household": "h0102", "kind": "fire", "by": "张三"} opens a real alarm there, tagged as a drill."""
    operator = await _operator(request)
    household = _household(operator.body.get("household"), '"household"')
    given = operator.body.get("kind")
    kind = DEFAULT_DRILL_KIND if given is None else _KINDS.get(given) if isinstance(given, str) else None
    if kind is None:
        raise web.HTTPBadRequest(text=f'"kind" must be {_KIND_CHOICES}')
    result = await operator.deps.call(Drill(household, kind, operator.actor))
    return _answer(result, operator.actor, result.accepted and result.verdict in _DRILL_DONE)


async def operator_pause(request: web.Request) -> web.Response:
    """{"until": <epoch seconds>, "by": "张三"} pauses the household's daily check-in until then;
    {"until": null, ...} resumes it."""
    operator = await _operator(request)
    household = _household(request.match_info["household"], "the household")
    if "until" not in operator.body:  # never a resume by omission
        raise web.HTTPBadRequest(text='"until" is required: when the pause ends (epoch seconds), or null to resume')
    until = operator.body["until"]
    if until is not None and not _is_moment(until):
        raise web.HTTPBadRequest(text='"until" must be a moment (epoch seconds, after 1970), or null to resume')
    moment = None if until is None else float(until)
    result = await operator.deps.call(CheckInPause(household, moment, operator.actor))
    return _answer(result, operator.actor, result.accepted and result.verdict in _PAUSE_DONE)


def _is_moment(given: object) -> TypeGuard[int | float]:
    # Not a bool (JSON's true is no time); NaN and the infinities (which Python's JSON reads) fail the range.
    return isinstance(given, int | float) and not isinstance(given, bool) and 0 < given < MAX_UNTIL


def _household(given: object, what: str) -> str:
    """A household id as given: a non-empty string of at most MAX_HOUSEHOLD characters (or 400)."""
    if not isinstance(given, str) or not 0 < len(given) <= MAX_HOUSEHOLD:
        raise web.HTTPBadRequest(text=f"{what} must be a household id (1 to {MAX_HOUSEHOLD} characters)")
    return given


def _name_problem(name: str) -> str | None:
    if not name:
        return "required"
    if len(name) > MAX_NAME:
        return f"at most {MAX_NAME} characters"
    if any(unicodedata.category(c).startswith("C") for c in name):
        return "no control characters"  # a line break would forge a line in `alertd show`
    if "(os:" in unicodedata.normalize("NFKC", name).casefold():  # NFKC: "（ｏｓ：" is "(os:" too
        return "the OS user is added by alertd, not given"
    return None


def open_operator_socket(path: Path, group: str | None) -> tuple[socket.socket, OperatorAccess]:
    """Bind the operator socket, mode 0660 and in `group` (None: the daemon's group), not yet listening.

    Raises OSError with a reason: the group is unknown, or the path is taken by a file or a live socket.
    """
    gid = None
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise OSError(f"no group {group}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound = False
    try:
        sock.bind(str(path))
        bound = True
        # Nobody can connect before listen(): mode and group are right before the first connection.
        os.chmod(path, SOCKET_MODE)
        if gid is not None:
            try:
                os.chown(path, -1, gid)
            except PermissionError as err:
                # Only root, or a member of the group allowed to call chown, may give a file to a group.
                raise OSError(
                    f"cannot give it to group {group}: {err.strerror} (alertd's user must be in the group, "
                    "and under systemd chown must be allowed: docs/security.md)"
                ) from err
        made = os.stat(path)
        return sock, OperatorAccess(path, made.st_gid, os.geteuid(), made.st_ino)
    except BaseException:
        sock.close()
        if bound:
            with contextlib.suppress(OSError):
                path.unlink()
        raise


def _clear_stale(path: Path) -> None:
    """Remove a socket left by a daemon that died; never a file, nor a socket someone still listens on."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(STALE_PROBE_TIMEOUT_S)  # a live server with a full backlog does not answer at once
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:  # nobody listens: left behind by a daemon that died
            path.unlink()
            return
        except TimeoutError:
            pass
    raise OSError(f"{path} is in use by another process (another alertd?)")


async def _remove_socket(app: web.Application) -> None:
    access = app[ACCESS]
    with contextlib.suppress(FileNotFoundError):
        if os.lstat(access.path).st_ino == access.inode:
            access.path.unlink()


async def healthz(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    checks: dict[str, dict[str, object]] = {}
    for name, check in deps.health_checks.items():
        health = check()
        checks[name] = {"ok": health.ok, "detail": health.detail}
    try:
        await deps.store.ping()
        checks["store"] = {"ok": True, "detail": "ok"}
    except Exception as err:  # noqa: BLE001 (any store failure is "not healthy", reported, not raised)
        checks["store"] = {"ok": False, "detail": str(err)}
    ok = all(c["ok"] for c in checks.values())
    return web.json_response({"ok": ok, **deps.role(), "checks": checks}, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[DEPS].metrics.render(), content_type="text/plain", charset="utf-8")
