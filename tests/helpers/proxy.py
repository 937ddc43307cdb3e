"""A TCP proxy that can go silent on its open connections, like a dropped NAT entry.

It runs its own event loop in a thread, so tests that block (process probes)
do not stall the traffic it forwards.
"""

from __future__ import annotations

import asyncio
import threading

from cluster.processes import HOST, free_port


class SilencingProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._open: list[asyncio.StreamWriter] = []  # client sides of the connections
        self._writers: list[asyncio.StreamWriter] = []  # every socket, to close them all
        self._silenced: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=5)

    def silence_open_connections(self) -> int:
        """From now on, bytes on every connection open now are dropped; new ones work."""
        async def silence() -> int:
            self._silenced.update(self._open)
            return len(self._open)
        return asyncio.run_coroutine_threadsafe(silence(), self._loop).result(timeout=5)

    def close(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for writer in self._writers:
                writer.close()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            if self._server is not None:
                await self._server.wait_closed()
        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, HOST, self.port)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(HOST, self.upstream_port)
        self._open.append(client_writer)
        self._writers += [client_writer, upstream_writer]
        # Both directions of a connection are silenced together, keyed by the client side.
        await asyncio.gather(self._pump(client_reader, upstream_writer, client_writer),
                             self._pump(upstream_reader, client_writer, client_writer),
                             return_exceptions=True)
        upstream_writer.close()
        client_writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    key: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if key not in self._silenced:
                    writer.write(data)
                    await writer.drain()
        except ConnectionError:
            pass  # the other side went away; the connection ends here either way
        writer.close()
