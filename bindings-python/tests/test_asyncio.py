"""asyncio streams over uTP: echo, bulk, many connections, flow control."""

import asyncio

import pytest

import utp
from conftest import pattern

MB = 1 << 20


def run(coro, timeout=120):
    async def bounded():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def echo_handler(reader, writer):
    while True:
        data = await reader.read(65536)
        if not data:
            break
        writer.write(data)
        await writer.drain()
    writer.close()


def test_echo_with_real_stream_objects():
    async def main():
        server = await utp.start_server(echo_handler, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await utp.open_connection("127.0.0.1", port)
            assert isinstance(reader, asyncio.StreamReader)
            assert isinstance(writer, asyncio.StreamWriter)
            writer.write(b"hello asyncio\n")
            await writer.drain()
            assert await reader.readline() == b"hello asyncio\n"
            assert writer.get_extra_info("peername") == ("127.0.0.1", port)
            writer.write_eof()
            assert await reader.read() == b""
            writer.close()
            await writer.wait_closed()
        assert not server.is_serving()

    run(main())


def test_twenty_mb_byte_exact():
    data = pattern(20 * MB, 7)

    async def main():
        got = bytearray()
        done = asyncio.get_running_loop().create_future()

        async def sink(reader, writer):
            while True:
                chunk = await reader.read(MB)
                if not chunk:
                    break
                got.extend(chunk)
            writer.close()
            done.set_result(None)

        server = await utp.start_server(sink, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await utp.open_connection("127.0.0.1", port)
        for i in range(0, len(data), MB):
            writer.write(data[i : i + MB])
            await writer.drain()
        writer.write_eof()
        await done
        writer.close()
        server.close()
        await server.wait_closed()
        return bytes(got)

    assert run(main()) == data


def test_two_hundred_concurrent_connections():
    async def main():
        server = await utp.start_server(echo_handler, "127.0.0.1", 0, backlog=256)
        port = server.sockets[0].getsockname()[1]

        async def client(i):
            reader, writer = await utp.open_connection("127.0.0.1", port)
            msg = pattern(5000, i)
            writer.write(msg)
            await writer.drain()
            back = await reader.readexactly(len(msg))
            writer.close()
            await writer.wait_closed()
            return back == msg

        results = await asyncio.gather(*(client(i) for i in range(200)))
        server.close()
        await server.wait_closed()
        return results

    assert all(run(main()))


def test_drain_waits_while_the_peer_does_not_read():
    async def main():
        paused = asyncio.Event()
        release = asyncio.Event()
        got = []

        async def slow(reader, writer):
            await release.wait()
            n = 0
            while True:
                chunk = await reader.read(MB)
                if not chunk:
                    break
                n += len(chunk)
            got.append(n)
            writer.close()

        server = await utp.start_server(slow, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await utp.open_connection("127.0.0.1", port)
        writer.transport.set_write_buffer_limits(high=256 * 1024)
        total = 0
        blocked = False
        for _ in range(64):
            writer.write(b"x" * 256 * 1024)
            total += 256 * 1024
            try:
                await asyncio.wait_for(writer.drain(), 0.5)
            except asyncio.TimeoutError:
                blocked = True
                break
        assert blocked, "drain() never waited although nobody read"
        assert writer.transport.get_write_buffer_size() > 0
        release.set()
        await writer.drain()
        writer.write_eof()
        while not got:
            await asyncio.sleep(0.05)
        writer.close()
        server.close()
        return total, got[0]

    total, received = run(main())
    assert received == total


def test_pause_reading_stops_taking_data():
    async def main():
        server_writer = []

        async def producer(reader, writer):
            server_writer.append(writer)
            writer.write(b"y" * (8 * MB))
            await writer.drain()
            writer.close()

        server = await utp.start_server(producer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await utp.open_connection("127.0.0.1", port)
        writer.write(b"go")
        await writer.drain()
        writer.transport.pause_reading()
        await asyncio.sleep(1.0)
        # Paused: the stream buffer holds nothing new, and the producer is
        # held back by the shrunken window.
        assert len(reader._buffer) < MB
        assert server_writer and server_writer[0].transport.get_write_buffer_size() > 0
        writer.transport.resume_reading()
        data = await reader.read()
        writer.close()
        server.close()
        return len(data)

    assert run(main()) == 8 * MB


def test_open_connection_refused():
    from conftest import free_udp_port

    async def main():
        with pytest.raises(ConnectionRefusedError):
            await utp.open_connection("127.0.0.1", free_udp_port())

    run(main())


def test_serve_forever_and_cancel():
    async def main():
        server = await utp.start_server(echo_handler, "127.0.0.1", 0, start_serving=False)
        assert not server.is_serving()
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0.05)
        assert server.is_serving()
        port = server.sockets[0].getsockname()[1]
        r, w = await utp.open_connection("127.0.0.1", port)
        w.write(b"ping")
        assert await r.readexactly(4) == b"ping"
        w.close()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not server.is_serving()

    run(main())
