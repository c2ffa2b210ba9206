"""An asyncio echo server over uTP: python echo_server_asyncio.py [PORT]

With --self-test it starts on a free port, echoes one message through
utp.open_connection, and exits."""

import asyncio
import sys

import utp


async def echo(reader, writer):
    peer = writer.get_extra_info("peername")
    while True:
        data = await reader.read(65536)
        if not data:
            break
        writer.write(data)
        await writer.drain()
    writer.close()
    print("closed connection from %s:%d" % peer)


async def serve(port):
    server = await utp.start_server(echo, "0.0.0.0", port)
    print("echoing on port %d" % server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


async def self_test():
    server = await utp.start_server(echo, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await utp.open_connection("127.0.0.1", port)
        writer.write(b"ping over asyncio uTP\n")
        await writer.drain()
        line = await reader.readline()
        print(line.decode().strip())
        writer.close()
        await writer.wait_closed()
        assert line == b"ping over asyncio uTP\n"


if __name__ == "__main__":
    if "--self-test" in sys.argv:
        asyncio.run(self_test())
    else:
        asyncio.run(serve(int(sys.argv[1]) if len(sys.argv) > 1 else 9000))
