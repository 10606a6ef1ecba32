"""Ensemble members in training: several at once in threads on the CPU, and one put back from a checkpoint.

``fit.train_classifier`` trains an ensemble's members; this module decides how they share the machine.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TypeVar

import torch

from freezeframe import bert
from freezeframe.errors import FreezeframeError
from freezeframe.train import LoopResult

T = TypeVar("T")


def own_dropout(model: torch.nn.Module) -> bool:
    """Whether every dropout of ``model`` draws from :func:`bert.dropout_generator` (so that members can train
    at once, each following its own seed)."""
    return all(isinstance(m, bert.Dropout) for m in model.modules() if isinstance(m, torch.nn.Dropout))


def train_together(train_member: Callable[[int, threading.Event], T], members: int) -> list[T]:
    """Train the members at once, in threads that split the CPU's cores: on 2 cores, two members in one
    thread each take 80 to 90% of the time of one after the other (the Python and memory-bound work
    of one overlaps the other's matrix products). Ctrl-C stops every member after its current step.

    Args:
        train_member: trains member ``k``; it must return soon after the event it is given is set.
        members: how many members there are.

    Returns:
        What ``train_member`` returned, member by member. A member's exception is raised here; a Ctrl-C
        that stopped them is raised as ``KeyboardInterrupt`` once every thread has ended.
    """
    threads = torch.get_num_threads()
    workers = max(1, min(members, threads))
    pending = queue.SimpleQueue()
    for k in range(members):
        pending.put(k)
    stop = threading.Event()
    outcomes: dict[int, tuple] = {}
    failures: list[BaseException] = []
    ended = [threading.Event() for _ in range(workers)]

    def work(index: int) -> None:
        try:
            while not stop.is_set():
                try:
                    k = pending.get_nowait()
                except queue.Empty:
                    return
                try:
                    outcomes[k] = train_member(k, stop)
                except KeyboardInterrupt:  # stopped (Ctrl-C reached the main thread) or Ctrl-C inside the thread
                    stop.set()
                except BaseException as err:  # noqa: BLE001 - re-raised in the main thread
                    failures.append(err)
                    stop.set()
        finally:
            ended[index].set()

    torch.set_num_threads(max(1, threads // workers))
    pool = [threading.Thread(target=work, args=(i,), name=f"freezeframe-member-{i}") for i in range(workers)]
    try:
        for thread in pool:
            thread.start()
        # Wait on events, not Thread.join: a join that Ctrl-C interrupts can mark a running thread as
        # ended, and the interpreter then exits under it (a C++ abort, exit 134, instead of 130). Wait in
        # short steps: a SIGINT the kernel hands to another thread does not wake a blocked main thread,
        # and only the main thread runs Python's signal handler.
        while not all(event.is_set() for event in ended):
            try:
                for event in ended:
                    while not event.wait(0.1):
                        pass
            except KeyboardInterrupt:
                stop.set()  # every member stops after its current step; keep waiting for them
    finally:
        torch.set_num_threads(threads)
    if failures:
        raise failures[0]
    if len(outcomes) < members:  # stopped by Ctrl-C
        raise KeyboardInterrupt
    return [outcomes[k] for k in range(members)]


def same_frozen(first: torch.nn.Module, member: torch.nn.Module) -> bool:
    """Whether every frozen parameter of ``member`` equals the first member's, as the first member's frozen-prefix cache
    and probe vectors assume: not where the plan freezes a weight the checkpoint lacked (e.g. the [CLS] pooler of a
    masked-LM checkpoint), which starts random, as each member's seed draws it."""
    theirs = dict(first.named_parameters())
    return all(torch.equal(param, theirs[name]) for name, param in member.named_parameters() if not param.requires_grad)


def restore_member(model: torch.nn.Module, record: dict) -> LoopResult:
    """Put back an ensemble member that finished before an interruption (its trainable weights); returns its loop."""
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if set(trainable) != set(record["trainable"]):
        raise FreezeframeError("the checkpoint does not fit this model (its trainable parameters differ); "
                               "drop --resume and pass --overwrite to start over")
    with torch.no_grad():
        for name, value in record["trainable"].items():
            trainable[name].copy_(value)
    return LoopResult.from_dict(record["loop"])
