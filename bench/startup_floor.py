"""The floor for bench_startup: the least a process must do to be "ready" the way alertd is, run as its own process.

It imports what any alertd needs to be reachable at all (asyncio, aiohttp's web server, aiomqtt), connects
to the broker with a persistent session (clean_session off, a fixed client id, like alertd), and serves
GET /healthz, which answers {"ok": true, "checks": {"mqtt": {"ok": true}}} once the connection is up
(503 before). It reads no roster, opens no store and imports nothing of alertd: start-up cost that is
the interpreter's, the libraries' and the broker's, measured the same way alertd is.

    python -m bench.startup_floor --http-port N --client-id C [--port 1883]

SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

import aiomqtt
from aiohttp import web


async def serve(args: argparse.Namespace) -> None:
    connected = asyncio.Event()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def healthz(_request: web.Request) -> web.Response:
        ok = connected.is_set()
        body = {"ok": ok, "checks": {"mqtt": {"ok": ok, "detail": "ok" if ok else "not connected"}}}
        return web.json_response(body, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", args.http_port).start()
        async with aiomqtt.Client("127.0.0.1", args.port, identifier=args.client_id, clean_session=False):
            connected.set()
            await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, default=1883, help="the broker on 127.0.0.1")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--client-id", required=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
