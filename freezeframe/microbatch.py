"""Micro-batching for the HTTP service: requests that arrive close together share one forward pass.

Requests that arrive within ``wait_ms`` of each other (or while a forward pass runs) are merged by
:class:`MicroBatcher` into one ``predict_proba`` call; each request gets back exactly its own rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class MicroBatcher:
    """Runs the texts of requests arriving close together through one ``predict_proba`` call.

    Args:
        predict_proba: texts -> probabilities, one row per text in order; runs in one worker thread.
        wait_ms: how long the first request of a batch waits for company.
        max_texts: stop gathering once a batch holds this many texts.
    """

    def __init__(self, predict_proba: Callable[[list[str]], np.ndarray], wait_ms: float = 5.0,
                 max_texts: int = 512) -> None:
        self.predict_proba = predict_proba
        self.wait = wait_ms / 1000
        self.max_texts = max_texts
        self.requests = 0
        self.forward_passes = 0
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="freezeframe-forward")
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, texts: list[str]) -> np.ndarray:
        """Probabilities for ``texts`` (in order), computed together with other waiting requests."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((texts, future))
        return await future

    async def _gather(self) -> list[tuple[list[str], asyncio.Future]]:
        batch = [await self._queue.get()]
        size = len(batch[0][0])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        while size < self.max_texts:
            if self._queue.empty():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            else:
                item = self._queue.get_nowait()
            batch.append(item)
            size += len(item[0])
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            texts = [text for request_texts, _ in batch for text in request_texts]
            try:
                rows = await loop.run_in_executor(self._executor, self.predict_proba, texts)
            except Exception as err:  # noqa: BLE001 - the error belongs to the waiting requests, not the worker
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            self.forward_passes += 1
            self.requests += len(batch)
            start = 0
            for request_texts, future in batch:
                if not future.done():  # a client that went away leaves a cancelled future
                    future.set_result(rows[start : start + len(request_texts)])
                start += len(request_texts)
