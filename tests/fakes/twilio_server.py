"""A loopback stand-in for Twilio's REST API, close enough that the real `twilio` client talks to it.

Covers Messages and Calls create/list, Twilio's error JSON, scripted faults (FIFO, shared by every
endpoint), per-number rejections, and the webhooks Twilio would send us (status callbacks, inbound SMS),
signed the way Twilio signs them. A call is then played as Twilio would, in the background, per a script
set for its number (script_call): progress callbacks, the TwiML fetched from the call's Url and
executed (Say, Pause, Gather, Redirect, Hangup), keys sent to a Gather's action; everything recorded
on the call (PlacedCall) for tests to assert on.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import secrets
import signal
import sys
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlencode, urljoin

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

__all__ = ["CallScript", "PlacedCall", "Said", "SentMessage", "TwilioServer", "Webhook"]

API_VERSION = "2010-04-01"
DEFAULT_PAGE_SIZE = 50
WEBHOOK_TIMEOUT_S = 5.0  # Twilio waits 15 s for a webhook; a test should not
MAX_DOCUMENTS = 20  # TwiML documents one call may fetch (Redirect loops end here, as an error)
CALL_EVENTS = ("initiated", "ringing", "answered", "completed")
MACHINE_DETECTION = ("Enable", "DetectMessageEnd")
# What a script's answer makes Twilio's answering-machine detection say (AnsweredBy).
_ANSWERED_BY = {"human": "human", "machine": "machine_start", "fax": "fax"}
_UNANSWERED = ("busy", "no-answer", "failed", "canceled")
ANSWERS = ("human", "machine", "fax", *_UNANSWERED, "queued")

_T = TypeVar("_T")

# Error codes and wording as Twilio documents them (https://www.twilio.com/docs/api/errors).
_DEFAULT_CODES = {400: 21211, 401: 20003, 403: 20403, 404: 20404, 429: 20429, 500: 20500, 503: 20503}
_MESSAGES = {
    20003: "Authenticate",
    20403: "Forbidden",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    20503: "Service Unavailable",
    21610: "Attempt to send to unsubscribed recipient",
    21626: "Invalid 'StatusCallbackEvent'",
}


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One message the fake accepted."""

    sid: str
    to: str
    from_: str
    body: str
    status_callback: str | None
    received_monotonic: float
    received_at: float  # epoch seconds

    def to_json(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "to": self.to,
            "from": self.from_,
            "body": self.body,
            "status_callback": self.status_callback,
            "received_at": self.received_at,
        }


@dataclass(frozen=True, slots=True)
class CallScript:
    """What happens to a call to one number (TwilioServer.script_call)."""

    answer: str = "human"  # one of ANSWERS; "queued": never dialed (Twilio's queue), nothing is played
    press: tuple[str, ...] = ()  # one key per Gather reached, in order; then silence (the Gather times out)
    after_s: float = 0.02  # ringing before the answer (or before busy, no-answer...)
    answered_by: str | None = None  # AnsweredBy instead of the answer's own (e.g. "machine_end_beep", "unknown")


@dataclass(frozen=True, slots=True)
class Webhook:
    """One request the fake made to the application during a call, and its answer."""

    kind: str  # "status" (progress callback), "twiml" (the call's Url), "gather" (a Gather's action), "redirect"
    url: str
    method: str
    params: dict[str, str]
    headers: dict[str, str]
    status: int  # the application's HTTP status; 0 when it could not be reached
    body: str
    content_type: str = ""  # of the answer


@dataclass(frozen=True, slots=True)
class Said:
    """One <Say> the called person heard."""

    text: str
    language: str | None
    voice: str | None


