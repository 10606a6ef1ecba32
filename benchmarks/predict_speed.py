"""Batch prediction and service speed: transformers' pipeline vs freezeframe (torch, ONNX fp32, ONNX int8).

Every contender runs in a fresh process on the same N texts (drawn with replacement from the data file):

* ``pipeline``: ``transformers.pipeline("text-classification", model=DIR, batch_size=32)``, called with
  ``truncation=True, max_length=<the model's max_length>`` so that it sees the same tokens as freezeframe
  (``--pipeline-no-truncation`` calls it without, as its defaults do);
* ``freezeframe torch`` / ``onnx fp32`` / ``onnx int8``: what ``freezeframe predict --input FILE
  [--backend onnx [--quantize int8]]`` runs (``load_predictor`` then ``predict``).

Reported per contender: texts/s over the prediction itself, load seconds, process wall seconds, peak
RSS, the ratio to the pipeline and label agreement with it. Then int8 against torch on the model's
validation split (label agreement, accuracy drop), and ``freezeframe serve`` under bounded loopback
load: a burst of concurrent requests (acceptance: 200 of 8 texts, no error, same labels as predict)
and a steady phase with a fixed number of clients (throughput, p50/p99 latency).

    .venv/bin/freezeframe train --train ../shared/data/imdb-aspects/train.csv --out runs/minilm-last1 \
        --freeze last-1 --valid-fraction 0.15 --seed 0
    .venv/bin/python benchmarks/predict_speed.py --model runs/minilm-last1 --n 10000

Run it on a quiet machine (``taskset -c 0,1`` pins two cores); the ONNX graphs are exported into
MODEL/onnx first (not timed) when missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "imdb-aspects" / "train.csv"
CONTENDERS = {
    "pipeline": ("transformers pipeline (batch 32)", None, "none"),
    "torch": ("freezeframe predict (torch)", "torch", "none"),
    "onnx": ("freezeframe predict --backend onnx", "onnx", "none"),
    "int8": ("freezeframe predict --backend onnx --quantize int8", "onnx", "int8"),
}


# ---------------------------------------------------------------- workers (run in fresh processes)

def worker(args: argparse.Namespace) -> None:
    """Load one contender, classify the texts, write labels and timings as JSON."""
    started = time.perf_counter()
    texts = json.loads(Path(args.texts).read_text(encoding="utf-8"))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.worker == "pipeline":
        from transformers import pipeline

        from freezeframe.predict import read_meta

        meta = read_meta(Path(args.model))
        max_length = meta.get("settings", {}).get("model", {}).get("max_length", 128)
        remote = meta.get("settings", {}).get("model", {}).get("pooling") == "mean"
        classify = pipeline("text-classification", model=args.model, batch_size=32, device="cpu",
                            trust_remote_code=remote)
        kwargs = {} if args.pipeline_no_truncation else {"truncation": True, "max_length": max_length}
        loaded = time.perf_counter()
        labels = [row["label"] for row in classify(texts, **kwargs)]
    else:
        _, backend, quantize = CONTENDERS[args.worker]
        if backend == "onnx" and args.threads:
            from freezeframe.onnx_backend import load_onnx_classifier

            classifier = load_onnx_classifier(Path(args.model), quantize, threads=args.threads)
        else:
            from freezeframe.predict import load_predictor

            classifier = load_predictor(Path(args.model), backend, quantize, device="cpu")
        loaded = time.perf_counter()
        labels = [row["label"] for row in classifier.predict(texts, args.batch_size)]
    done = time.perf_counter()
    Path(args.result).write_text(json.dumps({"labels": labels, "load_s": loaded - started, "predict_s": done - loaded,
                                             "peak_rss_mib": _peak_rss_mib(os.getpid())}), encoding="utf-8")


def validation_worker(args: argparse.Namespace) -> None:
    """torch vs ONNX fp32 vs int8 on the model's validation split: agreement and accuracy."""
    from freezeframe.data import load_labelled
    from freezeframe.onnx_backend import load_onnx_classifier
    from freezeframe.predict import load_classifier, read_meta
    from freezeframe.splits import split_train_valid

    meta = read_meta(Path(args.model))
    data, seed = meta["settings"]["data"], meta["settings"]["train"]["seed"]
    columns = (data["text_column"], data["label_column"], data["normalize_labels"])
    if data.get("valid"):
        valid = load_labelled(Path(data["valid"]), *columns)
    elif not data["valid_fraction"]:  # trained on every row: no text is unseen, so no accuracy to compare
        Path(args.result).write_text(json.dumps({"n": 0}), encoding="utf-8")
        return
    else:
        source = Path(args.data) if args.data else Path(data["train"])
        _, valid = split_train_valid(load_labelled(source, *columns), data["valid_fraction"], seed)
    results = {"n": len(valid)}
    reference = None
    for name, classifier in [("torch", load_classifier(Path(args.model), device="cpu")),
                             ("onnx", load_onnx_classifier(Path(args.model), "none")),
                             ("int8", load_onnx_classifier(Path(args.model), "int8"))]:
        labels = [row["label"] for row in classifier.predict(valid.texts)]
        reference = reference or labels
        results[name] = {
            "accuracy": sum(a == b for a, b in zip(labels, valid.labels)) / len(valid),
            "agreement_with_torch": sum(a == b for a, b in zip(labels, reference)) / len(valid),
        }
    Path(args.result).write_text(json.dumps(results), encoding="utf-8")


