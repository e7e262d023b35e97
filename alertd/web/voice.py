"""Twilio Programmable Voice webhooks for alert calls (placed by alertd.channels.twilio_voice).

Twilio fetches what to say from /twilio/voice, posts the key pressed to /twilio/voice/gather and the call's
progress to /twilio/voice/status. Every request's signature is checked before anything else (a forged or
altered request gets 403). The notification id `n` rides in the query of the URL Twilio signs, so it
cannot be changed without breaking the signature.

A machine (answering machine, voicemail, fax, as Twilio's answering-machine detection says) hears the
alert once and is never asked for, or credited with, a key.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from twilio.twiml.voice_response import VoiceResponse

from alertd.core.events import CallReport, CallStatus
from alertd.core.records import State
from alertd.core.results import Result, Verdict
from alertd.errors import AlertdError
from alertd.store import OutboxRow
from alertd.web.app import DEPS, WebDeps, _verified_form

__all__ = ["GATHER_TIMEOUT_S", "LANGUAGE", "VOICE", "VoiceSettings", "add_voice_routes"]

_LOGGER = logging.getLogger(__name__)

LANGUAGE = "cmn-CN"
# Twilio's default voice ("man") does not speak cmn-CN: without a voice that does, <Say> fails.
VOICE = "Polly.Zhiyu"
GATHER_TIMEOUT_S = 8  # seconds of silence after the prompt before the call gives up on a key
PAUSE_S = 1  # between the two readings of the alert

PROMPT = "收到请按1，已到场请按2，重听请按9"
NO_KEY = "未收到按键，再见"
INVALID_KEY = "无效按键"
ACKNOWLEDGED = "已确认收到，谢谢"
ON_SCENE = "已记录到场，谢谢"
ALREADY_ACKNOWLEDGED = "此警情已有人确认，谢谢"
ALREADY_ON_SCENE = "已有人到场，谢谢"
OVER = "此警情已结束，谢谢"
NOT_RECORDED = "未能记录您的按键，请回复短信{digits}"

# AnsweredBy values that are not a person (Twilio's answering-machine detection). "unknown" is not among
# them: a person who says nothing is detected as unknown, and must still be able to press a key.
MACHINE_ANSWERS = frozenset({"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"})
# Twilio's CallStatus values that are outcomes; queued, initiated and ringing are not.
_OUTCOMES = {
    "in-progress": CallStatus.ANSWERED,
    "completed": CallStatus.COMPLETED,
    "busy": CallStatus.BUSY,
    "no-answer": CallStatus.NO_ANSWER,
    "failed": CallStatus.FAILED,
    "canceled": CallStatus.CANCELED,
}
_PROGRESS = frozenset({"queued", "initiated", "ringing"})
# A key: what is said once it is recorded; the states in which someone did it already, and what is said then.
_KEYS = {
    "1": (ACKNOWLEDGED, frozenset({State.ACKNOWLEDGED, State.ON_SCENE}), ALREADY_ACKNOWLEDGED),
    "2": (ON_SCENE, frozenset({State.ON_SCENE}), ALREADY_ON_SCENE),
}
_ID = re.compile(r"[1-9][0-9]{0,17}")  # an outbox row id; ASCII only (int() would take other digits)


@dataclass(frozen=True, slots=True)
class VoiceSettings:
    voice: str | None  # None: the account's default voice for the language (Twilio console)
    gather_timeout_s: int


SETTINGS = web.AppKey("voice_settings", VoiceSettings)


def add_voice_routes(
    app: web.Application, *, voice: str | None = VOICE, gather_timeout_s: int = GATHER_TIMEOUT_S
) -> None:
    """Serve the alert-call webhooks on `app`, which must hold DEPS (alertd.web.app.make_app's apps do)."""
    app[SETTINGS] = VoiceSettings(voice, gather_timeout_s)
    app.router.add_post("/twilio/voice", call_twiml)
    app.router.add_post("/twilio/voice/gather", gather)
    app.router.add_post("/twilio/voice/status", call_status)


async def call_twiml(request: web.Request) -> web.Response:
    """What the called phone hears: the alert twice and the keys, or the alert once for a machine."""
    deps, settings = request.app[DEPS], request.app[SETTINGS]
    params = await _verified_form(request)
    found = await _notification(deps, request)
    response = VoiceResponse()
    if found is None:
        response.hangup()
        return _twiml(response)
    n, row = found
    sid = params.get("CallSid") or None
    if _is_machine(params):
        # Leave the alert on the voicemail; the report says a machine answered, which acknowledges nothing.
        _say(response, settings, row.body)
        response.hangup()
        token = f"{sid}:machine" if sid else None  # from signed fields: a replay is recognised
        await _submit(deps, CallReport(n, CallStatus.ANSWERED, machine=True, provider_id=sid, token=token))
        return _twiml(response)
    menu = response.gather(
        input="dtmf",
        num_digits=1,
        action=f"{_base(request, deps)}/twilio/voice/gather?n={n}",
        method="POST",
        timeout=settings.gather_timeout_s,
    )
    _say(menu, settings, row.body)
    menu.pause(length=PAUSE_S)
    _say(menu, settings, row.body)
    _say(menu, settings, PROMPT)
    # Reached only when no key was pressed (Twilio goes on after a Gather that timed out).
    _say(response, settings, NO_KEY)
    response.hangup()
    return _twiml(response)


async def gather(request: web.Request) -> web.Response:
    """The key pressed: 1 acknowledged, 2 on scene (both reported to the engine), 9 hear it again."""
    deps, settings = request.app[DEPS], request.app[SETTINGS]
    params = await _verified_form(request)
    found = await _notification(deps, request)
    response = VoiceResponse()
    if found is None:
        response.hangup()
        return _twiml(response)
    n, row = found
    sid = params.get("CallSid") or None
    digits = params.get("Digits", "")
    if _is_machine(params):
        # Tones from a machine (a voicemail menu, a fax) are nobody's acknowledgement.
        _LOGGER.warning("Keys from a machine on call %s for notification %d ignored", sid, n)
        response.hangup()
        return _twiml(response)
    if digits in _KEYS:
        # The token is made of signed fields: a retried or replayed key press is recognised, whatever
        # idempotency header comes with it (the header is not signed).
        token = f"{sid}:key:{digits}" if sid else None
        report = CallReport(n, CallStatus.ANSWERED, digits=digits, provider_id=sid, token=token)
        result = await _submit(deps, report)
        _LOGGER.info("Key %s on call %s for notification %d: %s", digits, sid, n, result or "not recorded")
        _say(response, settings, await _confirmation(deps, row, digits, result))
        response.hangup()
        return _twiml(response)
    if digits != "9":
        _say(response, settings, INVALID_KEY)
    response.redirect(f"{_base(request, deps)}/twilio/voice?n={n}", method="POST")
    return _twiml(response)


async def call_status(request: web.Request) -> web.Response:
    """Twilio's word on the call: answered, then how it ended (or that it never got through)."""
    deps = request.app[DEPS]
    params = await _verified_form(request)
    n = _notification_id(request)
    sid, status = params.get("CallSid"), params.get("CallStatus")
    if n is None or not sid or not status:
        raise web.HTTPBadRequest(text="n, CallSid and CallStatus are required")
    if status in _PROGRESS:
        return web.Response(status=204)
    outcome = _OUTCOMES.get(status)
    if outcome is None:
        _LOGGER.warning("Call %s for notification %d: unknown status %r ignored", sid, n, status)
        return web.Response(status=204)
    token = request.headers.get("I-Twilio-Idempotency-Token") or None
    report = CallReport(n, outcome, machine=_is_machine(params), provider_id=sid, token=token)
    # Unlike a key press, a failure to record here is raised: the 500 lets Twilio retry the callback.
    await deps.call(report)
    return web.Response(status=204)


def _notification_id(request: web.Request) -> int | None:
    raw = request.query.get("n", "")
    return int(raw) if _ID.fullmatch(raw) else None


async def _notification(deps: WebDeps, request: web.Request) -> tuple[int, OutboxRow] | None:
    n = _notification_id(request)
    row = await deps.store.notification(n) if n is not None else None
    if n is None or row is None:
        # Signed by Twilio, so from a URL we gave it: a row pruned since, or another alertd's database.
        _LOGGER.warning("Call webhook for unknown notification %r: hanging up", request.query.get("n"))
        return None
    return n, row


async def _submit(deps: WebDeps, report: CallReport) -> Result | None:
    """The engine's result, or None when it could not record the report (the caller hears so)."""
    try:
        return await deps.call(report)
    except AlertdError as err:  # a full disk, a store that went away: the person on the line must know
        _LOGGER.error("Call report for notification %d not recorded: %s", report.notification_id, err)
        return None


async def _confirmation(deps: WebDeps, row: OutboxRow, digits: str, result: Result | None) -> str:
    """What to tell the person who pressed `digits`, from what the engine made of it."""
    done, already, taken = _KEYS[digits]
    if result is None:
        return NOT_RECORDED.format(digits=digits)
    if result.verdict in (Verdict.ACTED, Verdict.REPLAY):  # a replay: this very key press, recorded before
        return done
    if result.verdict in (Verdict.REFUSED, Verdict.NOT_OPEN, Verdict.NO_INCIDENT):
        # Why it was refused is read from the incident's state, not from the result's words.
        incident = await deps.store.incident(row.incident_id) if row.incident_id is not None else None
        if incident is None or not incident.active:
            return OVER
        if incident.state in already:
            return taken
    return NOT_RECORDED.format(digits=digits)


def _is_machine(params: Mapping[str, str]) -> bool:
    return params.get("AnsweredBy", "") in MACHINE_ANSWERS


def _base(request: web.Request, deps: WebDeps) -> str:
    # The same public base _verified_form checks signatures against: Twilio signs the URLs we give it.
    return deps.public_url.rstrip("/") if deps.public_url else f"{request.scheme}://{request.host}"


def _say(verb: Any, settings: VoiceSettings, text: str) -> None:
    # verb: the VoiceResponse or a Gather in it (the SDK is untyped). Every <Say> names its language and voice.
    verb.say(text, language=LANGUAGE, voice=settings.voice)


def _twiml(response: VoiceResponse) -> web.Response:
    return web.Response(text=str(response), content_type="application/xml")
