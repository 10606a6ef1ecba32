"""The HTTP service: ``POST /predict`` over a model loaded once; concurrent requests share forward passes.

Requests that arrive within ``batch_wait_ms`` of each other (or while a forward pass runs) are merged by
:class:`MicroBatcher` into one ``predict_proba`` call; each request gets back exactly its own rows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from freezeframe import __version__
from freezeframe.config import check_fields
from freezeframe.errors import FreezeframeError, logger, report, require_packages
from freezeframe.microbatch import MicroBatcher

require_packages(("fastapi", "uvicorn"), "serving", "serve")  # before any import that would fail with a traceback
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class PredictRequest(BaseModel):
    """The body of ``POST /predict``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    texts: list[str] = Field(description="Texts to classify (at least one; limits in GET /info).",
                             examples=[["the camera work is stunning", "the ending made no sense"]])


class Prediction(BaseModel):
    label: str = Field(description="The most probable class.")
    scores: dict[str, float] = Field(description="Probability of every class.")


class PredictResponse(BaseModel):
    predictions: list[Prediction] = Field(description="One per text, in request order.")


@dataclass
class ServeConfig:
    """Where the service listens, what it accepts, and how it batches."""

    host: str = "127.0.0.1"
    """Interface to listen on (127.0.0.1: this machine only)."""
    port: int = 8000
    """TCP port (0 picks a free one)."""
    backend: str = "torch"
    """``torch`` or ``onnx``."""
    quantize: str = "none"
    """``int8`` serves the quantized ONNX graph (with ``backend="onnx"``)."""
    max_texts: int = 256
    """Most texts in one request (more: 413)."""
    max_chars: int = 10_000
    """Most characters in one text (more: 413)."""
    max_body_bytes: int = 8 * 2**20
    """Largest request body in bytes (more: 413)."""
    batch_wait_ms: float = 5.0
    """How long the first waiting request holds the forward pass open for others."""
    max_batch_texts: int = 512
    """Most texts merged into one forward pass."""
    batch_size: int = 64
    """Texts per model call inside a forward pass (length-sorted)."""
    max_concurrency: int = 1024
    """Requests in progress at once; more get 503 (a JSON error, as every other) instead of queueing without bound."""
    shutdown_timeout_s: float = 10.0
    """After SIGTERM or Ctrl-C, how long requests in progress may take before they are cut (a client that
    stalls mid-request otherwise kept the service from ever stopping)."""

    def __post_init__(self) -> None:
        check_fields(self)
        problems = [f"--{name.replace('_', '-')}: expected a positive number, got {getattr(self, name)}"
                    for name in ("max_texts", "max_chars", "max_batch_texts", "batch_size", "max_concurrency")
                    if getattr(self, name) < 1]
        if self.max_body_bytes < 1:
            problems.append(f"--max-body-mb: expected at least one byte, got {self.max_body_bytes} bytes")
        if not 0 <= self.port <= 65535:
            problems.append(f"--port: expected 0 to 65535, got {self.port}")
        if not 0 <= self.batch_wait_ms <= 1000:
            problems.append(f"--batch-wait-ms: expected 0 to 1000, got {self.batch_wait_ms}")
        if not 0 <= self.shutdown_timeout_s <= 3600:  # NaN fails too
            problems.append(f"--shutdown-timeout: expected 0 to 3600 seconds, got {self.shutdown_timeout_s}")
        if problems:
            raise ValueError("; ".join(problems))

    def limits(self) -> dict:
        return {"max_texts": self.max_texts, "max_chars": self.max_chars, "max_body_bytes": self.max_body_bytes}


