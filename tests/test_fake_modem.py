"""The pty fakes themselves, driven through a real pyserial connection as the daemon drives them."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import pytest
import serial
import serial_asyncio_fast

from alertd.protocols.sms_pdu import Reassembler, decode_deliver, decode_status_report, encode_submit
from tests.fakes.contact_id_receiver import ACK, NAK, FakeReceiver
from tests.fakes.gsm_modem import FakeModem

STEP_S = 2.0  # bound on every single exchange
QUIET_S = 0.3  # how long "nothing arrives" is watched
HELLO_SUBMIT = "0011000B916407281553F80000AA0AE8329BFD4697D9EC37"  # to +46708251358, "hellohello", TPDU 23
CN = "+8613800138000"
ALARM_CN = "村口发现可疑人员，请速来！"
_FINALS = ("OK", "ERROR", "+CME ERROR", "+CMS ERROR")


class Port:
    """The daemon's side of the line: a pyserial connection with just enough AT framing."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def command(self, line: str) -> list[str]:
        """Send one command line; the non-empty response lines up to and including the final result."""
        self.writer.write(line.encode() + b"\r")
        return await self.until_final()

    async def until_final(self) -> list[str]:
        out = []
        async with asyncio.timeout(STEP_S):
            while True:
                text = (await self.reader.readuntil(b"\n")).decode("latin-1").strip()
                if text:
                    out.append(text)
                if text.startswith(_FINALS):
                    return out

    async def line(self) -> str:
        """The next non-empty line (a URC)."""
        async with asyncio.timeout(STEP_S):
            while True:
                text = (await self.reader.readuntil(b"\n")).decode("latin-1").strip()
                if text:
                    return text

    async def expect(self, data: bytes) -> None:
        async with asyncio.timeout(STEP_S):
            assert await self.reader.readexactly(len(data)) == data

    async def quiet(self) -> bytes:
        """What arrives within QUIET_S (b"" when the other side stays silent)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(QUIET_S):
                return await self.reader.read(1024)
        return b""

    async def send_pdu(self, pdu: str, length: int) -> list[str]:
        self.writer.write(f"AT+CMGS={length}\r".encode())
        await self.expect(b"\r\n> ")
        self.writer.write(pdu.encode() + b"\x1a")
        return await self.until_final()


@contextlib.asynccontextmanager
async def open_port(path: str) -> AsyncIterator[Port]:
    async with asyncio.timeout(STEP_S):
        reader, writer = await serial_asyncio_fast.open_serial_connection(url=path, baudrate=115200)
    try:
        yield Port(reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(STEP_S):
                await writer.wait_closed()


@pytest.fixture
async def modem() -> AsyncIterator[FakeModem]:
    async with FakeModem() as fake:
        yield fake


@pytest.fixture
async def port(modem: FakeModem) -> AsyncIterator[Port]:
    async with open_port(modem.path) as line:
        assert await line.command("ATE0") == ["ATE0", "OK"]  # echo is on after power-up
        yield line


async def test_init_sequence(modem: FakeModem) -> None:
    async with open_port(modem.path) as line:
        assert await line.command("AT") == ["AT", "OK"]
        assert await line.command("ATE0") == ["ATE0", "OK"]
        assert await line.command("AT") == ["OK"]
        assert await line.command("AT+FOO") == ["ERROR"]
        assert await line.command("AT+CMEE=1") == ["OK"]
        assert await line.command("AT+CPIN?") == ["+CPIN: READY", "OK"]
        assert await line.command("AT+CREG?") == ["+CREG: 0,1", "OK"]
        assert await line.command("AT+CSQ") == ["+CSQ: 20,99", "OK"]
        assert await line.command("AT+CMGF=0") == ["OK"]
        assert await line.command('AT+CSCS="GSM"') == ["OK"]
        assert await line.command('AT+CPMS="SM","SM","SM"') == ["+CPMS: 0,30,0,30,0,30", "OK"]
        assert await line.command("AT+CPMS?") == ['+CPMS: "SM",0,30,"SM",0,30,"SM",0,30', "OK"]
        assert await line.command("AT+CNMI=2,1,0,2,0") == ["OK"]
        assert await line.command("AT+FOO") == ["+CME ERROR: 4"]
        assert await line.command("AT+CMGF?;+CNMI?") == ["+CMGF: 0", "+CNMI: 2,1,0,2,0", "OK"]
    assert modem.commands[:3] == ["AT", "ATE0", "AT"]
    assert modem.cnmi == ("2", "1", "0", "2", "0")


async def test_framing_split_and_glued(modem: FakeModem, port: Port) -> None:
    for byte in b"AT+CSQ\r":
        port.writer.write(bytes([byte]))
        await asyncio.sleep(0.01)
    assert await port.until_final() == ["+CSQ: 20,99", "OK"]
    port.writer.write(b"AT\r\nAT+CPIN?\r")  # a stray LF after CR is ignored
    assert await port.until_final() == ["OK"]
    assert await port.until_final() == ["+CPIN: READY", "OK"]
    assert modem.commands[-3:] == ["AT+CSQ", "AT", "AT+CPIN?"]


async def test_sends_one_pdu(modem: FakeModem, port: Port) -> None:
    modem.next_mr = 255
    assert await port.send_pdu(HELLO_SUBMIT, 23) == ["+CMGS: 255", "OK"]
    [sent] = await modem.wait_for_sent(1, STEP_S)
    assert (sent.to, sent.text, sent.parts, sent.mrs) == ("+46708251358", "hellohello", 1, (255,))
    assert sent.pdus == (HELLO_SUBMIT,)
    assert await port.send_pdu(HELLO_SUBMIT, 23) == ["+CMGS: 0", "OK"]  # TP-MR wraps at 256


async def test_concatenated_chinese_with_delivery_reports() -> None:
    modem = FakeModem(delivery_reports=True, delivery_report_delay=0.05, delivery_status=0x00)
    async with modem, open_port(modem.path) as line:
        await line.command("ATE0")
        text = ALARM_CN * 6  # 78 characters: two UCS-2 parts
        pdus = encode_submit("+8613912345678", text, reference=7)
        assert len(pdus) == 2
        for n, pdu in enumerate(pdus):
            assert await line.send_pdu(pdu.hex, pdu.tpdu_length) == [f"+CMGS: {n}", "OK"]
        [sent] = await modem.wait_for_sent(1, STEP_S)
        assert (sent.to, sent.text, sent.parts, sent.encoding) == ("+8613912345678", text, 2, "ucs2")
        reports = []
        for _ in range(2):
            head = await line.line()
            assert head.startswith("+CDS: ")
            report = bytes.fromhex(await line.line())
            assert int(head.removeprefix("+CDS: ")) == len(report) - 1 - report[0]  # TPDU length, SMSC excluded
            reports.append(decode_status_report(report.hex()))
        assert {r.mr for r in reports} == {0, 1}
        assert all(r.status == "delivered" and r.recipient == "+8613912345678" for r in reports)


async def test_bad_pdu_and_escape(modem: FakeModem, port: Port) -> None:
    assert await port.send_pdu(HELLO_SUBMIT, 22) == ["+CMS ERROR: 304"]
    assert await port.send_pdu("00" * 8, 7) == ["+CMS ERROR: 304"]  # right length, but an SMS-DELIVER
    assert [why.split()[:2] for _, why in modem.rejected] == [["length", "22"], ["not", "an"]]
    port.writer.write(b"AT+CMGS=23\r")
    await port.expect(b"\r\n> ")
    port.writer.write(HELLO_SUBMIT[:10].encode() + b"\x1b")
    assert await port.until_final() == ["OK"]
    assert modem.sent == []


async def test_cms_error_injection(modem: FakeModem, port: Port) -> None:
    modem.cms_error_next(500, times=2)
    assert await port.send_pdu(HELLO_SUBMIT, 23) == ["+CMS ERROR: 500"]
    assert await port.send_pdu(HELLO_SUBMIT, 23) == ["+CMS ERROR: 500"]
    assert await port.send_pdu(HELLO_SUBMIT, 23) == ["+CMGS: 0", "OK"]
    assert len(modem.sent) == 1


async def test_registration_and_signal(modem: FakeModem, port: Port) -> None:
    assert await port.command("AT+CREG=1") == ["OK"]
    modem.set_registration(2)
    assert await port.line() == "+CREG: 2"
    modem.set_signal(3)
    assert await port.command("AT+CREG?") == ["+CREG: 1,2", "OK"]
    assert await port.command("AT+CSQ") == ["+CSQ: 3,99", "OK"]
    assert await port.send_pdu(HELLO_SUBMIT, 23) == ["+CMS ERROR: 331"]
    modem.set_registration(5)
    assert await port.line() == "+CREG: 5"
    assert await port.send_pdu(HELLO_SUBMIT, 23) == ["+CMGS: 0", "OK"]


async def test_silence(modem: FakeModem, port: Port) -> None:
    modem.silence(True)
    port.writer.write(b"AT\r")
    assert await port.quiet() == b""
    await modem.receive_sms(CN, "lost urc")
    assert await port.quiet() == b""
    assert modem.lost_urcs == ['+CMTI: "SM",1']
    modem.silence(False)
    assert await port.command("AT") == ["OK"]
    assert modem.commands[-2:] == ["AT", "AT"]
    with pytest.raises(TimeoutError, match="CMGD"):
        await modem.wait_for_command("AT+CMGD", timeout=0.05)


async def test_receive_sms_cmti_and_cmgr(modem: FakeModem, port: Port) -> None:
    assert await modem.receive_sms(CN, "hellohello", parts=2) == [1, 2]
    assert await modem.receive_sms("10086", ALARM_CN) == [3]
    joiner = Reassembler()
    whole = []
    for index in (1, 2, 3):
        assert await port.line() == f'+CMTI: "SM",{index}'
    for index in (1, 2, 3):
        head, pdu, final = await port.command(f"AT+CMGR={index}")
        assert head.startswith("+CMGR: 0,,")
        assert int(head.rsplit(",", 1)[1]) == len(bytes.fromhex(pdu)) - 1 - bytes.fromhex(pdu)[0]
        assert final == "OK"
        done = joiner.add(decode_deliver(pdu), now=0.0)
        if done is not None:
            whole.append((done.sender, done.text, done.encoding))
    assert whole == [(CN, "hellohello", "gsm7"), ("10086", ALARM_CN, "ucs2")]
    assert (await port.command("AT+CMGR=1"))[0].startswith("+CMGR: 1,,")  # read now
    assert await port.command("AT+CMGR=9") == ["OK"]  # empty slot
    assert await port.command("AT+CMGR=99") == ["+CMS ERROR: 321"]


async def test_stored_without_notice_found_by_cmgl(modem: FakeModem, port: Port) -> None:
    await modem.receive_sms(CN, "no urc", notify=False)
    await modem.receive_sms(CN, "长消息" * 30, notify=False, order=[2, 1])  # 90 chars: 2 parts, out of order
    assert await port.quiet() == b""
    listed = await port.command("AT+CMGL=0")
    assert listed[-1] == "OK"
    heads = listed[0:-1:2]
    assert heads[0].startswith("+CMGL: 1,0,,")
    assert [h.split(",")[0] for h in heads] == ["+CMGL: 1", "+CMGL: 2", "+CMGL: 3"]
    parts = [decode_deliver(pdu) for pdu in listed[1:-1:2]]
    assert [p.part.seq if p.part else 0 for p in parts] == [0, 2, 1]
    assert await port.command("AT+CMGL=0") == ["OK"]  # listing marked them read
    assert len(await port.command("AT+CMGL=4")) == 7
    assert await port.command("AT+CMGD=1") == ["OK"]
    assert sorted(modem.stored) == [2, 3]
    assert await port.command("AT+CMGD=1,4") == ["OK"]
    assert modem.stored == {}


async def test_full_sim_waits_for_delete() -> None:
    async with FakeModem(capacity=1) as modem, open_port(modem.path) as line:
        await line.command("ATE0")
        assert await modem.receive_sms(CN, "first") == [1]
        assert await modem.receive_sms(CN, "second") == []
        assert await line.line() == '+CMTI: "SM",1'
        assert await line.command("AT+CMGD=1") == ["OK"]
        assert await line.line() == '+CMTI: "SM",1'
        assert decode_deliver(modem.stored[1].pdu).text == "second"


async def test_unplug_and_replug(modem: FakeModem) -> None:
    path = modem.path
    async with open_port(path) as line:
        assert await line.command("ATE0") == ["ATE0", "OK"]
        await modem.unplug()
        assert not os.path.lexists(path)
        with pytest.raises(serial.SerialException):  # pyserial's word for EOF/EIO on a hung-up tty
            async with asyncio.timeout(STEP_S):
                await line.reader.read(100)
        await modem.receive_sms(CN, "while away")  # stored on the SIM, the URC is lost
        assert modem.lost_urcs == ['+CMTI: "SM",1']
    with pytest.raises(serial.SerialException, match="No such file"):
        await serial_asyncio_fast.open_serial_connection(url=path, baudrate=115200)
    await modem.replug()
    assert modem.path == path
    async with open_port(path) as line:
        assert await line.command("AT") == ["AT", "OK"]  # a fresh power-up: echo on again
        listed = await line.command("AT+CMGL=4")
        assert decode_deliver(listed[2]).text == "while away"


async def test_receiver_round_trip() -> None:
    async with FakeReceiver() as receiver:
        async with open_port(receiver.path) as line:
            await receiver.send_line("5011 181234E12101001\x14", terminator="\r\n")
            async with asyncio.timeout(STEP_S):
                assert await line.reader.readuntil(b"\n") == b"5011 181234E12101001\x14\r\n"
            line.writer.write(ACK)
            await receiver.send_line("1011           @    \x14")
            async with asyncio.timeout(STEP_S):
                assert await line.reader.readuntil(b"\r") == b"1011           @    \x14\r"
            line.writer.write(NAK + b"OK\r")
            assert await receiver.wait_for_acks(3, STEP_S) == [ACK, NAK, b"OK\r"]
            with pytest.raises(TimeoutError, match="4 replies"):
                await receiver.wait_for_acks(4, 0.05)
            await receiver.unplug()
            with pytest.raises(ConnectionError):
                await receiver.send_line("x")
        await receiver.replug()
        async with open_port(receiver.path) as line:
            line.writer.write(ACK)
            assert await receiver.wait_for_acks(4, STEP_S) == [ACK, NAK, b"OK\r", ACK]
