"""A loopback stand-in for Alibaba Cloud SMS (Dysmsapi 2017-05-25), close enough that the official SDK
(alibabacloud_dysmsapi20170525) talks to it unchanged.

The SDK calls an RPC-style API: POST / with the action's parameters in the query string, the action and
version in x-acs-action / x-acs-version headers, signed with signature V3 (ACS3-HMAC-SHA256 in the
Authorization header). The fake checks that signature with the AccessKey secret it was given, the way
Aliyun's gateway does, and answers in Aliyun's JSON shapes: gateway errors (bad key, bad signature,
throttling, 5xx) with an HTTP error status; SMS business errors (isv.*, isp.*) with HTTP 200 and a Code
other than "OK", as Dysmsapi does.

Covers SendSms and QuerySendDetails, scripted faults (FIFO), per-number rejections, registered signs and
templates (optional), and delivery states per BizId (waiting, delivered, failed) that a test sets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import secrets
import signal
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, quote

from aiohttp import web
from multidict import CIMultiDictProxy

__all__ = ["CHINA", "AliyunServer", "Delivery", "SentSms", "canonical_phone", "verify_acs3"]

API_VERSION = "2017-05-25"
ALGORITHM = "ACS3-HMAC-SHA256"
MAX_CLOCK_SKEW_S = 15 * 60  # Aliyun refuses an x-acs-date more than 15 minutes off
MAX_PAGE_SIZE = 50
MAX_NUMBERS = 1000  # PhoneNumbers per SendSms
HOST_ID = "dysmsapi.aliyuncs.com"

# China Standard Time: Aliyun dates SMS records (SendDate) in it. A fixed offset, as China has kept no
# daylight saving time since 1991; no dependency on the machine's time zone database.
CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")

# Send statuses of QuerySendDetails.
WAITING, FAILED, DELIVERED = 1, 2, 3

# Gateway errors: the HTTP status and wording Aliyun's API gateway answers with.
_GATEWAY_ERRORS: dict[str, tuple[int, str]] = {
    "InvalidAccessKeyId.NotFound": (404, "Specified access key is not found."),
    "InvalidAccessKeyId.Inactive": (400, "Specified access key is disabled."),
    "SignatureDoesNotMatch": (400, "Specified signature does not match our calculation."),
    "IncompleteSignature": (400, "The request signature does not conform to Aliyun standards."),
    "InvalidTimeStamp.Expired": (400, "Specified time stamp or date value is expired."),
    "InvalidTimeStamp.Format": (400, "Specified time stamp or date value is not well formatted."),
    "SignatureNonceUsed": (400, "Specified signature nonce was used already."),
    "InvalidVersion": (400, "Specified parameter Version is not valid."),
    "InvalidAction.NotFound": (404, "Specified api is not found, please check your url and method."),
    "Throttling.User": (400, "Request was denied due to user flow control."),
    "Throttling.Api": (400, "Request was denied due to api flow control."),
    "Forbidden.RAM": (403, "User not authorized to operate on the specified resource."),
    "InternalError": (500, "The request processing has failed due to some unknown error, exception or failure."),
    "ServiceUnavailable": (503, "The request has failed due to a temporary failure of the server."),
}
_STATUS_CODES = {400: "InvalidParameter", 403: "Forbidden", 404: "InvalidAction.NotFound", 429: "Throttling.User"}
_STATUS_CODES |= {500: "InternalError", 502: "InternalError", 503: "ServiceUnavailable", 504: "ServiceUnavailable"}

# SMS business errors (HTTP 200), with the wording of Aliyun's error code list (help.aliyun.com 101346).
_BUSINESS_MESSAGES = {
    "isv.BUSINESS_LIMIT_CONTROL": "触发号码天级流控Permits:40",
    "isv.DAY_LIMIT_CONTROL": "触发日发送限额",
    "isv.AMOUNT_NOT_ENOUGH": "账户余额不足",
    "isv.OUT_OF_SERVICE": "业务停机",
    "isv.ACCOUNT_NOT_EXISTS": "账户不存在",
    "isv.ACCOUNT_ABNORMAL": "账户异常",
    "isv.PRODUCT_UN_SUBSCRIPT": "未开通云通信产品的阿里云客户",
    "isv.SMS_SIGNATURE_ILLEGAL": "该账号下找不到对应签名",
    "isv.SMS_TEMPLATE_ILLEGAL": "该账号下找不到对应模板",
    "isv.TEMPLATE_MISSING_PARAMETERS": "模板变量缺少对应参数值",
    "isv.INVALID_JSON_PARAM": "JSON参数不合法，只接受字符串值",
    "isv.INVALID_PARAMETERS": "参数异常",
    "isv.MOBILE_NUMBER_ILLEGAL": "非法手机号",
    "isv.MOBILE_COUNT_OVER_LIMIT": "手机号码数量超过限制",
    "isv.BLACK_KEY_CONTROL_LIMIT": "变量中传入疑似违规信息",
    "isp.SYSTEM_ERROR": "系统出现错误，请重新调用",
}

_MAINLAND = re.compile(r"1[0-9]{10}")
_INTERNATIONAL = re.compile(r"[1-9][0-9]{6,14}")
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


def canonical_phone(raw: str) -> str | None:
    """The number as Aliyun files it, or None if it cannot be one. Mainland numbers may come bare
    (13800138000) or with +86 / 0086 / 86 and are filed bare; others as international code + number
    (85291234567), the format SendSms documents for 国际/港澳台 messages (a leading + or 00 is tolerated)."""
    text = raw.strip()
    if text.startswith("+"):
        text = text[1:]
    elif text.startswith("00"):
        text = text[2:]
    if _MAINLAND.fullmatch(text):
        return text
    if text.startswith("86") and _MAINLAND.fullmatch(text[2:]):
        return text[2:]
    if _INTERNATIONAL.fullmatch(text) and not text.startswith("86"):
        return text
    return None


def china_day(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, CHINA).strftime("%Y%m%d")


def _china_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, CHINA).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True, slots=True)
class SentSms:
    """One message (one recipient) the fake accepted."""

    biz_id: str
    phone: str  # as the request gave it in PhoneNumbers
    sign_name: str
    template_code: str
    template_param: dict[str, str]
    out_id: str | None
    received_at: float  # epoch seconds (the server's clock)
    received_monotonic: float

    @property
    def send_date(self) -> str:
        """yyyyMMdd in China time: the day QuerySendDetails files it under."""
        return china_day(self.received_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "biz_id": self.biz_id,
            "phone": self.phone,
            "sign_name": self.sign_name,
            "template_code": self.template_code,
            "template_param": self.template_param,
            "out_id": self.out_id,
            "received_at": self.received_at,
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    status: int = WAITING  # WAITING, FAILED or DELIVERED
    err_code: str = ""  # the carrier's code: DELIVERED, or e.g. "MK:0001" for a failure
    at: float | None = None  # when the handset report came (ReceiveDate)


@dataclass(frozen=True, slots=True)
class _Fault:
    code: str | None = None  # answer with this Aliyun error code
    status: int | None = None  # with this HTTP status (None: the code's own; 200 for business codes)
    hang_s: float | None = None  # or delay the answer, then process normally


class _Refusal(Exception):
    """Raised by an action's handler: answer with this Aliyun error."""

    def __init__(self, code: str, message: str | None = None, status: int | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.message = message
        self.status = status


def verify_acs3(
    *,
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: CIMultiDictProxy[str],
    body: bytes,
    access_key_id: str,
    access_key_secret: str,
    now: float,
) -> str | None:
    """Check an ACS3-HMAC-SHA256 signature (Aliyun's signature V3) as the gateway does; the error code
    on failure (its message is in _GATEWAY_ERRORS), None if the request is authentic.

    CanonicalRequest = METHOD \\n URI \\n CanonicalQuery \\n CanonicalHeaders \\n SignedHeaders \\n body SHA-256
    (hex), where CanonicalQuery is every query parameter, RFC 3986-encoded, sorted by name, joined k=v with
    &, and CanonicalHeaders one "name:value\\n" line per signed header, lowercase and sorted. The string to
    sign is "ACS3-HMAC-SHA256\\n" + hex SHA-256 of the canonical request; the signature is its hex
    HMAC-SHA256 under the AccessKey secret."""
    authorization = headers.get("Authorization", "")
    algorithm, _, fields_text = authorization.partition(" ")
    if algorithm != ALGORITHM:
        return "IncompleteSignature"
    fields: dict[str, str] = {}
    for part in fields_text.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name] = value
    credential, signed_list, signature = (fields.get(k, "") for k in ("Credential", "SignedHeaders", "Signature"))
    if not credential or not signed_list or not signature:
        return "IncompleteSignature"
    if not secrets.compare_digest(credential, access_key_id):
        return "InvalidAccessKeyId.NotFound"
    signed = signed_list.split(";")
    present_acs = {name.lower() for name in headers if name.lower().startswith("x-acs-")}
    required = {"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"}
    # Every common header present must be signed, or a man in the middle could change it unnoticed.
    if not (required | present_acs) <= set(signed) or any(name not in headers for name in signed):
        return "IncompleteSignature"
    payload_hash = headers["x-acs-content-sha256"]
    if not secrets.compare_digest(payload_hash, hashlib.sha256(body).hexdigest()):
        return "SignatureDoesNotMatch"
    try:
        stamp = datetime.strptime(headers["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return "InvalidTimeStamp.Format"
    if abs(stamp - now) > MAX_CLOCK_SKEW_S:
        return "InvalidTimeStamp.Expired"
    canonical_query = "&".join(
        f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted(query.items(), key=lambda kv: kv[0])
    )
    canonical_headers = "".join(
        f"{name}:{','.join(sorted(v.strip() for v in headers.getall(name)))}\n" for name in sorted(signed)
    )
    canonical_request = (
        f"{method}\n{path or '/'}\n{canonical_query}\n{canonical_headers}\n{';'.join(sorted(signed))}\n{payload_hash}"
    )
    string_to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"
    expected = hmac.new(access_key_secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not secrets.compare_digest(expected, signature.lower()):
        return "SignatureDoesNotMatch"
    return None


class AliyunServer:
    """`async with AliyunServer(key_id, secret) as server:` then point the SDK at `server.base_url`
    (Config(endpoint=server.endpoint, protocol="http"))."""

    def __init__(
        self,
        access_key_id: str,
        access_key_secret: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        sign_names: Collection[str] | None = None,
        templates: Mapping[str, str] | None = None,
        on_message: Callable[[SentSms], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`sign_names` and `templates` (TemplateCode -> text with ${var} placeholders) are what the
        account has registered; None accepts any. `clock` dates accepted messages (their SendDate); the
        signature's freshness is always checked against the real time, as the SDK stamps requests with it."""
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.sign_names = set(sign_names) if sign_names is not None else None
        self.templates = dict(templates) if templates is not None else None
        self.clock = clock
        self.messages: list[SentSms] = []
        self.calls: list[tuple[str, dict[str, str]]] = []  # (action, parameters) of each authentic request
        self.request_count = 0
        self.hanging = 0  # requests held by a hang right now
        self._host = host
        self._port = port
        self._on_message = on_message
        self._script: deque[_Fault] = deque()
        self._fail_all: _Fault | None = None
        self._rejected: dict[str, str] = {}
        self._deliveries: dict[str, Delivery] = {}
        self._nonces: dict[str, float] = {}
        self._changed = asyncio.Condition()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._bound_port: int | None = None

        self.app = web.Application()
        self.app.router.add_route("*", "/", self._handle)

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """host:port, as the SDK's Config(endpoint=...) takes it (with protocol="http")."""
        if self._bound_port is None:
            raise RuntimeError("server not started")
        return f"{self._host}:{self._bound_port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.endpoint}"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self._bound_port = int(self._runner.addresses[0][1])  # the real port when asked for port 0

    async def close(self) -> None:
        self._closing.set()  # release hung handlers so shutdown does not wait for them
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> AliyunServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- programming it ----------------------------------------------------------------------------

    def fail_next(self, code: str | None = None, *, status: int | None = None, times: int = 1) -> None:
        """The next `times` requests fail with this Aliyun error code: a gateway code (Throttling.User,
        ServiceUnavailable, ...) with its HTTP status, a business code (isv.*, isp.*) with HTTP 200, unless
        `status` says otherwise. With only a status, the code Aliyun uses for it."""
        if code is None and status is None:
            raise ValueError("a code, a status or both")
        for _ in range(times):
            self._script.append(_Fault(code=code, status=status))

    def hang_next(self, seconds: float, *, times: int = 1) -> None:
        """Delay the next answers; the request is then processed (as Aliyun may accept after we gave up)."""
        for _ in range(times):
            self._script.append(_Fault(hang_s=seconds))

    def fail_all(self, code: str | None = None, *, status: int | None = None) -> None:
        """Every request fails until recover(); the FIFO script still goes first."""
        self._fail_all = _Fault(code=code, status=status)

    def hang_all(self, seconds: float) -> None:
        self._fail_all = _Fault(hang_s=seconds)

    def recover(self) -> None:
        self._fail_all = None
        self._script.clear()

    def reject_number(self, number: str, code: str = "isv.MOBILE_NUMBER_ILLEGAL") -> None:
        """SendSms to `number` (any accepted spelling) answers this business code."""
        self._rejected[canonical_phone(number) or number] = code

    def set_delivery(self, biz_id: str, state: str, err_code: str | None = None) -> None:
        """What QuerySendDetails reports for a message: "waiting", "delivered" or "failed" (with the
        carrier's error code, e.g. "MK:0001")."""
        if biz_id not in self._deliveries:
            raise KeyError(biz_id)
        match state:
            case "waiting":
                self._deliveries[biz_id] = Delivery()
            case "delivered":
                self._deliveries[biz_id] = Delivery(DELIVERED, err_code or "DELIVERED", self.clock())
            case "failed":
                self._deliveries[biz_id] = Delivery(FAILED, err_code or "UNDELIV", self.clock())
            case _:
                raise ValueError(f"unknown delivery state {state!r}")

    def delivery_of(self, biz_id: str) -> Delivery:
        return self._deliveries[biz_id]

    async def wait_for_messages(self, n: int, timeout: float = 5.0) -> list[SentSms]:
        """Wait until at least `n` messages were accepted; TimeoutError otherwise."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.messages) >= n)
        return list(self.messages)

    # -- HTTP --------------------------------------------------------------------------------------

    def _answer(self, code: str, message: str | None = None, status: int | None = None) -> web.Response:
        gateway = _GATEWAY_ERRORS.get(code)
        if status is None:
            status = gateway[0] if gateway is not None else 200
        text = message or (gateway[1] if gateway is not None else _BUSINESS_MESSAGES.get(code, code))
        body: dict[str, Any] = {"RequestId": _request_id(), "Code": code, "Message": text}
        if status >= 400:  # the gateway's error shape
            body |= {"HostId": HOST_ID, "Recommend": f"https://api.aliyun.com/troubleshoot?q={code}&product=Dysmsapi"}
        return _json(body, status)

    def _fault_answer(self, fault: _Fault) -> web.Response:
        code = fault.code
        if code is None:
            assert fault.status is not None
            code = _STATUS_CODES.get(fault.status, "InternalError" if fault.status >= 500 else "InvalidParameter")
        return self._answer(code, status=fault.status)

    def _authentic(self, request: web.Request, body: bytes) -> str | None:
        refusal = verify_acs3(
            method=request.method,
            path=request.path,
            query=request.query,
            headers=request.headers,
            body=body,
            access_key_id=self.access_key_id,
            access_key_secret=self.access_key_secret,
            now=time.time(),
        )
        if refusal is not None:
            return refusal
        nonce = request.headers["x-acs-signature-nonce"]
        now = time.monotonic()
        self._nonces = {n: t for n, t in self._nonces.items() if now - t < 2 * MAX_CLOCK_SKEW_S}
        if nonce in self._nonces:
            return "SignatureNonceUsed"  # a replayed request
        self._nonces[nonce] = now
        return None

    async def _handle(self, request: web.Request) -> web.Response:
        # Parameters first, then faults: a hang then models Aliyun taking the message but answering late.
        body = await request.read()
        params = dict(request.query)
        if request.content_type == "application/x-www-form-urlencoded":
            params |= dict(parse_qsl(body.decode(), keep_blank_values=True))
        self.request_count += 1
        fault = self._script.popleft() if self._script else self._fail_all
        if fault is not None and fault.hang_s is not None:
            self.hanging += 1
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), fault.hang_s)
            finally:
                self.hanging -= 1
        elif fault is not None:
            return self._fault_answer(fault)
        if request.method not in {"POST", "GET"}:
            return self._answer("InvalidAction.NotFound")
        if (refusal := self._authentic(request, body)) is not None:
            return self._answer(refusal)
        action = request.headers.get("x-acs-action", "")
        if request.headers.get("x-acs-version") != API_VERSION:
            return self._answer("InvalidVersion")
        self.calls.append((action, params))
        try:
            match action:
                case "SendSms":
                    return await self._send_sms(params)
                case "QuerySendDetails":
                    return self._query_send_details(params)
                case _:
                    return self._answer("InvalidAction.NotFound")
        except _Refusal as refusal_:
            return self._answer(refusal_.code, refusal_.message, refusal_.status)

    # -- actions -----------------------------------------------------------------------------------

    async def _send_sms(self, params: dict[str, str]) -> web.Response:
        phones, sign, template = (_required(params, k) for k in ("PhoneNumbers", "SignName", "TemplateCode"))
        numbers = [n.strip() for n in phones.split(",") if n.strip()]
        if len(numbers) > MAX_NUMBERS:
            raise _Refusal("isv.MOBILE_COUNT_OVER_LIMIT")
        for number in numbers:
            canonical = canonical_phone(number)
            if canonical is None:
                raise _Refusal("isv.MOBILE_NUMBER_ILLEGAL")
            if (code := self._rejected.get(canonical)) is not None:
                # This message quotes the number, as some of Aliyun's do, so tests see the client mask it.
                raise _Refusal(code, f"{_BUSINESS_MESSAGES.get(code, code)}: {number}")
        if self.sign_names is not None and sign not in self.sign_names:
            raise _Refusal("isv.SMS_SIGNATURE_ILLEGAL")
        values = _template_params(params.get("TemplateParam"))
        if self.templates is not None:
            text = self.templates.get(template)
            if text is None:
                raise _Refusal("isv.SMS_TEMPLATE_ILLEGAL")
            if any(name not in values for name in _PLACEHOLDER.findall(text)):
                raise _Refusal("isv.TEMPLATE_MISSING_PARAMETERS")
        out_id = params.get("OutId")
        if out_id is not None and len(out_id) > 256:
            raise _Refusal("isv.INVALID_PARAMETERS", "OutId too long")
        biz_id = f"{secrets.randbelow(10**18):018d}^0"
        received_at, received_monotonic = self.clock(), time.monotonic()
        sent = [
            SentSms(biz_id, number, sign, template, values, out_id, received_at, received_monotonic)
            for number in numbers
        ]
        self._deliveries[biz_id] = Delivery()
        async with self._changed:
            self.messages.extend(sent)
            self._changed.notify_all()
        if self._on_message is not None:
            for message in sent:
                self._on_message(message)
        return _json({"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": _request_id()})

    def _content(self, message: SentSms) -> str:
        text = (self.templates or {}).get(message.template_code)
        if text is None:
            rendered = json.dumps(message.template_param, ensure_ascii=False)
        else:
            rendered = _PLACEHOLDER.sub(lambda m: message.template_param.get(m.group(1), ""), text)
        return f"【{message.sign_name}】{rendered}"

    def _query_send_details(self, params: dict[str, str]) -> web.Response:
        phone, day, size_text, page_text = (
            _required(params, k) for k in ("PhoneNumber", "SendDate", "PageSize", "CurrentPage")
        )
        try:
            size, page = int(size_text), int(page_text)
            datetime.strptime(day, "%Y%m%d")  # noqa: DTZ007 (a calendar day, no time zone involved)
        except ValueError:
            raise _Refusal("isv.INVALID_PARAMETERS", "SendDate、PageSize或CurrentPage格式错误") from None
        if not 1 <= size <= MAX_PAGE_SIZE or page < 1:
            raise _Refusal("isv.INVALID_PARAMETERS", "PageSize须在1到50之间，CurrentPage从1开始")
        canonical = canonical_phone(phone)
        if canonical is None:
            raise _Refusal("isv.MOBILE_NUMBER_ILLEGAL")
        biz_id = params.get("BizId")
        found = [
            m
            for m in reversed(self.messages)  # newest first
            if canonical_phone(m.phone) == canonical and m.send_date == day and biz_id in (None, "", m.biz_id)
        ]
        records = []
        for m in found[(page - 1) * size : page * size]:
            delivery = self._deliveries.get(m.biz_id, Delivery())
            records.append(
                {
                    "PhoneNum": canonical,
                    "SendStatus": delivery.status,
                    "ErrCode": delivery.err_code,
                    "TemplateCode": m.template_code,
                    "Content": self._content(m),
                    "SendDate": _china_time(m.received_at),
                    "ReceiveDate": _china_time(delivery.at) if delivery.at is not None else "",
                    "OutId": m.out_id or "",
                }
            )
        return _json(
            {
                "Code": "OK",
                "Message": "OK",
                "RequestId": _request_id(),
                "TotalCount": len(found),
                "SmsSendDetailDTOs": {"SmsSendDetailDTO": records},
            }
        )


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    # Aliyun answers UTF-8 JSON with the Chinese as is, not as escapes.
    return web.json_response(body, status=status, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _request_id() -> str:
    return str(uuid.uuid4()).upper()


def _required(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise _Refusal(f"Missing{name}", f"{name} is mandatory for this action.", 400)
    return value


def _template_params(raw: str | None) -> dict[str, str]:
    if raw is None or raw == "":
        return {}
    try:
        values = json.loads(raw)
    except ValueError:
        raise _Refusal("isv.INVALID_JSON_PARAM") from None
    # Aliyun takes a JSON object of strings only ({"code":"123"}, never {"code":123}).
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise _Refusal("isv.INVALID_JSON_PARAM")
    return values


async def _serve(port: int, key_id: str, secret: str) -> None:
    def emit(message: SentSms) -> None:
        print(json.dumps(message.to_json(), ensure_ascii=False), flush=True)

    async with AliyunServer(key_id, secret, port=port, on_message=emit) as server:
        print(f"fake aliyun sms listening on {server.base_url}", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake Aliyun SMS API on loopback; prints messages as JSON lines")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key-id", required=True)
    parser.add_argument("--secret", required=True)
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.key_id, args.secret))


if __name__ == "__main__":
    main()
