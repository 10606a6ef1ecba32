"""The HTTP service through FastAPI's test client: answers, limits, malformed input, micro-batching."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import ClassVar

import numpy as np
import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

from freezeframe.microbatch import MicroBatcher
from freezeframe.serve import ServeConfig, create_app

TRAIN_ARGS = ["--epochs", "2", "--lr", "1e-3", "--quiet", "--freeze", "last-1", "--valid-fraction", "0.15"]
TEXTS = ["the camera shot lighting", "a villain role", "plot twist ending", "very good film"]
LIMITS = ServeConfig(max_texts=8, max_chars=200, max_body_bytes=4000, batch_wait_ms=20)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir, tiny_data):
    from freezeframe.cli import main

    out = tmp_path_factory.mktemp("serve") / "model"
    main(["train", "--train", str(tiny_data["train"]), "--model", str(tiny_model_dir), "--out", str(out), *TRAIN_ARGS])
    return out


@pytest.fixture(scope="module")
def classifier(trained):
    from freezeframe.predict import load_classifier

    return load_classifier(trained, device="cpu")


@pytest.fixture(scope="module")
def client(classifier, trained):
    with TestClient(create_app(classifier, LIMITS, trained)) as test_client:
        yield test_client


class EchoClassifier:
    """Puts all probability on class ``int(text) % 3`` so that every answer names its own text."""

    labels: ClassVar[list[str]] = ["zero", "one", "two"]
    meta: ClassVar[dict] = {}
    max_length = 8

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[int] = []

    def predict_proba(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        self.calls.append(len(texts))
        time.sleep(self.delay)
        out = np.zeros((len(texts), 3), dtype=np.float32)
        out[np.arange(len(texts)), [int(t) % 3 for t in texts]] = 1.0
        return out


def test_predict_happy_path_matches_the_library(client, classifier):
    response = client.post("/predict", json={"texts": TEXTS})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert [p["label"] for p in predictions] == [r["label"] for r in classifier.predict(TEXTS)]
    assert all(set(p["scores"]) == set(classifier.labels) for p in predictions)
    assert all(abs(sum(p["scores"].values()) - 1) < 1e-4 for p in predictions)


def test_health_info_and_docs(client, trained):
    assert client.get("/health").json()["status"] == "ok"
    assert client.head("/health").status_code == 200
    info = client.get("/info").json()
    meta = json.loads((trained / "freezeframe.json").read_text())
    assert info["labels"] == meta["labels"] and info["kind"] == "transformer"
    assert info["freeze"]["plan"] == "last-1"
    assert info["validation_metrics"]["accuracy"] == meta["validation_metrics"]["accuracy"]
    assert info["limits"] == {"max_texts": 8, "max_chars": 200, "max_body_bytes": 4000}
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()["paths"]["/predict"]["post"]
    assert "texts" in json.dumps(schema["requestBody"]) and {"413", "415", "422"} <= set(schema["responses"])


@pytest.mark.parametrize("body, status, message", [
    ({"texts": ["a"] * 9}, 413, "9 texts in one request; the limit is 8"),
    ({"texts": ["ok", "x" * 201]}, 413, "texts.1 has 201 characters; the limit is 200"),
    ({"texts": ["x" * 150] * 8 * 4}, 413, "request body is larger than 4,000 bytes"),
    ({"texts": []}, 422, "texts is empty"),
    ({"texts": [1, 2]}, 422, "texts.0: Input should be a valid string"),
    ({"texts": "one text"}, 422, "texts: Input should be a valid array"),
    ({"texts": None}, 422, "texts: Input should be a valid array"),
    ({"text": ["typo"]}, 422, "texts: Field required"),
    (["a list"], 422, "Input should be an object"),
])
def test_limits_and_wrong_types_get_4xx_and_the_server_keeps_answering(client, body, status, message):
    response = client.post("/predict", json=body)
    assert response.status_code == status
    assert message in response.json()["detail"]
    assert client.post("/predict", json={"texts": ["still here"]}).status_code == 200


@pytest.mark.parametrize("raw", [b"{not json", b"", b'{"texts": ["unterminated', "{\"texts\": [\"\u00e9\"]}".encode("latin-1")])
def test_malformed_json_gets_422(client, raw):
    response = client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["detail"]


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                          "application/xml", "application/octet-stream"])
def test_a_body_declared_as_not_json_gets_415(client, content_type):
    response = client.post("/predict", content=json.dumps({"texts": ["a"]}), headers={"content-type": content_type})
    assert response.status_code == 415
    assert f"Content-Type {content_type.split(';')[0]} is not JSON" in response.json()["detail"]
    assert "application/json" in response.json()["detail"]


@pytest.mark.parametrize("content_type", [None, "application/json", "application/json; charset=utf-8",
                                          "Application/JSON", "application/vnd.api+json", "text/plain;charset=UTF-8",
                                          "text/json"])
def test_json_content_types_and_none_are_read_as_json(client, content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    response = client.post("/predict", content=json.dumps({"texts": ["a"]}), headers=headers)
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 1


def test_a_json_body_starting_with_a_utf8_byte_order_mark_is_read(client):
    response = client.post("/predict", content=b"\xef\xbb\xbf" + json.dumps({"texts": ["a"]}).encode(),
                           headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text


def test_body_limit_holds_without_content_length(client):
    def chunks():
        for _ in range(10):
            yield b" " * 1000

    response = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_microbatcher_merges_concurrent_requests_and_keeps_answers_apart():
    model = EchoClassifier(delay=0.01)

    async def scenario():
        batcher = MicroBatcher(model.predict_proba, wait_ms=20, max_texts=1000)
        await batcher.start()
        requests = [[str(i * 10 + j) for j in range(i % 4 + 1)] for i in range(40)]
        try:
            answers = await asyncio.gather(*(batcher.submit(texts) for texts in requests))
        finally:
            await batcher.stop()
        return requests, answers, batcher

    requests, answers, batcher = asyncio.run(scenario())
    for texts, rows in zip(requests, answers):
        assert rows.shape == (len(texts), 3)
        assert rows.argmax(1).tolist() == [int(t) % 3 for t in texts]
    assert batcher.requests == 40 and sum(model.calls) == sum(map(len, requests))
    assert batcher.forward_passes < 10, f"expected shared forward passes, got {model.calls}"


def test_microbatcher_respects_max_texts_and_reports_errors():
    model = EchoClassifier()

    async def scenario():
        batcher = MicroBatcher(model.predict_proba, wait_ms=50, max_texts=5)
        await batcher.start()
        try:
            answers = await asyncio.gather(*(batcher.submit(["1", "2"]) for _ in range(6)))
            failed = await asyncio.gather(batcher.submit(["not a number"]), return_exceptions=True)
            after = await batcher.submit(["4"])
        finally:
            await batcher.stop()
        return answers, failed, after

    answers, failed, after = asyncio.run(scenario())
    assert all(rows.argmax(1).tolist() == [1, 2] for rows in answers)
    assert max(model.calls[:-2]) <= 6, "a batch stops growing once it holds max_texts"
    assert isinstance(failed[0], ValueError) and after.argmax(1).tolist() == [1]


def test_concurrent_http_requests_get_their_own_answers():
    model = EchoClassifier(delay=0.02)
    results: dict[int, list[str]] = {}
    with TestClient(create_app(model, ServeConfig(batch_wait_ms=10))) as test_client:
        def call(i: int) -> None:
            texts = [str(i), str(i + 1), str(i + 2)][: i % 3 + 1]
            response = test_client.post("/predict", json={"texts": texts})
            results[i] = [p["label"] for p in response.json()["predictions"]]

        threads = [threading.Thread(target=call, args=(i,)) for i in range(48)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        batching = test_client.get("/info").json()["batching"]
    for i in range(48):
        assert results[i] == [model.labels[(i + k) % 3] for k in range(i % 3 + 1)]
    assert batching["requests"] == 48 and batching["forward_passes"] < 48


def test_a_failing_forward_pass_gives_500_and_the_service_survives():
    with TestClient(create_app(EchoClassifier())) as test_client:
        assert test_client.post("/predict", json={"texts": ["x"]}).status_code == 500
        assert test_client.post("/predict", json={"texts": ["7"]}).json()["predictions"][0]["label"] == "one"


def test_real_server_on_loopback_answers_and_stops(trained):
    """uvicorn on an ephemeral port, stopped in a bounded time."""
    import httpx
    import uvicorn

    from freezeframe.predict import load_predictor
    from freezeframe.serve import listening_socket

    sock = listening_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(load_predictor(trained, device="cpu")), log_level="error"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert http.get("/health").status_code == 200
            assert len(http.post("/predict", json={"texts": TEXTS}).json()["predictions"]) == 4
            assert http.post("/predict", content=b"{oops").status_code == 422
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
    assert not thread.is_alive()


def test_serve_refuses_a_broken_model_dir_in_one_line(run_cli, tmp_path):
    code, _, err = run_cli("serve", "--model", tmp_path / "missing", "--port", "0")
    assert code == 2 and "model directory not found" in err and len(err.strip().splitlines()) == 1
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "freezeframe.json").write_text("{half")
    code, _, err = run_cli("serve", "--model", broken, "--port", "0")
    assert code == 2 and "damaged" in err and len(err.strip().splitlines()) == 1


def test_serve_config_validates_fields():
    with pytest.raises(ValueError, match="--max-texts"):
        ServeConfig(max_texts=0)
    with pytest.raises(ValueError, match="--port"):
        ServeConfig(port=70000)


def test_serve_prints_an_ipv6_address_in_brackets(run_cli, trained, monkeypatch):
    import socket

    import uvicorn

    from freezeframe.serve import host_port

    assert host_port("::1", 8091) == "[::1]:8091" and host_port("127.0.0.1", 8091) == "127.0.0.1:8091"
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: sockets[0].close())
    code, _, err = run_cli("serve", "--model", trained, "--host", "::1", "--port", "0")
    assert code == 0 and "on http://[::1]:" in err


def test_requests_over_max_concurrency_get_a_json_503_and_the_rest_are_answered(trained, monkeypatch):
    """Before: uvicorn's limit_concurrency answered 'Service Unavailable' in plain text, where every other error
    of the API is JSON ({"detail": ...})."""
    release, entered = threading.Event(), threading.Event()

    class Held(EchoClassifier):
        def predict_proba(self, texts, batch_size=64):
            entered.set()
            release.wait(30)
            return super().predict_proba(texts, batch_size)

    answers: dict[str, object] = {}
    with TestClient(create_app(Held(), ServeConfig(max_concurrency=1, batch_wait_ms=0))) as test_client:
        def call(name: str, text: str) -> None:
            answers[name] = test_client.post("/predict", json={"texts": [text]})

        first = threading.Thread(target=call, args=("first", "4"))
        first.start()
        assert entered.wait(30), "the first request never reached the model"
        second = threading.Thread(target=call, args=("second", "5"))
        second.start()
        second.join(timeout=10)  # over the limit: answered at once, not queued behind the first
        release.set()
        first.join(timeout=30)
        second.join(timeout=30)
        assert test_client.get("/health").status_code == 200, "the limit frees its place"
    busy = answers["second"]
    assert busy.status_code == 503 and busy.headers["content-type"] == "application/json"
    assert "--max-concurrency" in busy.json()["detail"] and busy.headers["retry-after"] == "1"
    assert answers["first"].status_code == 200 and answers["first"].json()["predictions"][0]["label"] == "one"

    import uvicorn

    from freezeframe.serve import serve_model

    configs = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: (configs.append(self.config), sockets[0].close()))
    serve_model(trained, ServeConfig(port=0, max_concurrency=1))
    assert configs[0].limit_concurrency is None, "uvicorn's plain-text 503 would answer first"


def _serve_process(model, *extra: str, start: str = "from freezeframe.cli import main; main()"):
    """``freezeframe serve`` in a child process on a free port, once it accepts connections: (process, client socket)."""
    import os
    import re
    import socket
    import subprocess
    import sys

    command = [sys.executable, "-c", start, "serve", "--model", str(model), "--port", "0", *extra]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    first = server.stderr.readline()  # "serving MODEL (torch) on http://127.0.0.1:PORT ..."
    port = int(re.search(r"127\.0\.0\.1:(\d+)", first).group(1))
    deadline = time.monotonic() + 60
    while True:  # the port is bound before uvicorn listens on it
        try:
            return server, socket.create_connection(("127.0.0.1", port), timeout=30)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                server.kill()
                raise
            time.sleep(0.05)


def test_sigterm_stops_serve_even_with_a_client_stalled_mid_request(trained):
    """Before: graceful shutdown waited for every request in progress, so a client that sent half a body kept
    the service up for as long as it held its connection (a second SIGTERM did nothing either). Now such a
    request is answered 503 (JSON) after --shutdown-timeout, and said so in one line."""
    import signal

    server, client = _serve_process(trained, "--shutdown-timeout", "0.5")
    try:
        with client:
            client.sendall(b'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
                           b'Content-Length: 100\r\n\r\n{"texts": ')  # and then nothing more
            server.send_signal(signal.SIGTERM)
            _, err = server.communicate(timeout=120)  # a bound on a hang, not a timing
            answer = client.recv(65536)
    finally:
        server.kill()
    assert server.returncode == 143 and err.strip().splitlines()[-1] == "freezeframe: interrupted by SIGTERM", err
    assert "Traceback" not in err and "ERROR" not in err, err
    assert "warning: 1 request(s) still in progress 0.5 s after the signal to stop were answered 503" in err, err
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503") and b"shutting down" in json.loads(body)["detail"].encode(), answer


def test_serve_stopped_by_a_ctrl_c_it_was_told_to_ignore_says_so_and_exits_130(trained):
    """A background job (`freezeframe serve ... &` in a script) starts with Ctrl-C ignored, but uvicorn handles it
    anyway: before, `kill -INT` stopped the service with exit code 0 and nothing said."""
    import signal

    ignoring = "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); from freezeframe.cli import main; main()"
    server, client = _serve_process(trained, start=ignoring)
    try:
        client.close()
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=120)
    finally:
        server.kill()
    assert server.returncode == 130 and err.strip().splitlines()[-1] == "freezeframe: interrupted", err
