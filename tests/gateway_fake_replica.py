"""A tiny V2-style replica for gateway and backend tests: not ready for --warm-s, answers infer after --delay-ms.

Run: python tests/gateway_fake_replica.py --port N [--warm-s S] [--delay-ms MS]. SIGTERM: finish in-flight, exit.
The infer response carries ``"replica": <pid>`` so that tests can see where a request went.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--warm-s", type=float, default=0.0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--model", default="fake")
    parser.add_argument("--model-repo", default="")
    args, _ = parser.parse_known_args()
    ready_at = time.monotonic() + args.warm_s
    in_flight = 0
    stopping = asyncio.Event()
    body = json.dumps({"model_name": args.model, "replica": os.getpid(), "outputs": []}).encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal in_flight
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                if length:
                    await reader.readexactly(length)
                if path == "/v2/health/ready":
                    status, payload = (
                        (200, b"") if time.monotonic() >= ready_at and not stopping.is_set() else (503, b"")
                    )
                elif path == "/v2/health/live":
                    status, payload = 200, b""
                elif method == "POST" and path.endswith("/infer"):
                    in_flight += 1
                    try:
                        if args.delay_ms:
                            await asyncio.sleep(args.delay_ms / 1000)
                    finally:
                        in_flight -= 1
                    status, payload = 200, body
                else:
                    status, payload = 404, b'{"error":"not found"}'
                writer.write(
                    f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", args.port)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    await stopping.wait()
    server.close()
    while in_flight:
        await asyncio.sleep(0.01)


if __name__ == "__main__":
    asyncio.run(main())
