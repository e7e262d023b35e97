"""SMS through Alibaba Cloud SMS (Dysmsapi 2017-05-25), using the official SDK (alibabacloud_dysmsapi20170525).

Aliyun sends only texts registered beforehand: each alertd message kind (Outbound.template) maps to a
TemplateCode in the config, and the message's parameters become the template's variables. OutId carries
the outbox row id, which is how find_sent() recognises a message again after a crash.

Why the SDK's blocking methods, run in a few threads of our own, and not its *_async methods: the async
path builds a fresh aiohttp session and a fresh TLS context for every request, loading the CA bundle on
the event loop (~60 ms of CPU per SMS on our 2-core machines, during which nothing else runs), and opens a
new connection each time. The blocking path keeps a pooled, kept-alive `requests` session and does all its
work (signing, TLS, JSON) off the loop. The SDK is imported in a worker thread on first use too: the import
takes ~0.5 s.

Library and network errors are translated here, once, into TransientError (retry later) or PermanentError
(this message can never go through this carrier). A refused account, key, sign or template is transient
(another carrier can take the message) and turns health() red at once, so failover moves the traffic.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

# The exception root of the SDK ("Tea" exceptions); cheap to import, unlike the SDK itself. Untyped.
from Tea.exceptions import TeaException  # type: ignore[import-untyped]

from alertd.core.ports import Health, Outbound
from alertd.errors import PermanentError, TransientError
from alertd.phones import mask

__all__ = [
    "CHINA",
    "DEFAULT_ENDPOINT",
    "FOUND_BY_OUT_ID",
    "SEND_TIMEOUT_S",
    "UNHEALTHY_AFTER_FAILURES",
    "AliyunSender",
    "aliyun_number",
    "send_date",
]

# ruff: noqa: PLC0415 (the SDK is imported on first use, in a worker thread: it takes ~0.5 s to import)

_LOGGER = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "dysmsapi.aliyuncs.com"
SEND_TIMEOUT_S = 15.0  # one Aliyun API call, connect to answer
UNHEALTHY_AFTER_FAILURES = 3  # consecutive transient failures before health() says so
MAX_PARALLEL_REQUESTS = 4  # worker threads: SMS go out a few at a time, never hundreds
PAGE_SIZE = 50  # QuerySendDetails' maximum
FIND_SENT_MAX_PAGES = 20  # per day and number: 1000 messages to one number in a day is far beyond ours
FIND_SENT_MAX_DAYS = 7  # days examined when reconciling, from today back towards the message's creation
CLOCK_SKEW_S = 120.0  # tolerance between our clock and Aliyun's when picking the day to ask about
# QuerySendDetails records carry no BizId, so a message found again by its OutId after a crash gets this
# provider id ("out_id:17"), which delivery() understands. Real BizIds look like "900619746936498440^0".
FOUND_BY_OUT_ID = "out_id:"

# China Standard Time: Aliyun files messages under the day (SendDate) in it. A fixed offset, as China has
# kept no daylight saving time since 1991; no dependency on the machine's zone or time zone database.
CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")

_THREAD_PREFIX = "aliyun-sms"
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")

# Aliyun refuses the account, its key or its setup (sign, templates): no message can go through until a
# person acts, so health() turns red at once and failover sends through another carrier meanwhile. From
# Aliyun's gateway error codes and Dysmsapi's error code list (help.aliyun.com/document_detail/101346).
_BLOCKING_CODES = frozenset(
    {
        # key and signature
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "InvalidTimeStamp.Expired",  # our clock is off by more than 15 minutes
        "InvalidSecurityToken.Expired",
        "isp.RAM_PERMISSION_DENY",
        # account
        "isv.ACCOUNT_NOT_EXISTS",
        "isv.ACCOUNT_ABNORMAL",
        "isv.PRODUCT_UN_SUBSCRIPT",
        "isv.PRODUCT_UNSUBSCRIBE",
        "isv.DENY_IP_RANGE",
        # money and the account's own limits
        "isv.AMOUNT_NOT_ENOUGH",
        "isv.OUT_OF_SERVICE",
        "isv.BILLING_DEDUCTION_ERROR",
        "isv.DAY_LIMIT_CONTROL",
        "isv.MONTH_LIMIT_CONTROL",
        # sign and templates
        "isv.SMS_SIGNATURE_ILLEGAL",
        "isv.SMS_SIGN_ILLEGAL",
        "isv.SIGN_STATE_ILLEGAL",
        "isv.SMS_SIGNATURE_SCENE_ILLEGAL",
        "isv.SMS_TEMPLATE_ILLEGAL",
        "isv.TEMPLATE_MISSING_PARAMETERS",
        "isv.INVALID_JSON_PARAM",
        "isv.INVALID_PARAMETERS",
    }
)
_BLOCKING_PREFIXES = ("InvalidAccessKeyId", "Forbidden")
# This message (its number or its values) can never go through Aliyun; another carrier may still take it.
_PERMANENT_CODES = frozenset(
    {
        "isv.MOBILE_NUMBER_ILLEGAL",
        "isv.MOBILE_COUNT_OVER_LIMIT",
        "isv.DOMESTIC_NUMBER_NOT_SUPPORTED",
        "isv.BLACK_KEY_CONTROL_LIMIT",  # a variable's value holds a blocked word
        "isv.SMS_CONTENT_ILLEGAL",
        "isv.PARAM_LENGTH_LIMIT",  # a variable's value is too long for Aliyun
        "isv.PARAM_NOT_SUPPORT_URL",
    }
)
# Everything else (isv.BUSINESS_LIMIT_CONTROL, Throttling.*, isp.SYSTEM_ERROR, ServiceUnavailable, 5xx,
# codes we do not know) is retried later, and turns health() red after UNHEALTHY_AFTER_FAILURES in a row.

_SDK_ERRORS = (TeaException, OSError, ValueError)  # TimeoutError is an OSError


def send_date(epoch: float) -> str:
    """The day Aliyun files a message sent at `epoch` under: yyyyMMdd in China time."""
    return datetime.fromtimestamp(epoch, CHINA).strftime("%Y%m%d")


def aliyun_number(e164: str) -> str:
    """A number as SendSms's PhoneNumbers takes it: a mainland number bare ("13800138000"), any other as
    international code + number without "+" or "00" ("85291234567"); ValueError if not E.164."""
    if not _E164.fullmatch(e164):
        raise ValueError("not an E.164 number")
    digits = e164[1:]
    return digits[2:] if digits.startswith("86") else digits


class _FromOurThreads(logging.Filter):
    """Drops urllib3's records made in our worker threads: its DEBUG lines quote the request URL, whose
    query string holds the phone number (RPC-style calls carry every parameter there)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.threadName or "").startswith(_THREAD_PREFIX)