@dataclass(slots=True, eq=False)
class PlacedCall:
    """One call the fake accepted, and (as it is played) everything that happened on it."""

    sid: str
    to: str
    from_: str
    url: str
    method: str
    status_callback: str | None
    status_callback_method: str
    status_events: tuple[str, ...]  # progress events sent to status_callback
    machine_detection: str | None
    timeout: int | None
    received_at: float  # epoch seconds
    status: str = "queued"
    answered_by: str | None = None  # set only when machine detection was asked for
    start_time: float | None = None  # when it was dialed
    end_time: float | None = None
    webhooks: list[Webhook] = field(default_factory=list)
    said: list[Said] = field(default_factory=list)
    digits: list[str] = field(default_factory=list)  # keys sent to Gather actions
    errors: list[str] = field(default_factory=list)  # what Twilio would log as debugger errors
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # set once the play is over

    @property
    def duration_s(self) -> int | None:
        """Seconds from dialing to the end; None until it ends."""
        if self.end_time is None or self.start_time is None:
            return None
        return int(self.end_time - self.start_time)

    @property
    def callbacks(self) -> list[Webhook]:
        return [w for w in self.webhooks if w.kind == "status"]

    @property
    def statuses(self) -> list[str]:
        """CallStatus of each progress callback, in order."""
        return [w.params["CallStatus"] for w in self.callbacks]

    @property
    def documents(self) -> list[Webhook]:
        """The TwiML fetches: the call's Url, Gather actions and Redirects, in order."""
        return [w for w in self.webhooks if w.kind != "status"]

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.said]


@dataclass(frozen=True, slots=True)
class _Fault:
    status: int | None = None  # answer with this HTTP error
    code: int | None = None
    hang_s: float | None = None  # or delay the answer, then process normally


def _rfc2822(epoch: float) -> str:
    return format_datetime(datetime.fromtimestamp(epoch, UTC), usegmt=True)


def _parse_filter_date(raw: str) -> tuple[datetime, bool]:
    """Twilio's DateSent filters take "YYYY-MM-DD" or (as the python client sends) ISO 8601 with Z."""
    if len(raw) == 10:
        return datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=UTC), True
    return datetime.strptime(raw, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC), False


def _filter_date(found: list[_T], key: str, raw: str, stamp: Callable[[_T], float | None]) -> list[_T]:
    """Twilio's date filters: `Field>` on or after, `Field<` on or before, `Field` on; no date never matches."""
    bound, date_only = _parse_filter_date(raw)
    kept = []
    for item in found:
        epoch = stamp(item)
        if epoch is None:
            continue
        when = datetime.fromtimestamp(int(epoch), UTC)  # Twilio dates have 1 s resolution
        a, b = (when.date(), bound.date()) if date_only else (when, bound)
        if (key.endswith(">") and a >= b) or (key.endswith("<") and a <= b) or (key[-1].isalpha() and a == b):
            kept.append(item)
    return kept


