"""A loopback stand-in for Twilio's REST API, close enough that the real `twilio` client talks to it.

Covers Messages create/list, Twilio's error JSON, scripted faults (FIFO), per-number rejections, and the
webhooks Twilio would send us (status callbacks, inbound SMS), signed the way Twilio signs them.
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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

__all__ = ["SentMessage", "TwilioServer"]

API_VERSION = "2010-04-01"
DEFAULT_PAGE_SIZE = 50

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


def _filter_date_sent(found: list[SentMessage], key: str, raw: str) -> list[SentMessage]:
    bound, date_only = _parse_filter_date(raw)
    kept = []
    for m in found:
        sent = datetime.fromtimestamp(int(m.received_at), UTC)  # Twilio dates have 1 s resolution
        a, b = (sent.date(), bound.date()) if date_only else (sent, bound)
        if (key == "DateSent>" and a >= b) or (key == "DateSent<" and a <= b) or (key == "DateSent" and a == b):
            kept.append(m)
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
        self._changed = asyncio.Condition()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._bound_port: int | None = None

        self.app = web.Application()
        base = f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json"
        self.app.router.add_post(base, self._create)
        self.app.router.add_get(base, self._list)

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
                    found = _filter_date_sent(found, key, q[key])
                except ValueError:
                    return self._error(400, 20001, f"Invalid {key}: {q[key]}")
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
                "messages": [self._resource(m) for m in chunk],
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