# ---------------------------------------------------------------- the parent: run, measure, report

def run_worker(args: argparse.Namespace, name: str, texts_file: Path, scratch: Path) -> dict:
    """Run one worker process; add its wall time (the worker reports its own peak memory)."""
    result = scratch / f"{name}.json"
    command = [sys.executable, __file__, "--worker", name, "--model", str(args.model), "--texts", str(texts_file),
               "--result", str(result), "--batch-size", str(args.batch_size)]
    command += ["--threads", str(args.threads)] if args.threads else []
    command += ["--data", str(args.data)] if name == "validation" else []
    command += ["--pipeline-no-truncation"] if args.pipeline_no_truncation else []
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    process.wait()
    if process.returncode != 0:
        raise SystemExit(f"{name} worker failed with exit code {process.returncode}")
    out = json.loads(result.read_text(encoding="utf-8"))
    out["wall_s"] = time.perf_counter() - started
    return out


def ensure_exported(model: Path) -> None:
    """Export fp32 and int8 graphs into MODEL/onnx once, outside the timed runs."""
    from freezeframe.export import ExportConfig, export_model
    from freezeframe.onnx_backend import find_export_dir

    onnx_dir = find_export_dir(model)
    if not (onnx_dir / "model.onnx").is_file() or not (onnx_dir / "model.int8.onnx").is_file():
        print(f"exporting {model} to ONNX (fp32 + int8), not timed ...", flush=True)
        export_model(ExportConfig(model, quantize="int8"))


async def load_phase(url: str, requests: list[list[str]], concurrency: int) -> tuple[list[float], list, int]:
    """Send every request with at most ``concurrency`` in flight; latencies, answers, error count."""
    import httpx

    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        async def one(texts: list[str]):
            async with gate:
                started = time.perf_counter()
                try:
                    response = await client.post("/predict", json={"texts": texts})
                except httpx.HTTPError:
                    return time.perf_counter() - started, None
                ok = response.status_code == 200
                return time.perf_counter() - started, response.json()["predictions"] if ok else None

        results = await asyncio.gather(*(one(texts) for texts in requests))
    latencies = [latency for latency, _ in results]
    answers = [answer for _, answer in results]
    return latencies, answers, sum(answer is None for answer in answers)