def _error_body(status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class TwilioServer:
    """`async with TwilioServer(sid, token) as server:` then point the client at `server.base_url`."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_message: Callable[[SentMessage], None] | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.messages: list[SentMessage] = []
        self.request_count = 0
        self.hanging = 0  # requests held by a hang right now (hang_next, hang_all)
        self._host = host
        self._port = port
        self._on_message = on_message
        self._script: deque[_Fault] = deque()
        self._fail_all: _Fault | None = None
        self._rejected: dict[str, int] = {}
        self._lookup_refusal: int | None = None
        self.last_webhook: tuple[str, dict[str, str], dict[str, str]] | None = None  # url, form, headers
        self.calls: list[PlacedCall] = []
        self._call_scripts: dict[str, deque[CallScript]] = {}
        self._players: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Condition()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._bound_port: int | None = None

        self.app = web.Application()
        base = f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json"
        self.app.router.add_post(base, self._create)
        self.app.router.add_get(base, self._list)
        calls = f"/{API_VERSION}/Accounts/{{account_sid}}/Calls.json"
        self.app.router.add_post(calls, self._create_call)
        self.app.router.add_get(calls, self._list_calls)

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._bound_port is None:
            raise RuntimeError("server not started")
        return f"http://{self._host}:{self._bound_port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self._bound_port = int(self._runner.addresses[0][1])  # the real port when asked for port 0
        self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        self._closing.set()  # release hung handlers so shutdown does not wait for them
        # Calls still playing end with the server (a test that cares waits for call_ended first).
        for task in self._players:
            task.cancel()
        await asyncio.gather(*self._players, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> TwilioServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- fault programming -------------------------------------------------------------------------

    def fail_next(self, status: int, *, times: int = 1, code: int | None = None) -> None:
        """The next `times` API requests get this HTTP error (Twilio error JSON)."""
        for _ in range(times):
            self._script.append(_Fault(status=status, code=code))

    def hang_next(self, seconds: float, *, times: int = 1) -> None:
        """Delay the next answers; the request is then processed (as Twilio may accept after we gave up)."""
        for _ in range(times):
            self._script.append(_Fault(hang_s=seconds))

    def reject_number(self, number: str, code: int = 21211) -> None:
        """Messages to `number` fail with HTTP 400 and this Twilio code."""
        self._rejected[number] = code

    def refuse_lookups(self, status: int | None) -> None:
        """Message lists (GET) get this HTTP error while sends (POST) still work, as with an API key that
        may send but not read (403) or a proxy that forwards only POST (404); None lifts it."""
        self._lookup_refusal = status

    def fail_all(self, status: int, code: int | None = None) -> None:
        """Every request fails until recover(); the FIFO script still goes first."""
        self._fail_all = _Fault(status=status, code=code)

    def hang_all(self, seconds: float) -> None:
        """Every request is held this long before it is processed, until recover(): a Twilio that takes
        connections and says nothing. The FIFO script still goes first."""
        self._fail_all = _Fault(hang_s=seconds)

    def recover(self) -> None:
        self._fail_all = None
        self._script.clear()

    def script_call(
        self,
        number: str,
        answer: str = "human",
        press: str | Sequence[str] | None = None,
        *,
        after_s: float = 0.02,
        answered_by: str | None = None,
    ) -> None:
        """What happens to the next call to `number`: it is answered by a "human", a "machine" or a "fax", or
        ends "busy", "no-answer", "failed", "canceled", or stays "queued" (never dialed); `press` is the key
        (or the keys, one per Gather reached: "9" then "1" is ("9", "1")) pressed once each Gather's prompts
        were heard. Scripts queue per number; the last one stays for every later call. Unscripted numbers
        are answered by a human who presses nothing."""
        if answer not in ANSWERS:
            raise ValueError(f"answer must be one of {', '.join(ANSWERS)}")
        keys = (press,) if isinstance(press, str) else tuple(press or ())
        script = CallScript(answer, keys, after_s, answered_by)
        self._call_scripts.setdefault(number, deque()).append(script)

    def _next_script(self, number: str) -> CallScript:
        queued = self._call_scripts.get(number)
        if not queued:
            return CallScript()
        return queued.popleft() if len(queued) > 1 else queued[0]

    async def wait_for_calls(self, n: int, timeout: float = 5.0) -> list[PlacedCall]:
        """Wait until at least `n` calls were accepted; TimeoutError otherwise."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.calls) >= n)
        return list(self.calls)

    async def call_ended(self, sid: str, timeout: float = 5.0) -> PlacedCall:
        """The call `sid` once its play is over (hung up, busy, no answer...); TimeoutError otherwise."""
        call = next(c for c in self.calls if c.sid == sid)
        async with asyncio.timeout(timeout):
            await call.ended.wait()
        return call

    async def wait_for_messages(self, n: int, timeout: float = 5.0) -> list[SentMessage]:
        """Wait until at least `n` messages were accepted; TimeoutError otherwise."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.messages) >= n)
        return list(self.messages)

    # -- webhooks Twilio would send us -------------------------------------------------------------

    def sign(self, url: str, params: dict[str, str]) -> str:
        return str(RequestValidator(self.auth_token).compute_signature(url, params))

    async def _post_webhook(self, url: str, params: dict[str, str], forge: bool) -> int:
        assert self._session is not None, "server not started"
        signature = self.sign(url, params)
        if forge:
            signature = base64.b64encode(b"not the right signature!").decode()
        headers = {
            "X-Twilio-Signature": signature,
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
            "User-Agent": "TwilioProxy/1.1",
        }
        self.last_webhook = (url, dict(params), dict(headers))
        return await self.replay_webhook(url, params, headers)

    async def replay_webhook(self, url: str, params: dict[str, str], headers: dict[str, str]) -> int:
        """POST exactly this request again: what an attacker who captured it (or a retrying proxy) does."""
        assert self._session is not None, "server not started"
        async with self._session.post(url, data=params, headers=headers) as resp:
            await resp.read()
            return resp.status

    async def send_status_callback(
        self,
        sid: str,
        status: str,
        url: str,
        *,
        error_code: int | None = None,
        forge: bool = False,
    ) -> int:
        """POST a message status callback to `url`; returns the HTTP status our app answered."""
        sent = next((m for m in self.messages if m.sid == sid), None)
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "MessageSid": sid,
            "SmsSid": sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "To": sent.to if sent else "",
            "From": sent.from_ if sent else "",
        }
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        return await self._post_webhook(url, params, forge)

    async def send_inbound_sms(
        self, url: str, from_: str, body: str, *, to: str = "+15005550006", forge: bool = False
    ) -> int:
        """POST an incoming-message webhook (someone texted our number); returns our app's HTTP status."""
        sid = "SM" + secrets.token_hex(16)
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "MessageSid": sid,
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "SmsStatus": "received",
            "From": from_,
            "To": to,
            "Body": body,
            "NumMedia": "0",
            "NumSegments": "1",
        }
        return await self._post_webhook(url, params, forge)

    # -- REST handlers -----------------------------------------------------------------------------

    def _error(self, status: int, code: int | None = None, message: str | None = None) -> web.Response:
        code = code if code is not None else _DEFAULT_CODES.get(status, status)
        text = message or _MESSAGES.get(code, "Error")
        return web.json_response(_error_body(status, code, text), status=status)

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return secrets.compare_digest(user, self.account_sid) and secrets.compare_digest(password, self.auth_token)

    async def _gate(self, request: web.Request) -> web.Response | None:
        """Faults, auth and account checks shared by every endpoint; None means carry on."""
        self.request_count += 1
        fault = self._script.popleft() if self._script else self._fail_all
        if fault is not None and fault.hang_s is not None:
            self.hanging += 1
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), fault.hang_s)
            finally:
                self.hanging -= 1
        elif fault is not None and fault.status is not None:
            return self._error(fault.status, fault.code)
        if not self._authorized(request):
            return self._error(401)
        if request.match_info["account_sid"] != self.account_sid:
            return self._error(404)
        return None

    def _resource(self, m: SentMessage) -> dict[str, Any]:
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{m.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": m.body,
            "date_created": _rfc2822(m.received_at),
            "date_sent": _rfc2822(m.received_at),  # the fake "delivers" at once
            "date_updated": _rfc2822(m.received_at),
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": m.from_,
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": m.sid,
            "status": "sent",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": m.to,
            "uri": f"{uri}.json",
        }

    async def _create(self, request: web.Request) -> web.Response:
        # Body first, then faults: a hang then models Twilio taking the message but answering late.
        form = await request.post()
        if (refusal := await self._gate(request)) is not None:
            return refusal
        to, from_, body = (str(form.get(k, "")) for k in ("To", "From", "Body"))
        if not to:
            return self._error(400, 21604, "A 'To' phone number is required.")
        if not from_:
            return self._error(400, 21603, "A 'From' phone number is required.")
        if not body:
            return self._error(400, 21602, "Message body is required.")
        if (code := self._rejected.get(to)) is not None:
            text = _MESSAGES.get(code, f"The 'To' number {to} is not a valid phone number.")
            return self._error(400, code, text)
        callback = form.get("StatusCallback")
        message = SentMessage(
            sid="SM" + secrets.token_hex(16),
            to=to,
            from_=from_,
            body=body,
            status_callback=str(callback) if callback is not None else None,
            received_monotonic=time.monotonic(),
            received_at=time.time(),
        )
        async with self._changed:
            self.messages.append(message)
            self._changed.notify_all()
        if self._on_message is not None:
            self._on_message(message)
        resource = self._resource(message)
        resource.update(status="queued", date_sent=None)  # what Twilio answers on create
        return web.json_response(resource, status=201)

    async def _list(self, request: web.Request) -> web.Response:
        if (refusal := await self._gate(request)) is not None:
            return refusal
        if self._lookup_refusal is not None:
            return self._error(self._lookup_refusal)
        q = request.query
        found = list(reversed(self.messages))  # Twilio lists newest first
        if "To" in q:
            found = [m for m in found if m.to == q["To"]]
        if "From" in q:
            found = [m for m in found if m.from_ == q["From"]]
        for key in ("DateSent>", "DateSent<", "DateSent"):
            if key in q:
                try:
                    found = _filter_date(found, key, q[key], lambda m: m.received_at)
                except ValueError:
                    return self._error(400, 20001, f"Invalid {key}: {q[key]}")
        return _page(request, "messages", [self._resource(m) for m in found])

    # -- Calls -------------------------------------------------------------------------------------

    def _call_resource(self, c: PlacedCall) -> dict[str, Any]:
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{c.sid}"
        return {
            "account_sid": self.account_sid,
            "annotation": None,
            "answered_by": c.answered_by,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": _rfc2822(c.received_at),
            "date_updated": _rfc2822(c.end_time or c.start_time or c.received_at),
            "direction": "outbound-api",
            "duration": str(c.duration_s or 0) if c.end_time is not None else None,
            "end_time": _rfc2822(c.end_time) if c.end_time is not None else None,
            "forwarded_from": None,
            "from": c.from_,
            "from_formatted": c.from_,
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": "PN" + "0" * 32,
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "sid": c.sid,
            "start_time": _rfc2822(c.start_time) if c.start_time is not None else None,
            "status": c.status,
            "subresource_uris": {
                name: f"{uri}/{name.title().replace('_', '')}.json"
                for name in ("events", "notifications", "recordings", "payments", "streams")
            },
            "to": c.to,
            "to_formatted": c.to,
            "trunk_sid": None,
            "uri": f"{uri}.json",
        }

    async def _create_call(self, request: web.Request) -> web.Response:
        # Body first, then faults, as for messages: a hang models Twilio placing the call but answering late.
        form = await request.post()
        if (refusal := await self._gate(request)) is not None:
            return refusal
        to, from_, url = (str(form.get(k, "")) for k in ("To", "From", "Url"))
        if not to:
            return self._error(400, 21201, "No 'To' number is specified")
        if not from_:
            return self._error(400, 21213, "No 'From' number is specified")
        if not url.startswith(("http://", "https://")):
            # Twiml and ApplicationSid, Twilio's other ways to say what a call does, are not modelled.
            return self._error(400, 21205, f"Url is not a valid URL: {url}")
        if (code := self._rejected.get(to)) is not None:
            text = _MESSAGES.get(code, f"The 'To' number {to} is not a valid phone number.")
            return self._error(400, code, text)
        method = str(form.get("Method", "POST")).upper()
        callback_method = str(form.get("StatusCallbackMethod", "POST")).upper()
        if method not in ("GET", "POST") or callback_method not in ("GET", "POST"):
            return self._error(400, 20001, "Method and StatusCallbackMethod must be GET or POST")
        # Repeated parameters, as the client sends a list; Twilio also takes them space-separated.
        events = tuple(e for raw in form.getall("StatusCallbackEvent", []) for e in str(raw).split())
        if any(e not in CALL_EVENTS for e in events):
            return self._error(400, 21626)
        detection = str(form["MachineDetection"]) if "MachineDetection" in form else None
        if detection is not None and detection not in MACHINE_DETECTION:
            return self._error(400, 20001, f"Invalid MachineDetection: {detection}")
        raw_timeout = str(form["Timeout"]) if "Timeout" in form else None
        try:
            timeout = int(raw_timeout) if raw_timeout is not None else None
        except ValueError:
            timeout = -1
        if timeout is not None and not 1 <= timeout <= 600:
            return self._error(400, 20001, f"Invalid Timeout: {raw_timeout}")
        callback = form.get("StatusCallback")
        call = PlacedCall(
            sid="CA" + secrets.token_hex(16),
            to=to,
            from_=from_,
            url=url,
            method=method,
            status_callback=str(callback) if callback is not None else None,
            status_callback_method=callback_method,
            # Without StatusCallbackEvent, Twilio sends only "completed".
            status_events=events or ("completed",),
            machine_detection=detection,
            timeout=timeout,
            received_at=time.time(),
        )
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()
        resource = self._call_resource(call)  # what Twilio answers on create: queued, not dialed yet
        script = self._next_script(to)
        if script.answer != "queued":
            task = asyncio.create_task(self._play(call, script), name=f"fake-twilio-call-{call.sid}")
            self._players.add(task)
            task.add_done_callback(self._players.discard)
        return web.json_response(resource, status=201)

    async def _list_calls(self, request: web.Request) -> web.Response:
        if (refusal := await self._gate(request)) is not None:
            return refusal
        if self._lookup_refusal is not None:
            return self._error(self._lookup_refusal)
        q = request.query
        found = list(reversed(self.calls))  # Twilio lists newest first
        for key, attribute in (("To", "to"), ("From", "from_"), ("Status", "status")):
            if key in q:
                found = [c for c in found if getattr(c, attribute) == q[key]]
        for key in ("StartTime>", "StartTime<", "StartTime", "EndTime>", "EndTime<", "EndTime"):
            if key in q:
                stamp: Callable[[PlacedCall], float | None] = (
                    (lambda c: c.start_time) if key.startswith("Start") else (lambda c: c.end_time)
                )
                try:
                    found = _filter_date(found, key, q[key], stamp)
                except ValueError:
                    return self._error(400, 20001, f"Invalid {key}: {q[key]}")
        return _page(request, "calls", [self._call_resource(c) for c in found])

    # -- playing a call, as Twilio does ------------------------------------------------------------

    async def _play(self, call: PlacedCall, script: CallScript) -> None:
        try:
            call.status, call.start_time = "initiated", time.time()
            await self._progress(call, "initiated")
            if script.answer not in ("busy", "failed"):
                call.status = "ringing"
                await self._progress(call, "ringing")
            await asyncio.sleep(script.after_s)
            if script.answer in _UNANSWERED:
                call.status = script.answer
            else:
                if call.machine_detection is not None:
                    call.answered_by = script.answered_by or _ANSWERED_BY[script.answer]
                call.status = "in-progress"
                await self._progress(call, "answered")
                await self._converse(call, list(script.press))
                call.status = "completed"
            call.end_time = time.time()
            await self._progress(call, "completed")
        except Exception as err:  # noqa: BLE001 (a bug in the fake is recorded on the call for the test to see)
            call.errors.append(f"fake: {err!r}")
        finally:
            call.ended.set()

    def _call_params(self, call: PlacedCall, **extra: str) -> dict[str, str]:
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call.sid,
            "CallStatus": call.status,
            "Called": call.to,
            "Caller": call.from_,
            "Direction": "outbound-api",
            "From": call.from_,
            "To": call.to,
        }
        if call.answered_by is not None:
            params["AnsweredBy"] = call.answered_by
        params.update(extra)
        return params

    async def _progress(self, call: PlacedCall, event: str) -> None:
        if call.status_callback is None or event not in call.status_events:
            return
        extra = {
            "CallbackSource": "call-progress-events",
            "SequenceNumber": str(len(call.callbacks)),
            "Timestamp": _rfc2822(time.time()),
        }
        if event == "completed":
            seconds = call.duration_s or 0
            extra.update(CallDuration=str(seconds), Duration=str((seconds + 59) // 60))
        params = self._call_params(call, **extra)
        await self._call_webhook(call, "status", call.status_callback, call.status_callback_method, params)

    async def _call_webhook(
        self, call: PlacedCall, kind: str, url: str, method: str, params: dict[str, str]
    ) -> tuple[int, bytes]:
        """Request `url` as Twilio does: signed (full URL + sorted POST parameters; a GET's parameters go in
        the URL), with an idempotency token. Returns the status (0: unreachable) and the body."""
        assert self._session is not None, "server not started"
        if method == "GET":
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
            signed, data = self.sign(url, {}), None
        else:
            signed, data = self.sign(url, params), params
        headers = {
            "X-Twilio-Signature": signed,
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
            "User-Agent": "TwilioProxy/1.1",
        }
        status, body, content_type = 0, b"", ""
        try:
            async with self._session.request(
                method, url, data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_S)
            ) as resp:
                status, body, content_type = resp.status, await resp.read(), resp.content_type
        except (aiohttp.ClientError, TimeoutError) as err:
            call.errors.append(f"{kind} {url}: {type(err).__name__}")  # Twilio's 11200 "HTTP retrieval failure"
        text = body.decode("utf-8", errors="replace")
        call.webhooks.append(Webhook(kind, url, method, params, headers, status, text, content_type))
        return status, body

    async def _converse(self, call: PlacedCall, keys: list[str]) -> None:
        """Fetch the call's TwiML and carry it out, document after document, until a Hangup or the end."""
        step: tuple[str, str, str, dict[str, str]] | None = ("twiml", call.url, call.method, {})
        for _ in range(MAX_DOCUMENTS):
            if step is None:
                return
            kind, url, method, extra = step
            status, body = await self._call_webhook(call, kind, url, method, self._call_params(call, **extra))
            if not 200 <= status < 300:
                # Twilio says "an application error has occurred" and hangs up.
                call.errors.append(f"{kind} {url}: HTTP {status}")
                return
            try:
                root = ET.fromstring(body)  # noqa: S314 (the application under test wrote it)
            except ET.ParseError as err:
                call.errors.append(f"{kind} {url}: not XML ({err})")
                return
            if root.tag != "Response":
                call.errors.append(f"{kind} {url}: root is <{root.tag}>, not <Response>")
                return
            step = self._execute(call, root, url, keys)
        call.errors.append(f"more than {MAX_DOCUMENTS} TwiML documents: hung up")

    def _execute(
        self, call: PlacedCall, root: ET.Element, url: str, keys: list[str]
    ) -> tuple[str, str, str, dict[str, str]] | None:
        """Carry out one document's verbs; the next request to make, or None when the call ends."""
        for verb in root:
            if verb.tag in ("Say", "Pause", "Play"):
                self._hear(call, verb)
            elif verb.tag == "Gather":
                for nested in verb:
                    self._hear(call, nested)
                action = urljoin(url, verb.get("action") or url)  # no action: the document's own URL
                method = verb.get("method", "POST").upper()
                if keys:
                    key = keys.pop(0)
                    call.digits.append(key)
                    return "gather", action, method, {"Digits": key, "FinishedOnKey": "", "msg": "Gather End"}
                if verb.get("actionOnEmptyResult") == "true":
                    return "gather", action, method, {"Digits": "", "FinishedOnKey": "", "msg": "Gather End"}
                # No key before the timeout: Twilio goes on with the verb after the Gather.
            elif verb.tag == "Redirect":
                target = urljoin(url, (verb.text or "").strip())
                return "redirect", target, verb.get("method", "POST").upper(), {}
            elif verb.tag in ("Hangup", "Reject"):
                return None
            else:
                call.errors.append(f"unsupported verb <{verb.tag}>: hung up")  # Twilio's 12100
                return None
        return None  # the end of the document: Twilio hangs up

    @staticmethod
    def _hear(call: PlacedCall, verb: ET.Element) -> None:
        if verb.tag == "Say":
            loop = int(verb.get("loop", "1") or "1")
            for _ in range(max(loop, 1)):  # loop="0" repeats until the call ends: once here
                call.said.append(Said(verb.text or "", verb.get("language"), verb.get("voice")))
        elif verb.tag not in ("Pause", "Play"):
            call.errors.append(f"<{verb.tag}> inside <Gather>")


def _page(request: web.Request, key: str, found: list[dict[str, Any]]) -> web.Response:
    """One page of a Twilio list (`key`: "messages", "calls"), with the page URIs the client follows."""
    q = request.query
    page_size = int(q.get("PageSize", DEFAULT_PAGE_SIZE))
    page = int(q.get("Page", 0))
    chunk = found[page * page_size : (page + 1) * page_size]
    path = request.path

    def page_uri(n: int) -> str:
        params = {k: v for k, v in q.items() if k not in ("Page", "PageToken")}
        params.update(Page=str(n), PageSize=str(page_size))
        return f"{path}?{urlencode(params)}"

    more = (page + 1) * page_size < len(found)
    return web.json_response(
        {
            key: chunk,
            "end": page * page_size + max(len(chunk) - 1, 0),
            "first_page_uri": page_uri(0),
            "next_page_uri": page_uri(page + 1) if more else None,
            "previous_page_uri": page_uri(page - 1) if page > 0 else None,
            "page": page,
            "page_size": page_size,
            "start": page * page_size,
            "uri": page_uri(page),
        }
    )


async def _serve(port: int, sid: str, token: str) -> None:
    def emit(message: SentMessage) -> None:
        print(json.dumps(message.to_json(), ensure_ascii=False), flush=True)

    async with TwilioServer(sid, token, port=port, on_message=emit) as server:
        print(f"fake twilio listening on {server.base_url}", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake Twilio REST API on loopback; prints messages as JSON lines")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--sid", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.sid, args.token))


if __name__ == "__main__":
    main()
