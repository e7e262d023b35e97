"""SMS through Twilio's REST API, using the official client in its asyncio mode (aiohttp, no threads).

Library and network errors are translated here, once, into TransientError (retry later) or
PermanentError (record it, tell a person).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any
from urllib.parse import urlencode

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from alertd.core.ports import Health, Outbound
from alertd.errors import PermanentError, TransientError
from alertd.phones import mask

__all__ = [
    "FIND_SENT_SCAN_LIMIT",
    "SEND_TIMEOUT_S",
    "UNHEALTHY_AFTER_FAILURES",
    "TwilioSender",
]

_LOGGER = logging.getLogger(__name__)

SEND_TIMEOUT_S = 15.0  # one Twilio API call, connect to answer
UNHEALTHY_AFTER_FAILURES = 3  # consecutive transient failures before health() says so
FIND_SENT_SCAN_LIMIT = 50  # newest messages to one number examined when reconciling
CLOCK_SKEW_S = 120.0  # tolerance between our clock and Twilio's date_created (1 s resolution)
_AUTH_STATUSES = (401, 403)


def _quiet_logger() -> logging.Logger:
    # The twilio client logs query parameters (phone numbers) at INFO; give it a logger outside the
    # hierarchy that drops everything, so no handler configuration can leak them.
    logger = logging.Logger("twilio.http.muted")
    logger.disabled = True
    return logger


class _FormEncoded(AsyncTwilioHttpClient):  # type: ignore[misc]  # the library is untyped
    """The SDK's HTTP client, with the form body and the credentials encoded here, once. Given a dict,
    aiohttp builds a FormData and, inside it, a multipart writer with a uuid4 boundary for every request: a
    quarter of the CPU an SMS costs us in a burst. Given `auth`, aiohttp 3.13 warns it is deprecated. The
    bytes sent are the same."""

    async def request(
        self,
        method: str,
        url: str,
        params: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the SDK's signature)
        allow_redirects: bool = False,
    ) -> Any:
        headers = dict(headers or {})
        if isinstance(data, dict):
            data = urlencode(data, doseq=True).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if auth is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode("ascii")
        return await super().request(method, url, params, data, headers, None, timeout, allow_redirects)


class TwilioSender:
    """Sender for Twilio Programmable Messaging. Call `await close()` when done."""

    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str,
        api_base_url: str | None = None,
        status_callback: str | None = None,
        *,
        timeout_s: float = SEND_TIMEOUT_S,
        unhealthy_after: int = UNHEALTHY_AFTER_FAILURES,
    ) -> None:
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._from_number = from_number
        self._api_base_url = api_base_url.rstrip("/") if api_base_url else None
        self._status_callback = status_callback
        self._timeout_s = timeout_s
        self._unhealthy_after = unhealthy_after
        self._http: AsyncTwilioHttpClient | None = None
        self._client: Any = None  # twilio.rest.Client; the library is untyped
        self._failures = 0
        self._last_failure = ""
        self._auth_failed = False
        self._messages_uri = f"/Accounts/{account_sid}/Messages.json"

    def __repr__(self) -> str:
        # Never the token.
        return f"<TwilioSender {self._account_sid} from {mask(self._from_number)}>"

    def _twilio(self) -> Any:
        # Built on first use: the aiohttp session must be created inside the running loop.
        if self._client is None:
            self._http = _FormEncoded(logger=_quiet_logger())
            client = Client(self._account_sid, self._auth_token, http_client=self._http)
            if self._api_base_url is not None:
                # Every Messages request is built from the Api domain's base_url; edge/region (which the
                # client may read from the environment) would rewrite the host, so clear them.
                client.api.base_url = self._api_base_url
                client.edge = None
                client.region = None
            self._client = client
        return self._client

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        self._http = None
        self._client = None

    def _form(self, message: Outbound) -> dict[str, str]:
        form = {"To": message.address, "From": self._from_number, "Body": message.body}
        if self._status_callback is not None:
            form["StatusCallback"] = self._status_callback
        return form

    async def send(self, message: Outbound) -> str:
        client = self._twilio()
        try:
            async with asyncio.timeout(self._timeout_s):
                created = await client.api.v2010.create_async(
                    "POST",
                    self._messages_uri,
                    data=self._form(message),
                    headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
                )
        except (TimeoutError, aiohttp.ClientError, OSError, TwilioException, ValueError) as err:
            error = _translate(err, message.address, self._timeout_s)
            self._record_failure(error, err)
            if isinstance(error, PermanentError):
                _LOGGER.warning("Twilio rejected message %d to %s: %s", message.id, mask(message.address), error)
            raise error from err
        self._record_success()
        sid = str(created["sid"])
        if _LOGGER.isEnabledFor(logging.DEBUG):  # masking parses the number: not for a line nobody reads
            _LOGGER.debug("Twilio accepted message %d to %s as %s", message.id, mask(message.address), sid)
        return sid

    async def find_sent(self, message: Outbound) -> str | None:
        client = self._twilio()
        try:
            async with asyncio.timeout(self._timeout_s):
                # Twilio lists newest first. We filter on date_created ourselves rather than with
                # DateSent>: a message still queued at Twilio has no date_sent yet and would be missed.
                records = await client.messages.list_async(
                    to=message.address, from_=self._from_number, limit=FIND_SENT_SCAN_LIMIT
                )
        except (TimeoutError, aiohttp.ClientError, OSError, TwilioException, ValueError) as err:
            raise _translate(err, message.address, self._timeout_s) from err
        since = message.created_at - CLOCK_SKEW_S
        for record in records:
            created_at = record.date_created.timestamp() if record.date_created is not None else None
            if record.body == message.body and (created_at is None or created_at >= since):
                _LOGGER.info(
                    "Message %d to %s was already accepted by Twilio as %s",
                    message.id,
                    mask(message.address),
                    record.sid,
                )
                return str(record.sid)
        return None

    def health(self) -> Health:
        if self._auth_failed:
            return Health(ok=False, detail=f"authentication failed: {self._last_failure}")
        if self._failures >= self._unhealthy_after:
            return Health(ok=False, detail=f"{self._failures} consecutive failures: {self._last_failure}")
        return Health(ok=True)

    def _record_failure(self, error: TransientError | PermanentError, err: BaseException) -> None:
        status = _status_of(err)
        if isinstance(error, PermanentError) and status not in _AUTH_STATUSES:
            # Twilio answered and refused this one message: the carrier itself works.
            self._record_success()
            return
        self._failures += 1
        self._last_failure = str(error)
        if status in _AUTH_STATUSES:
            self._auth_failed = True
        # Sized for long outages: one WARNING when it goes down, DEBUG while it stays down.
        if self._failures == 1:
            _LOGGER.warning("Twilio sending failed: %s", error)
        else:
            _LOGGER.debug("Twilio sending still failing (%d in a row): %s", self._failures, error)

    def _record_success(self) -> None:
        if self._failures:
            _LOGGER.info("Twilio sending recovered after %d failures", self._failures)
        self._failures = 0
        self._last_failure = ""
        self._auth_failed = False


def _status_of(err: BaseException) -> int | None:
    if isinstance(err, TwilioRestException | TwilioServiceException):
        return int(err.status)
    # Page fetches (list) raise a bare TwilioException("Unable to fetch page", response).
    if isinstance(err, TwilioException) and len(err.args) > 1:
        status = getattr(err.args[1], "status_code", None)
        return int(status) if status is not None else None
    return None


def _translate(err: BaseException, address: str, timeout_s: float) -> TransientError | PermanentError:
    """Map a library or network error to retry-later vs permanent, with the phone number masked."""
    if isinstance(err, TimeoutError):
        return TransientError(f"no answer from Twilio within {timeout_s:g} s")
    if isinstance(err, aiohttp.ClientError | OSError):
        return TransientError(f"cannot reach Twilio: {type(err).__name__}")
    if isinstance(err, ValueError):  # json.JSONDecodeError from a garbled body
        return TransientError(f"unreadable answer from Twilio: {type(err).__name__}")
    status = _status_of(err)
    if status is None or status == 429 or status >= 500:
        return TransientError(f"HTTP {status}" if status is not None else f"Twilio error: {type(err).__name__}")
    code = getattr(err, "code", None)
    # Twilio's messages quote the number ("The 'To' number +86... is not valid"): mask it.
    text = str(getattr(err, "msg", None) or getattr(err, "detail", None) or f"HTTP {status}")
    text = text.replace(address, mask(address))
    return PermanentError(f"HTTP {status}: {text}", code=str(code) if code is not None else str(status))