def service_benchmark(args: argparse.Namespace, pool: list[str], reference: dict[str, str]) -> dict:
    """Start ``freezeframe serve`` on loopback, run a burst and a steady phase, stop it (bounded)."""
    import httpx

    from freezeframe.serve import listening_socket

    probe = listening_socket("127.0.0.1", 0)
    port = probe.getsockname()[1]
    probe.close()
    backend = {"torch": ["--backend", "torch"], "onnx": ["--backend", "onnx"],
               "int8": ["--backend", "onnx", "--quantize", "int8"]}[args.service_backend]
    command = [str(Path(sys.executable).with_name("freezeframe")), "serve", "--model", str(args.model),
               "--port", str(port), *backend]
    server = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    rng = random.Random(args.seed + 1)
    try:
        deadline = time.time() + 180
        while True:
            if server.poll() is not None:
                raise SystemExit(f"freezeframe serve exited with {server.returncode}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise SystemExit("freezeframe serve did not start within 180 s")
            time.sleep(0.2)
        phases = {}
        for name, count, concurrency in [("burst", args.burst, args.burst), ("steady", args.steady, args.clients)]:
            requests = [[rng.choice(pool) for _ in range(args.texts_per_request)] for _ in range(count)]
            started = time.perf_counter()
            latencies, answers, errors = asyncio.run(load_phase(url, requests, concurrency))
            seconds = time.perf_counter() - started
            mismatches = sum(p["label"] != reference[t] for texts, answer in zip(requests, answers) if answer
                             for t, p in zip(texts, answer) if t in reference)
            ordered = sorted(latencies)
            phases[name] = {
                "requests": count, "concurrency": concurrency, "errors": errors, "label_mismatches": mismatches,
                "texts_per_s": count * args.texts_per_request / seconds,
                "p50_ms": 1000 * statistics.median(ordered), "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
            }
        oversize = httpx.post(f"{url}/predict", json={"texts": ["x"] * 10_000}, timeout=30).status_code
        malformed = httpx.post(f"{url}/predict", content=b"{oops", timeout=30).status_code
        alive = httpx.get(f"{url}/health", timeout=30).status_code
        info = httpx.get(f"{url}/info", timeout=30).json()["batching"]
        phases["checks"] = {"oversize": oversize, "malformed": malformed, "health_after": alive, **info}
        phases["peak_rss_mib"] = _peak_rss_mib(server.pid)
        return phases
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=15)


