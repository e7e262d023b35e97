"""HTTP side: Twilio webhooks (signature verified), the operator API, health and metrics. No state of its own."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web
from twilio.request_validator import RequestValidator

from alertd.channels.base import Health
from alertd.core.events import Action, DeliveryReport, Input, OperatorCommand, Reply
from alertd.metrics import Metrics
from alertd.phones import mask, normalize
from alertd.store import Store

_LOGGER = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
MAX_BODY = 64 * 1024


@dataclass(frozen=True, slots=True)
class WebDeps:
    call: Callable[[Input], Awaitable[str]]  # the engine: submit and wait for the commit
    store: Store
    metrics: Metrics
    health_checks: Mapping[str, Callable[[], Health]]
    auth_token: str | None  # Twilio's; None: webhooks are refused
    public_url: str | None


DEPS = web.AppKey("deps", WebDeps)


def make_app(deps: WebDeps) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[DEPS] = deps
    app.router.add_post("/twilio/sms", inbound_sms)
    app.router.add_post("/twilio/status", status_callback)
    app.router.add_post("/api/incidents/{id:\\d+}/{action}", operator_action)
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


async def operator_action(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    # The HTTP side may face the internet for Twilio's webhooks; operator actions never do.
    forwarded = "Forwarded" in request.headers or "X-Forwarded-For" in request.headers
    if forwarded or not _is_loopback(request.remote):
        raise web.HTTPForbidden(text="operator actions are accepted from this machine only")
    action = _ACTIONS.get(request.match_info["action"])
    if action is None:
        raise web.HTTPNotFound(text=f"unknown action; use one of {', '.join(_ACTIONS)}")
    try:
        body = await request.json()
    except ValueError as err:
        raise web.HTTPBadRequest(text="body must be JSON") from err
    by = str(body.get("by") or "").strip() if isinstance(body, dict) else ""
    if not by:
        raise web.HTTPBadRequest(text='"by" (who is acting) is required')
    outcome = body.get("outcome")
    if outcome not in (None, "real", "false_alarm", "drill"):
        raise web.HTTPBadRequest(text='"outcome" must be real, false_alarm or drill')
    result = await deps.call(OperatorCommand(int(request.match_info["id"]), action, by, outcome))
    ok = not result.startswith(("incident ", "internal"))
    return web.json_response({"ok": ok, "result": result}, status=200 if ok else 409)


def _is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


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
    return web.json_response({"ok": ok, "checks": checks}, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[DEPS].metrics.render(), content_type="text/plain", charset="utf-8")
