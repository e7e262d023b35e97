"""The console's JSON API, `/api/v1/…`: the same data and actions as the pages, with the same roles and
groups, for integrations (a 12345 platform). Bearer tokens only (`alertd users token NAME`): no cookies are
read here, so no web page can act through it (no CSRF). Documented in docs/api.md and docs/openapi.json."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from alertd.core.access import User
from alertd.core.events import Action, Evaluation, OperatorCommand, Outcome, Satisfaction, Via
from alertd.core.model import Roster
from alertd.core.records import Incident
from alertd.core.results import Result
from alertd.phones import mask
from alertd.report import device_dict, device_health, incident_dict
from alertd.web.console import CONSOLE, MAX_NOTE
from alertd.web.reports import month_bounds

PREFIX = "/api/v1"
API_USER = web.RequestKey("api_user", User)
_ACTIONS = {a.value: a for a in (Action.ACKNOWLEDGE, Action.ON_SCENE, Action.RESOLVE, Action.CANCEL)}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_api(app: web.Application) -> None:
    routes = [
        ("GET", "/incidents", list_incidents),
        ("GET", "/incidents/{id:\\d+}", get_incident),
        ("POST", "/incidents/{id:\\d+}/actions", post_action),
        ("POST", "/incidents/{id:\\d+}/evaluation", post_evaluation),
        ("GET", "/devices", list_devices),
        ("GET", "/reports", get_report),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, PREFIX + path, _authenticated(handler))


def _problem(status: int, message: str) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden, 404: web.HTTPNotFound}[status]
    headers = {"WWW-Authenticate": 'Bearer realm="alertd"'} if status == 401 else None
    return cls(
        text=json.dumps({"error": message}, ensure_ascii=False), content_type="application/json", headers=headers
    )


def _authenticated(handler: Handler) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        deps = request.app[CONSOLE]
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        user = await deps.accounts.bearer(token.strip(), deps.clock()) if scheme.lower() == "bearer" else None
        if user is None:
            raise _problem(401, "a valid bearer token is required (alertd users token NAME)")
        request[API_USER] = user
        return await handler(request)

    return guarded


async def _visible(request: web.Request) -> Incident:
    deps, user = request.app[CONSOLE], request[API_USER]
    incident = await deps.store.incident(int(request.match_info["id"]))
    if incident is None:
        raise _problem(404, "no such incident")
    if not user.sees(incident.group_id):
        raise _problem(403, "this incident is not in your groups")
    return incident


def _record(incident: Incident, roster: Roster) -> dict[str, Any]:
    return incident_dict(incident, roster) | {
        "maintenance": incident.maintenance.value if incident.maintenance else None,
        "satisfaction": incident.satisfaction.value if incident.satisfaction else None,
        "evaluated_by": incident.evaluated_by,
    }


async def list_incidents(request: web.Request) -> web.StreamResponse:
    deps, user = request.app[CONSOLE], request[API_USER]
    try:
        limit = min(1000, max(1, int(request.query.get("limit", "200"))))
    except ValueError:
        raise _problem(400, "limit must be a number") from None
    open_only = request.query.get("open", "false").lower() in ("1", "true", "yes")
    incidents = await deps.store.incidents(active_only=open_only, limit=limit)
    roster = deps.roster()
    return web.json_response([_record(i, roster) for i in incidents if user.sees(i.group_id)])


async def get_incident(request: web.Request) -> web.StreamResponse:
    deps = request.app[CONSOLE]
    incident = await _visible(request)
    timeline = await deps.store.timeline(incident.id)
    notes = await deps.store.notifications(incident.id)
    body = _record(incident, deps.roster()) | {
        "timeline": [{"at": t.at, "event": t.event, "actor": t.actor, "detail": t.detail} for t in timeline],
        "notifications": [
            {
                "channel": n.channel.value, "purpose": n.purpose.value, "recipient": n.recipient,
                "address": mask(n.address) if n.address.startswith("+") else n.address,
                "status": n.status.value, "delivery": n.delivery, "carrier": n.carrier, "updated_at": n.updated_at,
            }
            for n in notes
        ],
    }  # fmt: skip
    return web.json_response(body)


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _problem(400, "the body must be JSON") from None
    if not isinstance(body, dict):
        raise _problem(400, "the body must be a JSON object")
    return body


def _answer(result: Result, actor: str) -> web.Response:
    body = {"ok": result.accepted, "result": str(result), "verdict": result.verdict.value, "actor": actor}
    return web.json_response(body, status=200 if result.accepted else 409)


async def _acting(request: web.Request) -> tuple[Incident, dict[str, Any], str]:
    """The incident a POST acts on, its JSON body and the actor as recorded, or the refusal."""
    user = request[API_USER]
    incident = await _visible(request)
    if not user.may_act:
        raise _problem(403, "a viewer account reads only")
    return incident, await _json(request), f"{user.name} (api:{request.remote or '?'})"


async def post_action(request: web.Request) -> web.StreamResponse:
    incident, body, actor = await _acting(request)
    action = _ACTIONS.get(str(body.get("action", "")))
    if action is None:
        raise _problem(400, f"action must be one of {', '.join(_ACTIONS)}")
    outcome_value = body.get("outcome")
    try:
        outcome = Outcome(outcome_value) if outcome_value is not None else None
    except ValueError:
        raise _problem(400, f"outcome must be one of {', '.join(o.value for o in Outcome)}") from None
    note = " ".join(str(body.get("note") or "").split())[:MAX_NOTE]
    command = OperatorCommand(incident.id, action, actor, outcome, note, via=Via.API)
    return _answer(await request.app[CONSOLE].call(command), actor)


async def post_evaluation(request: web.Request) -> web.StreamResponse:
    incident, body, actor = await _acting(request)
    try:
        satisfaction = Satisfaction(str(body.get("satisfaction", "")))
    except ValueError:
        raise _problem(400, f"satisfaction must be one of {', '.join(s.value for s in Satisfaction)}") from None
    return _answer(await request.app[CONSOLE].call(Evaluation(incident.id, satisfaction, actor, Via.API)), actor)


async def list_devices(request: web.Request) -> web.StreamResponse:
    deps, user = request.app[CONSOLE], request[API_USER]
    roster = deps.roster()
    group = request.query.get("group")
    if group is not None and not user.sees(group):
        raise _problem(403, "this group is not yours")
    rows = [
        device_dict(device, health, roster)
        for device, health in device_health(roster, await deps.store.devices(), deps.profiles(), deps.clock())
        if user.sees(roster.households[device.household_id].group_id)
        and group in (None, roster.households[device.household_id].group_id)
    ]
    return web.json_response(rows)


async def get_report(request: web.Request) -> web.StreamResponse:
    from alertd.core.stats import figures  # noqa: PLC0415 (with the report, as on the page)

    deps, user = request.app[CONSOLE], request[API_USER]
    month = request.query.get("month", "")
    try:
        start, end = month_bounds(month, deps.zone)
    except ValueError as err:
        raise _problem(400, str(err)) from None
    roster = deps.roster()
    ready = {
        d.id: h.healthy for d, h in device_health(roster, await deps.store.devices(), deps.profiles(), deps.clock())
    }
    rows = figures(
        await deps.store.incidents_between(start, end), await deps.store.texts_between(start, end), ready, roster,
        by_village=request.query.get("by") == "village", groups=[g for g in roster.groups if user.sees(g)],
    )  # fmt: skip
    return web.json_response(
        [
            {
                "key": r.key, "label": r.label, "alarms": r.alarms, "kinds": {k.value: n for k, n in r.kinds.items()},
                "real": r.real, "false_alarms": r.false_alarms, "drills": r.drills, "still_open": r.still_open,
                "false_alarm_rate": r.false_alarm_rate, "ack_p50_s": r.ack_p50_s, "ack_p90_s": r.ack_p90_s,
                "scene_p50_s": r.scene_p50_s, "scene_p90_s": r.scene_p90_s, "texts_sent": r.texts_sent,
                "texts_delivered": r.texts_delivered, "devices": r.devices, "devices_ready": r.devices_ready,
                "maintenance": r.maintenance, "ratings": {s.value: n for s, n in r.ratings.items()},
            }
            for r in rows
        ]
    )  # fmt: skip