class ConcurrencyLimit:
    """ASGI middleware: a request that finds ``limit`` requests in progress gets 503 at once, and so does one that
    shutting down cuts (``shutdown_timeout_s`` after SIGTERM), each with a JSON body shaped as every other error of
    the API (``{"detail": "..."}``); the requests cut are added to ``cut``.

    uvicorn's own ``limit_concurrency`` answers in plain text, and counts idle keep-alive connections too
    (which close after 5 s and cost nothing), so the limit is kept here instead; uvicorn cuts a request by
    cancelling its task, which it reports with a traceback."""

    def __init__(self, app, limit: int, cut: list[str]) -> None:
        self.app, self.limit, self.active, self.cut = app, limit, 0, cut

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            await _json_error(send, 503, f"the service is at its limit of {self.limit:,} requests in progress "
                                         "(serve --max-concurrency); retry shortly")
            return
        started = False

        async def tracked(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        self.active += 1
        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:  # cut by shutting down: answer, if the answer has not begun
            self.cut.append(scope.get("path", ""))
            if not started:
                await _json_error(send, 503, "the service is shutting down; retry on another instance or later")
        finally:
            self.active -= 1


async def _json_error(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"retry-after", b"1")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(classifier, config: ServeConfig | None = None, model_dir: Path | None = None):
    """The FastAPI application around an already-loaded classifier.

    Args:
        classifier: has ``predict_proba(texts, batch_size)``, ``labels`` and ``meta``.
        config: limits and batching.
        model_dir: shown by ``/info``.
    """
    if not hasattr(classifier, "predict_proba"):
        raise TypeError(f"create_app takes a loaded classifier, e.g. create_app(load_classifier(directory)), got "
                        f"{type(classifier).__name__}; serve_model(directory, ServeConfig()) serves a directory")
    if config is not None and not isinstance(config, ServeConfig):
        raise TypeError(f"create_app's config takes a ServeConfig, e.g. ServeConfig(max_texts=64), got {type(config).__name__}")
    config = config or ServeConfig()
    batcher = MicroBatcher(lambda texts: classifier.predict_proba(texts, config.batch_size),
                           config.batch_wait_ms, config.max_batch_texts)
    started = time.time()

    @asynccontextmanager
    async def lifespan(_app):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="freezeframe", version=__version__, lifespan=lifespan,
                  description="Text classification with a model trained by freezeframe.")
    app.state.batcher = batcher
    app.state.cut = []
    app.add_middleware(ConcurrencyLimit, limit=config.max_concurrency, cut=app.state.cut)
    errors = {413: {"description": "Body, text count or a text over the limits"},
              415: {"description": "A Content-Type that is not JSON (form-encoded, multipart, ...)"},
              422: {"description": "Malformed JSON, wrong types, or no texts"},
              503: {"description": "Over --max-concurrency requests in progress; retry shortly"}}
    body_schema = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": PredictRequest.model_json_schema()}}}}

    @app.post("/predict", response_model=PredictResponse, responses=errors, openapi_extra=body_schema)
    async def predict(request: Request) -> dict:
        """Classify texts; predictions come back in request order."""
        _check_content_type(request.headers.get("content-type", ""))
        body = await _read_limited(request, config.max_body_bytes)
        try:
            texts = PredictRequest.model_validate_json(body).texts
        except ValidationError as err:
            raise HTTPException(422, _validation_message(err)) from None
        _check_limits(texts, config)
        try:
            rows = await batcher.submit(texts)
        except Exception as err:  # noqa: BLE001 - answer 500 with a reason; the service stays up
            raise HTTPException(500, f"prediction failed: {type(err).__name__}: {err}") from None
        labels = classifier.labels
        return {"predictions": [
            {"label": labels[int(row.argmax())], "scores": {name: round(float(p), 6) for name, p in zip(labels, row)}}
            for row in rows
        ]}

    @app.get("/health")
    @app.head("/health", include_in_schema=False)  # what load balancers and `curl -I` probe with
    async def health() -> dict:
        """Liveness: the model is loaded and the batcher runs."""
        return {"status": "ok", "uptime_s": round(time.time() - started, 1)}

    @app.get("/info")
    async def info() -> dict:
        """Labels, model kind, freeze plan, validation metrics, backend, limits and batching counters."""
        meta = classifier.meta or {}
        return {
            "model": str(model_dir) if model_dir is not None else None,
            "kind": meta.get("kind", "transformer"),
            "labels": classifier.labels,
            "max_length": classifier.max_length,
            "freeze": meta.get("freeze", {}),
            "validation_metrics": meta.get("validation_metrics", {}),
            "backend": config.backend, "quantize": config.quantize,
            "limits": config.limits(),
            "batching": {"wait_ms": config.batch_wait_ms, "max_batch_texts": config.max_batch_texts,
                         "requests": batcher.requests, "forward_passes": batcher.forward_passes},
            "freezeframe_version": __version__,
        }

    return app