def _quiet_sdk_logging() -> None:
    # darabonba and Tea attach their own stderr handlers at DEBUG and can print requests (headers, URLs
    # with the number); the credentials package logs credential values when it refreshes them. Disabled,
    # and raised above CRITICAL without handlers, so a later logging.config call that re-enables existing
    # loggers still cannot make them print.
    for name in ("darabonba-core", "alibabacloud-tea", "credentials"):
        logger = logging.getLogger(name)
        logger.disabled = True
        logger.setLevel(logging.CRITICAL + 1)
        logger.handlers.clear()
        logger.propagate = False
    pool = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _FromOurThreads) for f in pool.filters):
        pool.addFilter(_FromOurThreads())


class AliyunSender:
    """Sender for Alibaba Cloud SMS. Call `await close()` when done.

    `templates` maps alertd's message kinds ("alert", "maintenance", ...) to Aliyun TemplateCodes.
    `endpoint` is Aliyun's host (default dysmsapi.aliyuncs.com, over HTTPS), or a URL with a scheme
    ("http://127.0.0.1:8000") for a stand-in."""

    name = "aliyun"

    def __init__(
        self,
        access_key_id: str,
        access_key_secret: str,
        sign_name: str,
        templates: Mapping[str, str],
        endpoint: str | None = None,
        *,
        timeout_s: float = SEND_TIMEOUT_S,
        unhealthy_after: int = UNHEALTHY_AFTER_FAILURES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not access_key_id or not access_key_secret:
            raise ValueError("Aliyun SMS needs an AccessKey ID and secret")
        if not sign_name:
            raise ValueError("Aliyun SMS needs a sign name (签名)")
        self._access_key_id = access_key_id
        self._access_key_secret = access_key_secret
        self._sign_name = sign_name
        self._templates = dict(templates)
        self._protocol, self._host = _parse_endpoint(endpoint or DEFAULT_ENDPOINT)
        self._timeout_s = timeout_s
        self._unhealthy_after = unhealthy_after
        self._clock = clock
        self._executor: ThreadPoolExecutor | None = None
        self._client: Any = None  # alibabacloud_dysmsapi20170525.client.Client; the SDK is untyped
        self._client_lock = threading.Lock()
        self._failures = 0
        self._last_failure = ""
        self._blocked = False  # Aliyun refused the account, key, sign or a template

    def __repr__(self) -> str:
        # Never the secret; the key id only in part.
        return f"<AliyunSender {self._access_key_id[:4]}**** sign {self._sign_name!r} at {self._host}>"

    async def close(self) -> None:
        # A call stuck in a thread ends by itself within the SDK's own timeouts (set from timeout_s).
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = None

    # -- the Sender protocol -----------------------------------------------------------------------

    async def send(self, message: Outbound) -> str:
        template_code = self._templates.get(message.template)
        if template_code is None:
            error = PermanentError(
                f"no Aliyun SMS template configured for message kind {message.template!r}", code="no_template"
            )
            _LOGGER.warning("Aliyun cannot send message %d to %s: %s", message.id, mask(message.address), error)
            raise error
        try:
            number = aliyun_number(message.address)
        except ValueError:
            raise PermanentError(f"not an E.164 number: {mask(message.address)}", code="bad_number") from None
        fields: dict[str, Any] = {
            "phone_numbers": number,
            "sign_name": self._sign_name,
            "template_code": template_code,
            "out_id": str(message.id),
        }
        if message.params:
            # A JSON object of strings, as Aliyun requires; compact, and the Chinese as is.
            fields["template_param"] = json.dumps(dict(message.params), ensure_ascii=False, separators=(",", ":"))
        try:
            answer = _check(await self._call(_send_sms, fields), message.address)
        except (TransientError, PermanentError) as error:
            self._record_failure(error)
            if isinstance(error, PermanentError):
                _LOGGER.warning("Aliyun rejected message %d to %s: %s", message.id, mask(message.address), error)
            raise
        except _SDK_ERRORS as err:
            translated = self._translate(err, message.address)
            self._record_failure(translated)
            # Not chained: the SDK's exception texts quote the request URL, and with it the number.
            raise translated from None
        provider_id = str(answer.get("BizId") or "")
        if not provider_id:
            missing = TransientError("Aliyun answered OK but gave no BizId")
            self._record_failure(missing)
            raise missing
        self._record_success()
        if _LOGGER.isEnabledFor(logging.DEBUG):  # masking parses the number: not for a line nobody reads
            _LOGGER.debug("Aliyun accepted message %d to %s as %s", message.id, mask(message.address), provider_id)
        return provider_id

    async def find_sent(self, message: Outbound) -> str | None:
        """Asks QuerySendDetails about the days from now back to the message's creation (China time) and
        matches our OutId. Its records have no BizId: what is returned is FOUND_BY_OUT_ID + the row id."""
        number = _number_or_permanent(message.address)
        out_id = str(message.id)
        for day in _days_back(self._clock() + CLOCK_SKEW_S, message.created_at - CLOCK_SKEW_S):
            async with aclosing(self._records(number, day, message.address)) as records:
                async for record in records:
                    if str(record.get("OutId") or "") == out_id:
                        _LOGGER.info(
                            "Message %d to %s was already accepted by Aliyun (filed under %s)",
                            message.id,
                            mask(message.address),
                            day,
                        )
                        return f"{FOUND_BY_OUT_ID}{out_id}"
        return None

    def health(self) -> Health:
        if self._blocked:
            return Health(ok=False, detail=f"Aliyun refuses the account or its setup: {self._last_failure}")
        if self._failures >= self._unhealthy_after:
            return Health(ok=False, detail=f"{self._failures} consecutive failures: {self._last_failure}")
        return Health(ok=True)

    # -- delivery receipts -------------------------------------------------------------------------

    async def delivery(self, phone: str, biz_id: str, sent_at: float) -> tuple[str, str | None] | None:
        """The handset report for a message Aliyun accepted (a BizId from send(), or an id from
        find_sent()): ("delivered", None), ("undelivered", the carrier's ErrCode), or None while Aliyun
        still waits for it (or does not list it yet). Raises TransientError when Aliyun cannot be asked
        now, PermanentError for a number it can never take.

        Aliyun's HTTP push of receipts is unsigned, so alertd polls this instead."""
        number = _number_or_permanent(phone)
        out_id = biz_id.removeprefix(FOUND_BY_OUT_ID) if biz_id.startswith(FOUND_BY_OUT_ID) else None
        for day in _days_around(sent_at):
            by_biz_id = biz_id if out_id is None else None
            async with aclosing(self._records(number, day, phone, biz_id=by_biz_id)) as records:
                async for record in records:
                    if out_id is None or str(record.get("OutId") or "") == out_id:
                        return _receipt(record)
        return None

    # -- the SDK, in our threads -------------------------------------------------------------------

    async def _call(self, work: Callable[[Any, dict[str, Any]], dict[str, Any]], fields: dict[str, Any]) -> Any:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(MAX_PARALLEL_REQUESTS, thread_name_prefix=_THREAD_PREFIX)
        loop = asyncio.get_running_loop()
        # The deadline covers waiting for a free thread too. A call abandoned here goes on in its thread
        # until the SDK's own timeouts, and Aliyun may still accept it: find_sent() covers that case.
        async with asyncio.timeout(self._timeout_s):
            return await loop.run_in_executor(self._executor, self._in_thread, work, fields)

    def _in_thread(self, work: Callable[[Any, dict[str, Any]], dict[str, Any]], fields: dict[str, Any]) -> Any:
        return work(self._sdk(), fields)

    def _sdk(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = self._build_client()
            return self._client

    def _build_client(self) -> Any:
        # Imported here, in a worker thread, on first use: the SDK takes ~0.5 s to import.
        from alibabacloud_dysmsapi20170525.client import Client  # type: ignore[import-untyped]
        from alibabacloud_tea_openapi.models import Config  # type: ignore[import-untyped]

        _quiet_sdk_logging()
        config = Config(
            access_key_id=self._access_key_id,
            access_key_secret=self._access_key_secret,
            endpoint=self._host,
            protocol=self._protocol,
            # Signature V3 (the SDK's default, pinned): HMAC-SHA256 over the request, in Authorization.
            signature_algorithm="ACS3-HMAC-SHA256",
            # Milliseconds. Our own deadline (timeout_s) decides; these only free a thread soon after.
            connect_timeout=int(self._timeout_s * 1000),
            read_timeout=int((self._timeout_s + 1.0) * 1000),
        )
        return Client(config)

    async def _records(
        self, number: str, day: str, address: str, *, biz_id: str | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """QuerySendDetails' records for one number and day, page by page."""
        for page in range(1, FIND_SENT_MAX_PAGES + 1):
            fields: dict[str, Any] = {
                "phone_number": number,
                "send_date": day,
                "page_size": PAGE_SIZE,
                "current_page": page,
            }
            if biz_id is not None:
                fields["biz_id"] = biz_id
            try:
                answer = _check(await self._call(_query_send_details, fields), address)
            except _SDK_ERRORS as err:
                raise self._translate(err, address) from None
            records = (answer.get("SmsSendDetailDTOs") or {}).get("SmsSendDetailDTO") or []
            for record in records:
                if isinstance(record, dict):
                    yield record
            if not records or page * PAGE_SIZE >= _int(answer.get("TotalCount")):
                return

    # -- health ------------------------------------------------------------------------------------

    def _record_failure(self, error: TransientError | PermanentError) -> None:
        if isinstance(error, PermanentError):
            # Aliyun answered and refused this one message: the carrier answers. That says nothing about
            # a refused account or setup, which only a message that goes through clears.
            if not self._blocked:
                self._record_success()
            return
        self._failures += 1
        self._last_failure = str(error)
        newly_blocked = isinstance(error, _Blocking) and not self._blocked
        self._blocked = self._blocked or isinstance(error, _Blocking)
        # Sized for long outages: one WARNING when it goes down (or is refused), DEBUG while it stays so.
        if self._failures == 1 or newly_blocked:
            _LOGGER.warning("Aliyun SMS sending failed: %s", error)
        else:
            _LOGGER.debug("Aliyun SMS sending still failing (%d in a row): %s", self._failures, error)

    def _record_success(self) -> None:
        if self._failures:
            _LOGGER.info("Aliyun SMS sending recovered after %d failures", self._failures)
        self._failures = 0
        self._last_failure = ""
        self._blocked = False

    def _translate(self, err: BaseException, address: str) -> TransientError | PermanentError:
        """Map an SDK or network error to retry-later vs permanent, with the phone number masked."""
        if isinstance(err, TimeoutError):
            return TransientError(f"no answer from Aliyun within {self._timeout_s:g} s")
        inner = getattr(err, "inner_exception", None)
        if inner is not None:
            # The SDK's wrapper (UnretryableException) around a network error or an unreadable answer.
            if isinstance(inner, ValueError):
                return TransientError(f"unreadable answer from Aliyun: {type(inner).__name__}")
            return TransientError(f"cannot reach Aliyun: {type(inner).__name__}")
        code = getattr(err, "code", None)
        if isinstance(err, TeaException) and code:
            # Gateway errors (HTTP 4xx/5xx): Aliyun's own JSON is in .data; .message adds the request id.
            data = getattr(err, "data", None)
            text = data.get("Message") if isinstance(data, dict) else None
            status = getattr(err, "status_code", None)
            return _classify(str(code), str(text or getattr(err, "message", "") or ""), address, status)
        if isinstance(err, OSError):
            return TransientError(f"cannot reach Aliyun: {type(err).__name__}")
        if isinstance(err, ValueError):
            return TransientError(f"unreadable answer from Aliyun: {type(err).__name__}")
        return TransientError(f"Aliyun SDK error: {type(err).__name__}")


class _Blocking(TransientError):
    """Retry through another carrier: Aliyun refuses the account, key, sign or template."""


# -- work done in the threads (the SDK's models are built and read there) ----------------------------


def _send_sms(client: Any, fields: dict[str, Any]) -> dict[str, Any]:
    from alibabacloud_dysmsapi20170525 import models  # type: ignore[import-untyped]

    response = client.send_sms(models.SendSmsRequest(**fields))
    return dict(response.body.to_map()) if response.body is not None else {}


def _query_send_details(client: Any, fields: dict[str, Any]) -> dict[str, Any]:
    from alibabacloud_dysmsapi20170525 import models

    response = client.query_send_details(models.QuerySendDetailsRequest(**fields))
    return dict(response.body.to_map()) if response.body is not None else {}


# -- helpers -----------------------------------------------------------------------------------------


def _parse_endpoint(endpoint: str) -> tuple[str, str]:
    """(protocol, host[:port]) for the SDK's Config, which takes them apart."""
    if "://" not in endpoint:
        return "https", endpoint.rstrip("/")
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an Aliyun endpoint: {endpoint!r}")
    return parts.scheme, parts.netloc


def _number_or_permanent(address: str) -> str:
    try:
        return aliyun_number(address)
    except ValueError:
        raise PermanentError(f"not an E.164 number: {mask(address)}", code="bad_number") from None


def _check(answer: Any, address: str) -> dict[str, Any]:
    """A 200 answer: Code "OK", or a business error (isv.*, isp.*) raised as ours."""
    if not isinstance(answer, dict):
        raise TransientError("unreadable answer from Aliyun")
    code = answer.get("Code")
    if code != "OK":
        raise _classify(str(code or "no Code"), str(answer.get("Message") or ""), address, None)
    return answer


def _classify(code: str, message: str, address: str, status: int | None) -> TransientError | PermanentError:
    where = f"HTTP {status} " if status is not None and status >= 400 else ""
    text = f"Aliyun {where}{code}: {_scrub(message, address)}".rstrip(": ")
    if code in _PERMANENT_CODES:
        return PermanentError(f"{text} (to {mask(address)})", code=code)
    if code in _BLOCKING_CODES or code.startswith(_BLOCKING_PREFIXES):
        return _Blocking(text)
    return TransientError(text)


def _scrub(text: str, address: str) -> str:
    """Aliyun's messages may quote the number in any of its spellings: mask each, longest first."""
    if not text:
        return text
    digits = address.lstrip("+")
    forms = {address, digits, f"00{digits}"}
    if digits.startswith("86"):
        forms.add(digits[2:])
    masked = mask(address)
    for form in sorted(forms, key=len, reverse=True):
        if len(form) >= 5:
            text = text.replace(form, masked)
    return text


def _days_back(latest: float, earliest: float) -> list[str]:
    """The China-time days from `latest`'s back to `earliest`'s, newest first (the send a crash cut short
    was most likely just before the restart), at most FIND_SENT_MAX_DAYS."""
    last = datetime.fromtimestamp(latest, CHINA).date()
    first = datetime.fromtimestamp(min(earliest, latest), CHINA).date()
    count = min((last - first).days + 1, FIND_SENT_MAX_DAYS)
    return [(last - timedelta(days=n)).strftime("%Y%m%d") for n in range(count)]


def _days_around(epoch: float) -> list[str]:
    """The day of `epoch` first, then its neighbours within CLOCK_SKEW_S (only near midnight)."""
    days = [send_date(epoch)]
    for other in (send_date(epoch - CLOCK_SKEW_S), send_date(epoch + CLOCK_SKEW_S)):
        if other not in days:
            days.append(other)
    return days


def _receipt(record: dict[str, Any]) -> tuple[str, str | None] | None:
    match _int(record.get("SendStatus")):
        case 3:
            return ("delivered", None)
        case 2:
            return ("undelivered", str(record.get("ErrCode") or "") or None)
        case _:  # 1: waiting for the handset's report
            return None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
