"""The broker link over TLS with a client certificate and a password: a real Mosquitto with a TLS listener
(certificates made by openssl for the test), the daemon connecting by mqtts:// and handling an alarm."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
from pathlib import Path

import aiomqtt
import pytest

from tests.harness import BROKER_HOST, free_port, real_clock_env, running_daemon, write_village

PASSWORD = "daemon-secret-0123"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(folder: Path) -> None:
    """A CA, a server certificate for 127.0.0.1, and a client certificate for the daemon."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=alertd test CA",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=folder)  # fmt: skip
    for name, extra in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", cwd=folder)  # fmt: skip
        (folder / f"{name}.ext").write_text(extra + "\n", encoding="utf-8")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=folder)  # fmt: skip


async def test_daemon_connects_over_tls_with_client_certificate_and_password(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    make_certificates(certs)
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(tmp_path / "passwd"), "alertd", PASSWORD], check=True)
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        f"cafile {certs / 'ca.pem'}\ncertfile {certs / 'server.pem'}\nkeyfile {certs / 'server.key'}\n"
        "require_certificate true\nallow_anonymous false\n"
        f"password_file {tmp_path / 'passwd'}\npersistence false\n" + ("user root\n" if os.geteuid() == 0 else ""),
        encoding="utf-8",
    )
    broker = await asyncio.create_subprocess_exec(
        "mosquitto",
        "-c",
        str(conf),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=real_clock_env(),
    )
    (tmp_path / "village").mkdir()
    village = write_village(tmp_path / "village", broker_port=port)
    settings = village.settings_path.read_text(encoding="utf-8").replace(
        f'url = "mqtt://{BROKER_HOST}:{port}"',
        f'url = "mqtts://{BROKER_HOST}:{port}"\nusername = "alertd"\npassword = "{PASSWORD}"\n'
        f'ca_file = "{certs / "ca.pem"}"\ncert_file = "{certs / "client.pem"}"\nkey_file = "{certs / "client.key"}"',
    )
    assert "mqtts://" in settings
    village.settings_path.write_text(settings, encoding="utf-8")
    tls = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    tls.load_cert_chain(str(certs / "client.pem"), str(certs / "client.key"))
    try:
        await asyncio.sleep(0.5)
        async with (
            running_daemon(village),
            aiomqtt.Client(
                BROKER_HOST, port, username="alertd", password=PASSWORD, tls_context=tls, identifier="tls-sims"
            ) as sims,
        ):
            await sims.subscribe(f"{village.prefix}/dev/+/cmd", qos=1)
            await sims.publish(f"{village.prefix}/dev/t1-4/event", '{"type":"alarm","kind":"fire","seq":1}', qos=1)
            rung: set[str] = set()
            async with asyncio.timeout(15):
                async for message in sims.messages:
                    rung.add(message.topic.value.split("/")[-2])
                    if len(rung) == 9:
                        break
        assert rung == {f"t1-{h}" for h in range(1, 11)} - {"t1-4"}
        # Without the client certificate the broker refuses the connection.
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client(
                BROKER_HOST, port, username="alertd", password=PASSWORD,
                tls_context=ssl.create_default_context(cafile=str(certs / "ca.pem")), timeout=5,
            ):  # fmt: skip
                pass
    finally:
        broker.kill()  # its sessions go with it: nothing to clean up on the shared broker
        await broker.wait()