JSON_TEXT_TYPES = ("application/json", "text/json", "text/plain")
"""Content types whose body is read as JSON, besides none and ``application/*+json``: ``text/json`` is JSON's type
before RFC 4627 (older clients still send it), ``text/plain`` what ``fetch(url, {body: JSON.stringify(...)})`` sends
when no header is set."""


def _check_content_type(header: str) -> None:
    """Refuse with 415 a body declared as something other than JSON (curl's ``-d`` alone sends form-encoded)."""
    kind = header.split(";", 1)[0].strip().lower()
    if not kind or kind in JSON_TEXT_TYPES or (kind.startswith("application/") and kind.endswith("+json")):
        return
    raise HTTPException(415, f"Content-Type {kind} is not JSON; send the body as JSON with the header "
                             "'content-type: application/json' (curl: -H 'content-type: application/json')")


async def _read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    message = f"request body is larger than {limit:,} bytes (serve --max-body-mb)"
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, message)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, message)
        chunks.append(chunk)
    return b"".join(chunks).removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark (a file saved by Notepad): RFC 8259 lets a parser ignore it


def _validation_message(err: ValidationError) -> str:
    problems = []
    for item in err.errors()[:3]:
        if item["type"] == "json_invalid":
            return f"request body is not valid JSON ({item.get('ctx', {}).get('error', item['msg'])}); " \
                   'send {"texts": ["...", ...]}'
        where = ".".join(str(part) for part in item["loc"]) or "body"
        problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems) + ' (expected {"texts": ["...", ...]})'


def _check_limits(texts: list[str], config: ServeConfig) -> None:
    if not texts:
        raise HTTPException(422, "texts is empty; send at least one text")
    if len(texts) > config.max_texts:
        raise HTTPException(413, f"{len(texts)} texts in one request; the limit is {config.max_texts} "
                                 "(split the request or raise serve --max-texts)")
    for index, text in enumerate(texts):
        if len(text) > config.max_chars:
            raise HTTPException(413, f"texts.{index} has {len(text):,} characters; the limit is "
                                     f"{config.max_chars:,} (serve --max-chars)")


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket, or one line saying why the address cannot be used."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as err:
        raise FreezeframeError(f"cannot listen on {host_port(host, port)}: {err.strerror or err}; choose another --host/--port") from None
    return sock


def host_port(host: str, port: int) -> str:
    """``host:port`` as a URL writes it: an IPv6 address goes in brackets (RFC 3986), ``[::1]:8000``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def serve_model(model_dir: Path, config: ServeConfig) -> None:
    """Load the model once, then serve it until interrupted.

    A missing or broken model directory raises :class:`FreezeframeError` before anything listens.
    """
    import uvicorn

    from freezeframe.predict import load_predictor

    classifier = load_predictor(model_dir, config.backend, config.quantize)
    classifier.predict_proba(["warm up"], config.batch_size)  # first call allocates; keep it out of request latency
    sock = listening_socket(config.host, config.port)
    app = create_app(classifier, config, model_dir)
    host, port = sock.getsockname()[:2]
    logger.info(f"serving {model_dir} ({config.backend}{', int8' if config.quantize == 'int8' else ''}) on "
                f"http://{host_port(host, port)}  (POST /predict, GET /health, GET /info, docs at /docs)")
    logger.info(f"settings: {asdict(config)}")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_keep_alive=5,  # the limit: ConcurrencyLimit
                                           timeout_graceful_shutdown=config.shutdown_timeout_s))
    quiet = logging.getLogger("uvicorn.error")
    quiet.addFilter(_no_cancel_report)  # said below, as freezeframe says things
    try:
        server.run(sockets=[sock])
    finally:
        quiet.removeFilter(_no_cancel_report)
        if app.state.cut:
            report(f"{len(app.state.cut)} request(s) still in progress {config.shutdown_timeout_s:g} s after the "
                   "signal to stop were answered 503 (serve --shutdown-timeout)")
    if server.started and server.should_exit:
        # stopped by a signal that uvicorn took although it was ignored (a background job's Ctrl-C): say so, as for
        # any other (the rest re-raise through their own handlers as uvicorn ends)
        raise KeyboardInterrupt


def _no_cancel_report(record: logging.LogRecord) -> bool:
    return "timeout graceful shutdown exceeded" not in str(record.msg)
