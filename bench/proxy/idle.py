#!/usr/bin/env python3
"""Hold COUNT idle keep-alive TLS connections open to a server (bench/proxy.sh).

Usage: idle.py HOST PORT SNI PATH COUNT READY_FILE HOLD_SECONDS

Each connection does the TLS handshake (SNI given, HTTP/1.1 by ALPN, no certificate
check: the bench checks trust separately), one keep-alive GET of PATH, reads the
answer whole, and then stays open and idle. Connections are opened 50 at a time so
the server's listen backlog never overflows. When all are open (or failed), the
count of open ones goes to READY_FILE; then they are held for at most HOLD_SECONDS
(or until the process is stopped) and closed.

Loopback only: HOST must be a 127.0.0.0/8 address.
"""
import asyncio
import ipaddress
import ssl
import sys

BATCH = 50


async def one(host, port, sni, path, context):
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=context, server_hostname=sni), timeout=30
    )
    request = f"GET {path} HTTP/1.1\r\nHost: {sni}\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n"
    writer.write(request.encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status + b" ":
        raise RuntimeError(f"answer {status!r}")
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None:
        raise RuntimeError("no content-length (the bench's JSON answer has one)")
    await asyncio.wait_for(reader.readexactly(length), timeout=30)
    return writer


async def main():
    host, port, sni, path, count, ready_file, hold = sys.argv[1:8]
    if not ipaddress.ip_address(host).is_loopback:
        sys.exit(f"idle.py: {host} is not a loopback address")
    port, count, hold = int(port), int(count), float(hold)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    writers, errors = [], []
    for start in range(0, count, BATCH):
        results = await asyncio.gather(
            *(one(host, port, sni, path, context) for _ in range(min(BATCH, count - start))),
            return_exceptions=True,
        )
        for result in results:
            (errors if isinstance(result, BaseException) else writers).append(result)
    with open(ready_file, "w") as f:
        f.write(f"{len(writers)}\n")
    if errors:
        print(f"idle.py: {len(errors)} connections failed, first: {errors[0]!r}", file=sys.stderr)
    await asyncio.sleep(hold)
    for writer in writers:
        writer.close()


if __name__ == "__main__":
    asyncio.run(main())
