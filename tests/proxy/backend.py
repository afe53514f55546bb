"""A small HTTP/1.1 backend for the proxy tests, standard library only: `python backend.py NAME PORT`.

Every answer carries `x-backend: NAME`. Paths:
  /healthz                 200, or the status set by /admin/health?status=N
  /hold?ms=N               answers after N ms
  /status/N                answers status N
  /headers                 the request line and headers it received, as JSON
  /upload                  reads the body (length or chunked) and answers {"bytes": n}
  /download?bytes=N        N bytes of body (&chunked=1: chunked; &close=1: delimited by closing)
  /ws                      WebSocket echo
  /admin/health?status=N   sets what /healthz answers
  /admin/fail?status=N&count=K   the next K ordinary requests answer N
  /admin/delay?ms=N        ordinary requests wait N ms first
  /admin/hits              how many ordinary requests it served
anything else              200 with the backend's name as the body
"""

import asyncio
import base64
import hashlib
import json
import sys
from urllib.parse import parse_qs, urlsplit

NAME = sys.argv[1]
PORT = int(sys.argv[2])
STATE = {"health": 200, "fail_status": 500, "fail_count": 0, "hits": 0, "delay_ms": 0}
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
BLOCK = b"x" * 262144


def respond(writer, status, body=b"", headers=(), length=True):
    head = [f"HTTP/1.1 {status} X".encode(), f"x-backend: {NAME}".encode()]
    if length:
        head.append(f"content-length: {len(body)}".encode())
    head += [h.encode() for h in headers]
    writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)


async def read_body(reader, headers):
    """Yields the body in pieces (Content-Length or chunked)."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass
                return
            remaining = size
            while remaining:
                piece = await reader.read(min(remaining, 262144))
                if not piece:
                    raise ConnectionError("body cut")
                remaining -= len(piece)
                yield piece
            await reader.readexactly(2)
    else:
        remaining = int(headers.get("content-length", "0"))
        while remaining:
            piece = await reader.read(min(remaining, 262144))
            if not piece:
                raise ConnectionError("body cut")
            remaining -= len(piece)
            yield piece


async def websocket(reader, writer, headers):
    accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + WS_GUID).digest()).decode()
    writer.write(
        (
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
            f"sec-websocket-accept: {accept}\r\nx-backend: {NAME}\r\n\r\n"
        ).encode()
    )
    while True:
        first, second = await reader.readexactly(2)
        opcode = first & 0x0F
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(await reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await reader.readexactly(8), "big")
        mask = await reader.readexactly(4) if second & 0x80 else b"\0\0\0\0"
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(await reader.readexactly(length)))
        if opcode == 8:
            writer.write(b"\x88\x00")
            await writer.drain()
            return
        if length < 126:
            frame = bytes([0x80 | opcode, length])
        else:
            frame = bytes([0x80 | opcode, 126]) + length.to_bytes(2, "big")
        writer.write(frame + payload)
        await writer.drain()


async def handle(reader, writer):
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            _method, target, _ = lines[0].split(" ", 2)
            headers = {}
            header_list = []
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                    header_list.append([name.strip().lower(), value.strip()])
            url = urlsplit(target)
            query = {key: values[0] for key, values in parse_qs(url.query).items()}
            path = url.path
            if path == "/ws":
                await websocket(reader, writer, headers)
                return
            if path == "/upload":
                total = 0
                async for piece in read_body(reader, headers):
                    total += len(piece)
                respond(writer, 200, json.dumps({"bytes": total}).encode())
                await writer.drain()
                continue
            async for _ in read_body(reader, headers):
                pass
            if path == "/healthz":
                respond(writer, STATE["health"], b"{}")
            elif path == "/admin/health":
                STATE["health"] = int(query["status"])
                respond(writer, 200, b"ok")
            elif path == "/admin/fail":
                STATE["fail_status"] = int(query.get("status", 500))
                STATE["fail_count"] = int(query.get("count", 1))
                respond(writer, 200, b"ok")
            elif path == "/admin/delay":
                STATE["delay_ms"] = int(query["ms"])
                respond(writer, 200, b"ok")
            elif path == "/admin/hits":
                respond(writer, 200, str(STATE["hits"]).encode())
            else:
                STATE["hits"] += 1
                if STATE["delay_ms"]:
                    await asyncio.sleep(STATE["delay_ms"] / 1000)
                if STATE["fail_count"] > 0:
                    STATE["fail_count"] -= 1
                    respond(writer, STATE["fail_status"], b'{"failed": true}')
                elif path == "/hold":
                    await asyncio.sleep(int(query.get("ms", 100)) / 1000)
                    respond(writer, 200, NAME.encode())
                elif path.startswith("/status/"):
                    respond(writer, int(path.rsplit("/", 1)[1]), NAME.encode())
                elif path == "/headers":
                    body = json.dumps({"request_line": lines[0], "headers": header_list}).encode()
                    respond(writer, 200, body, ["content-type: application/json"])
                elif path == "/download":
                    await download(writer, int(query["bytes"]), query.get("chunked") == "1", query.get("close") == "1")
                    if query.get("close") == "1":
                        return
                else:
                    respond(writer, 200, NAME.encode(), ["content-type: text/plain"])
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def download(writer, size, chunked, close):
    if chunked:
        respond(writer, 200, headers=["transfer-encoding: chunked"], length=False)
    elif close:
        respond(writer, 200, headers=["connection: close"], length=False)
    else:
        respond(writer, 200, headers=[f"content-length: {size}"], length=False)
    remaining = size
    while remaining:
        piece = BLOCK[: min(remaining, len(BLOCK))]
        remaining -= len(piece)
        writer.write(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
        await writer.drain()
    if chunked:
        writer.write(b"0\r\n\r\n")
    await writer.drain()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", PORT, reuse_address=True)
    print(f"backend {NAME} ready on {PORT}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