def _peak_rss_mib(pid: int) -> float | None:
    """The process's own high-water mark (VmHWM). Not wait4's ru_maxrss: a child forked from this
    large parent inherits the parent's resident size into that figure before it execs."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def report(args: argparse.Namespace, runs: dict, validation: dict | None, service: dict | None) -> None:
    base = runs["pipeline"]
    n = args.n
    print(f"\n{n:,} texts drawn with replacement from {args.data} (seed {args.seed}); model {args.model}; "
          f"threads {args.threads or 'default'}; cpus {len(os.sched_getaffinity(0))}\n")
    print("| contender | texts/s | × pipeline | load s | wall s | peak RSS MiB | same label as pipeline |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, result in runs.items():
        rate = n / result["predict_s"]
        agree = sum(a == b for a, b in zip(result["labels"], base["labels"])) / n
        print(f"| {CONTENDERS[name][0]} | {rate:,.1f} | {rate / (n / base['predict_s']):.2f}× | {result['load_s']:.1f} | "
              f"{result['wall_s']:.1f} | {result['peak_rss_mib']:,.0f} | {agree:.2%} |")
    if "torch" in runs and "int8" in runs:
        same = sum(a == b for a, b in zip(runs["int8"]["labels"], runs["torch"]["labels"])) / n
        print(f"\nint8 vs torch labels on the {n:,} benchmark texts: {same:.2%} the same")
    if validation and not validation["n"]:
        print("\nno validation split: the model trained on every row (train with --valid-fraction 0.15 to compare "
              "the backends' accuracy on held-out texts)")
    elif validation:
        t, q = validation["torch"], validation["int8"]
        print(f"validation split ({validation['n']} texts): int8 agrees with torch on {q['agreement_with_torch']:.2%}; "
              f"accuracy torch {t['accuracy']:.4f}, onnx fp32 {validation['onnx']['accuracy']:.4f}, "
              f"int8 {q['accuracy']:.4f} (drop {t['accuracy'] - q['accuracy']:+.4f})")
    if service:
        print(f"\nfreezeframe serve --backend {args.service_backend}, loopback, {args.texts_per_request} texts per request; "
              f"server peak RSS {service['peak_rss_mib'] or 0:,.0f} MiB")
        print("| phase | requests | concurrent | texts/s | p50 ms | p99 ms | errors | label mismatches vs predict |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name in ("burst", "steady"):
            s = service[name]
            print(f"| {name} | {s['requests']} | {s['concurrency']} | {s['texts_per_s']:,.1f} | {s['p50_ms']:,.0f} | "
                  f"{s['p99_ms']:,.0f} | {s['errors']} | {s['label_mismatches']} |")
        c = service["checks"]
        print(f"oversize request -> {c['oversize']}, malformed JSON -> {c['malformed']}, /health afterwards -> "
              f"{c['health_after']}; {c['requests']} requests shared {c['forward_passes']} forward passes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="Trained model directory (freezeframe train --out).")
    parser.add_argument("--n", type=int, default=10_000, help="Texts to classify.")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CSV whose review column the texts come from.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="Threads per contender (default: library defaults).")
    parser.add_argument("--batch-size", type=int, default=64, help="freezeframe predict --batch-size.")
    parser.add_argument("--only", default="pipeline,torch,onnx,int8", help="Contenders to run (pipeline always runs).")
    parser.add_argument("--pipeline-no-truncation", action="store_true", help="Call the pipeline with its defaults.")
    parser.add_argument("--no-service", action="store_true", help="Skip the serve benchmark.")
    parser.add_argument("--service-backend", default="torch", choices=["torch", "onnx", "int8"])
    parser.add_argument("--burst", type=int, default=200, help="Concurrent requests in the burst phase.")
    parser.add_argument("--steady", type=int, default=400, help="Requests in the steady phase.")
    parser.add_argument("--clients", type=int, default=16, help="Concurrent clients in the steady phase.")
    parser.add_argument("--texts-per-request", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None, help="Also write all numbers here.")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--texts", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "validation":
        return validation_worker(args)
    if args.worker:
        return worker(args)
    for option in ("n", "batch_size", "burst", "steady", "clients", "texts_per_request"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1, not {getattr(args, option)}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, not {args.threads}")
    unknown = [name for name in args.only.split(",") if name not in CONTENDERS]
    if unknown:
        parser.error(f"--only: unknown contender {unknown[0]!r} (choose from {', '.join(CONTENDERS)})")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    import pandas as pd

    from freezeframe.errors import FreezeframeError
    from freezeframe.predict import check_model_files

    check_model_files(args.model)  # a mistyped --model stops here, not in the first worker

    try:
        pool = [str(t) for t in pd.read_csv(args.data)["review"].dropna()]
    except (OSError, ValueError, KeyError) as err:  # a missing file or column, a file that is no CSV
        detail = "no 'review' column" if isinstance(err, KeyError) else " ".join(str(err).split())
        raise FreezeframeError(f"--data {args.data}: {detail}") from None
    if not pool:
        raise FreezeframeError(f"--data {args.data}: no texts in its 'review' column")
    rng = random.Random(args.seed)
    texts = [rng.choice(pool) for _ in range(args.n)]
    names = ["pipeline"] + [n for n in args.only.split(",") if n in CONTENDERS and n != "pipeline"]
    if {"onnx", "int8"} & set(names) or args.service_backend != "torch":
        ensure_exported(args.model)
    with tempfile.TemporaryDirectory(prefix="predict-speed-") as scratch:
        texts_file = Path(scratch) / "texts.json"
        texts_file.write_text(json.dumps(texts), encoding="utf-8")
        runs = {}
        for name in names:
            print(f"running {CONTENDERS[name][0]} on {args.n:,} texts ...", flush=True)
            runs[name] = run_worker(args, name, texts_file, Path(scratch))
        validation = run_worker(args, "validation", texts_file, Path(scratch)) if "int8" in names else None
    service = None
    if not args.no_service:
        print("running freezeframe serve under load ...", flush=True)
        reference_run = runs.get(args.service_backend) or runs["pipeline"]
        reference = dict(zip(texts, reference_run["labels"]))
        service = service_benchmark(args, sorted(set(texts)), reference)
    report(args, runs, validation, service)
    if args.json:
        slim = {name: {k: v for k, v in run.items() if k != "labels"} for name, run in runs.items()}
        args.json.write_text(json.dumps({"n": args.n, "runs": slim, "validation": validation, "service": service},
                                        indent=2), encoding="utf-8")


if __name__ == "__main__":
    from freezeframe.errors import FreezeframeError

    try:
        main()
    except FreezeframeError as err:  # the user's mistake: one line, as the freezeframe command prints it
        print(f"predict_speed.py: error: {' '.join(str(err).split())}", file=sys.stderr)
        sys.exit(err.exit_code)
