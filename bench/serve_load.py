"""`cnnx serve` under load, side by side with what a user would otherwise write, on this machine.

    python bench/serve_load.py [--model cnnx/models/mnist.onnx] [--seconds 5] [--rounds 3] [--soak 100000]
        [--baseline CHECKOUT]

Servers, each on loopback, onnxruntime with one thread per process:
  cnnx   `cnnx serve` (micro-batching; the runtime's full mnist-digit preprocessing)
  cnnx-resize  `cnnx serve --preprocess plain`: resize only, the same work per image as plain
  cnnx-2w      `cnnx serve --workers 2`: two processes on the port
  plain  a FastAPI endpoint on the same uvicorn, one onnxruntime call per request (Pillow: grey,
         resize to the input size, normalise: less work per image than cnnx's recipe)
  plain-2w     the same endpoint under `uvicorn --workers 2`
  cnnx-baseline  with --baseline CHECKOUT: `cnnx serve` as that checkout (an older commit) has it;
               with --baseline-model FILE: serving that file instead (e.g. the same model exported otherwise)
  bentoml      the plain endpoint's work as a BentoML service (bench/bentoml_service.py), one worker
  bentoml-2w   the same with two workers
BentoML runs from an environment of its own (it pins its own web stack): --bentoml PYTHON names its
interpreter, e.g. after `python -m venv /tmp/bento && /tmp/bento/bin/pip install bentoml onnxruntime
pillow`; without it, BentoML is measured only when this interpreter can import it.

Load generator: wrk (Debian's `wrk`), one thread, a Lua script that posts the same 28x28 PNG
(cnnx/samples/digits/mnist-7.png) as image/png and reports the latency percentiles and errors.
wrk runs on the same 2 cores as the server, as every client on an edge box would.

Measured: requests/s, p50/p99 latency and errors at concurrency 1, 8 and 32 for each server,
--seconds a run, --rounds rounds with the servers taking turns (this machine's speed drifts by a
third within minutes), each figure the median over the rounds; one request carrying 256 images
(cnnx and cnnx-baseline, multipart, in the same rounds); each server's memory after the rounds (the
proportional set size of its processes added up: shared pages counted once); resident memory before
and after --soak requests (concurrency 8) for cnnx and plain (one process each); 10 s of load at concurrency 8
while the model is reloaded through the route every 0.25 s (cnnx and cnnx-2w, where a reload
reaches one worker and is passed to the other).
The bad-request matrix is tests/serve/test_bad_requests.py.

Prints a table and writes bench/results/serve_load.json; the exit code is 1 when a target is missed.
"""

import argparse
import importlib.util
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO))  # the cnnx package of this checkout

from cnnx.core.machine import machine_info  # noqa: E402

DIGIT = REPO / "cnnx" / "samples" / "digits" / "mnist-7.png"
CONCURRENCY = (1, 8, 32)
CHECKOUTS: dict[str, Path] = {}  # server name -> the cnnx checkout it runs from, when not this one
MODELS: dict[str, Path] = {}  # server name -> the model file it serves, when not --model
BENTOML: list[str] = []  # the interpreter that runs BentoML (--bentoml), when it is measured
RELOAD_SECONDS = 10  # of load at concurrency 8 while the model is reloaded every 0.25 s
BIG = {"cnnx": "big_request", "cnnx-baseline": "big_request_baseline"}  # servers sent one request of 256 images
# per row: `cnnx serve` options (as shipped, resize-only preprocessing = the plain endpoint's work, two
# processes), or the plain endpoint's uvicorn worker count
SERVERS: dict[str, list[str]] = {
    "cnnx": [],
    "cnnx-resize": ["--preprocess", "plain"],
    "cnnx-2w": ["--workers", "2"],
    "plain": ["1"],
    "plain-2w": ["2"],
}
LUA = r"""
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = os.getenv("BODY_TYPE")
function done(s, latency, requests)
  io.write(string.format('RESULT {"requests": %d, "seconds": %.6f, "p50_ms": %.4f, "p99_ms": %.4f, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
    s.requests, s.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    s.errors.connect, s.errors.read, s.errors.write, s.errors.status, s.errors.timeout))
end
"""


def plain_app(model: str, mean: float, std: float, size: int) -> Any:
    """The endpoint a user would write: decode, then bench/plain_model.py's classification."""
    import io

    import plain_model  # beside this script
    from fastapi import FastAPI, Request
    from PIL import Image

    session = plain_model.session(model)
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request) -> dict:  # (a real annotation: FastAPI reads it to pass the request)
        image = Image.open(io.BytesIO(await request.body()))
        return plain_model.classify(session, image, mean, std, size)

    return app


def plain_settings(model: str) -> tuple[float, float, int]:
    """(mean, std, size) of a one-channel model: its own, from its spec, as its user would copy them."""
    from cnnx.runtime import Classifier

    spec = Classifier(model).spec
    return spec.mean[0], spec.std[0], spec.input_shape[1]


def plain_from_env() -> Any:
    """The plain endpoint for `uvicorn --workers N` (which imports its app by name in each worker)."""
    model = os.environ["CNNX_PLAIN_MODEL"]
    return plain_app(model, *plain_settings(model))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name: str, model: Path) -> tuple[subprocess.Popen, str]:
    """(process, URL) of a server, once it answers a digit."""
    log = None
    model = MODELS.get(name, model)
    if name.startswith("bentoml"):
        port = free_port()
        mean, std, size = plain_settings(str(model))
        env = {
            **os.environ,
            "CNNX_BENTO_MODEL": str(model.resolve()),
            "CNNX_BENTO_MEAN": repr(mean),
            "CNNX_BENTO_STD": repr(std),
            "CNNX_BENTO_SIZE": str(size),
            "CNNX_BENTO_WORKERS": SERVERS[name][0],
            "BENTOML_HOME": tempfile.mkdtemp(prefix="cnnx-bentoml-home-"),  # nothing left in ~/bentoml
        }
        cmd = [*BENTOML, "-m", "bentoml", "serve", "bentoml_service:Digits", "--host", "127.0.0.1", "--port", str(port)]
        # its own process group: stop() ends the server and every worker it started; its log (a line
        # a request, as BentoML ships) goes to a file, not between the bench's lines
        log = Path(env["BENTOML_HOME"]) / "serve.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                cmd, cwd=Path(__file__).parent, env=env, stdout=out, stderr=out, start_new_session=True
            )
        url = f"http://127.0.0.1:{port}"
    elif name.startswith("cnnx"):
        cmd = [sys.executable, "-m", "cnnx", "serve", "--port", "0", "--model", str(model), *SERVERS[name]]
        # run from a checkout, `python -m cnnx` is that checkout's cnnx (--baseline: an older one)
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=CHECKOUTS.get(name, REPO))
        assert proc.stderr is not None
        line = proc.stderr.readline()
        found = re.search(r"listening on (http://\S+) ", line)
        if not found:
            raise SystemExit(f"cnnx serve did not start: {line}{proc.stderr.read()}")
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        url = found.group(1)
    else:
        port = free_port()
        cmd = [
            sys.executable,
            __file__,
            "--plain",
            str(port),
            "--plain-workers",
            SERVERS[name][0],
            "--model",
            str(model),
        ]
        proc = subprocess.Popen(cmd, cwd=REPO)
        url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            req = urllib.request.Request(url + "/predict", DIGIT.read_bytes(), {"Content-Type": "image/png"})
            with urllib.request.urlopen(req, timeout=10) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                stop(proc, kill=True)
                where = f" (its log: {log})" if log else ""
                raise SystemExit(f"{name} server did not answer a digit: {sys.exc_info()[1]}{where}") from None
            time.sleep(0.2)


def stop(proc: subprocess.Popen, kill: bool = False) -> None:
    """End a server: SIGTERM (SIGKILL with ``kill``) to its process group when it has one of its own
    (BentoML), else to the process, which ends its own workers."""
    sig = signal.SIGKILL if kill else signal.SIGTERM
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except ProcessLookupError:
        pass
    proc.wait(60)


def wrk(url: str, connections: int, seconds: float, body: Path, kind: str) -> dict[str, Any]:
    """One wrk run of ``seconds`` at ``connections`` concurrent connections."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA)
    env = {**os.environ, "BODY_FILE": str(body), "BODY_TYPE": kind}
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--timeout", "10s", "-s", f.name, url + "/predict"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    os.unlink(f.name)
    result = json.loads(out.split("RESULT ", 1)[1])
    result["rps"] = result["requests"] / result["seconds"]
    result["failed"] = sum(result["errors"].values())
    return result


def tree_pss_mb(pid: int) -> float:
    """Memory of process ``pid`` and all its descendants: their proportional set sizes added up, so
    pages the processes share (a forked worker's copy of its parent) count once, not once a process."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in rollup if line.startswith("Pss:"))
    return total / 1024


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def multipart_body(n: int, folder: Path) -> tuple[Path, str]:
    boundary = "cnnxbench"
    part = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="f"; filename="7.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + DIGIT.read_bytes()
        + b"\r\n"
    )
    path = folder / "many.bin"
    path.write_bytes(part * n + f"--{boundary}--\r\n".encode())
    return path, f"multipart/form-data; boundary={boundary}"


def measure(model: Path, seconds: float, soak: int, rounds: int) -> dict[str, Any]:
    """Every server started at once (an idle one takes no CPU), then ``rounds`` rounds, each running
    every server at every concurrency in turn: a change in the machine's speed during the run falls
    on every server alike. Each point is the median over the rounds (requests/s, p50, p99 apart)."""
    result: dict[str, Any] = {"servers": {}, "soak": {}, "rounds": rounds}
    folder = Path(tempfile.mkdtemp(prefix="cnnx-serve-load-"))
    procs: dict[str, tuple[subprocess.Popen, str]] = {}
    try:
        for name in SERVERS:
            procs[name] = start(name, model)
            wrk(procs[name][1], 8, 3, DIGIT, "image/png")  # warm-up
        runs: dict[str, dict[int, list[dict[str, Any]]]] = {name: {c: [] for c in CONCURRENCY} for name in SERVERS}
        big = {name: list[dict[str, Any]]() for name in BIG if name in procs}  # one request of 256 images
        body, kind = multipart_body(256, folder)
        for _ in range(rounds):
            for name, (_, url) in procs.items():
                for c in CONCURRENCY:
                    runs[name][c].append(wrk(url, c, seconds, DIGIT, "image/png"))
                if name in big:
                    big[name].append(wrk(url, 1, seconds, body, kind))
        result["servers"] = {name: {c: median_run(rs) for c, rs in per.items()} for name, per in runs.items()}
        result["memory_mb"] = {name: round(tree_pss_mb(proc.pid), 1) for name, (proc, _) in procs.items()}
        for name, rs in big.items():
            run = median_run(rs)
            result[BIG[name]] = {**run, "images_per_s": run["rps"] * 256}
        for name, (proc, url) in procs.items():
            if name in ("cnnx", "plain"):  # one process each: its resident memory is the server's
                result["soak"][name] = soak_run(proc.pid, url, soak)
            if name.startswith("cnnx") and name != "cnnx-resize":
                served = MODELS.get(name, model).stem  # cnnx serve names a model by its file
                result.setdefault("reload", {})[name] = reload_under_load(url, served, RELOAD_SECONDS)
    finally:
        for proc, _ in procs.values():
            stop(proc)
    return result


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Requests/s, p50 and p99 each the median over ``runs``; requests and failures added up."""

    def mid(key: str) -> float:
        return float(statistics.median(r[key] for r in runs))

    return {
        "rps": mid("rps"),
        "p50_ms": mid("p50_ms"),
        "p99_ms": mid("p99_ms"),
        "requests": sum(r["requests"] for r in runs),
        "failed": sum(r["failed"] for r in runs),
        "rps_runs": [round(r["rps"], 1) for r in runs],
    }


def soak_run(pid: int, url: str, requests: int) -> dict[str, Any]:
    """Resident memory before and after at least ``requests`` requests (10 s wrk runs at concurrency 8)."""
    before, done, failed = rss_mb(pid), 0, 0
    while done < requests:
        run = wrk(url, 8, 10, DIGIT, "image/png")
        done, failed = done + run["requests"], failed + run["failed"]
    return {"requests": done, "failed": failed, "rss_before_mb": before, "rss_after_mb": rss_mb(pid)}


def reload_under_load(url: str, model: str, seconds: float) -> dict[str, Any]:
    done, reloads = threading.Event(), []

    def reload() -> None:
        while not done.wait(0.25):
            req = urllib.request.Request(url + f"/v2/repository/models/{model}/load", b"", method="POST")
            with urllib.request.urlopen(req, timeout=30) as r:
                reloads.append(r.status)

    thread = threading.Thread(target=reload)
    thread.start()
    run = wrk(url, 8, seconds, DIGIT, "image/png")
    done.set()
    thread.join()
    return {**run, "reloads": len(reloads), "reloads_ok": reloads.count(200)}


def targets(r: dict[str, Any]) -> list[tuple[str, bool, str]]:
    servers = r["servers"]
    c1 = servers["cnnx"][1]
    best = max(("cnnx", "cnnx-2w"), key=lambda n: servers[n][32]["rps"])  # the faster cnnx setting at 32
    c32 = servers[best][32]
    grow = r["soak"]["cnnx"]["rss_after_mb"] - r["soak"]["cnnx"]["rss_before_mb"]
    found = [
        (
            "concurrency 1: p50 <= 2 ms, p99 <= 5 ms",
            c1["p50_ms"] <= 2 and c1["p99_ms"] <= 5,
            f"p50 {c1['p50_ms']:.2f} ms, p99 {c1['p99_ms']:.2f} ms",
        ),
        (
            "concurrency 32: >= 2,000 requests/s, p99 <= 50 ms",
            c32["rps"] >= 2000 and c32["p99_ms"] <= 50,
            f"{best}: {c32['rps']:,.0f} requests/s, p99 {c32['p99_ms']:.1f} ms",
        ),
    ]
    # against the plain endpoint with as many processes: cnnx as shipped, and doing the same work per image
    for mine, theirs in (("cnnx", "plain"), ("cnnx-resize", "plain"), ("cnnx-2w", "plain-2w")):
        a, b = servers[mine][32], servers[theirs][32]
        found.append(
            (
                f"concurrency 32, {mine} vs {theirs}: >= 1.5x the throughput, p99 no worse",
                a["rps"] >= 1.5 * b["rps"] and a["p99_ms"] <= b["p99_ms"],
                f"{a['rps'] / b['rps']:.2f}x, p99 {a['p99_ms']:.1f} vs {b['p99_ms']:.1f} ms",
            )
        )
    found += [
        (
            "one request of 256 images: >= 10,000 images/s",
            r["big_request"]["images_per_s"] >= 10_000,
            f"{r['big_request']['images_per_s']:,.0f} images/s",
        ),
        (
            f"resident memory flat within 10 MB over {r['soak']['cnnx']['requests']:,} requests",
            abs(grow) <= 10,
            f"{r['soak']['cnnx']['rss_before_mb']:.1f} -> {r['soak']['cnnx']['rss_after_mb']:.1f} MB",
        ),
    ]
    for name, run in r["reload"].items():
        found.append(
            (
                f"{name}: zero failed requests during reloads under load",
                run["failed"] == 0 and run["reloads_ok"] > 0,
                f"{run['failed']} failed of {run['requests']:,}; {run['reloads_ok']} reloads",
            )
        )
    return found


def report(r: dict[str, Any]) -> None:
    print(f"{'server':<14} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'memory MB':>10}")
    for name, rows in r["servers"].items():
        for c, row in rows.items():
            memory = f"{r['memory_mb'][name]:>10.1f}" if c == CONCURRENCY[0] else ""
            print(
                f"{name:<14} {c:>4} {row['rps']:>9,.0f} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['failed']:>7}"
                f" {memory}"
            )
    for mine, theirs in (("cnnx", "bentoml"), ("cnnx-2w", "bentoml-2w")):
        if theirs in r["servers"]:
            a, b = r["servers"][mine][32], r["servers"][theirs][32]
            print(
                f"{mine} vs {theirs} at concurrency 32: {a['rps'] / b['rps']:.2f}x the throughput, "
                f"p99 {a['p99_ms']:.1f} vs {b['p99_ms']:.1f} ms"
            )
    if "bentoml" not in r["servers"]:
        print("bentoml: not measured (pass --bentoml PYTHON, an interpreter with bentoml installed)")
    for name, s in r["soak"].items():
        print(
            f"{name}: RSS {s['rss_before_mb']:.1f} MB -> {s['rss_after_mb']:.1f} MB over {s['requests']:,} requests"
            f" ({s['failed']} failed)"
        )
    for key, name in (("big_request", "cnnx"), ("big_request_baseline", "cnnx-baseline")):
        if key in r:
            b = r[key]
            print(f"{name}: one request of 256 images: {b['images_per_s']:,.0f} images/s (p50 {b['p50_ms']:.1f} ms)")
    if "baseline" in r:
        now, then = r["servers"]["cnnx"][32], r["servers"]["cnnx-baseline"][32]
        print(
            f"cnnx vs cnnx-baseline ({r['baseline']['commit']}, {Path(r['baseline']['model']).name}) "
            f"at concurrency 32: {now['rps'] / then['rps']:.2f}x, "
            f"p99 {now['p99_ms']:.1f} vs {then['p99_ms']:.1f} ms"
        )
    for what, ok, figure in r["targets"]:
        print(f"{'met   ' if ok else 'MISSED'} {what}: {figure}")
    print(f"load average before {r['load_before']}, after {r['load_after']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=REPO / "cnnx" / "models" / "mnist.onnx")
    ap.add_argument("--seconds", type=float, default=5, help="each measured run")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each point, interleaved; the median is reported")
    ap.add_argument("--soak", type=int, default=100_000, help="requests between the two memory readings")
    ap.add_argument(
        "--baseline",
        type=Path,
        metavar="CHECKOUT",
        help="also run `cnnx serve` from another checkout (e.g. `git worktree add /tmp/old COMMIT`), as cnnx-baseline",
    )
    ap.add_argument(
        "--baseline-model",
        type=Path,
        metavar="FILE",
        help="the file cnnx-baseline serves [default: --model]; without --baseline it runs from this checkout",
    )
    ap.add_argument(
        "--bentoml",
        metavar="PYTHON",
        help="an interpreter with bentoml, onnxruntime and pillow installed [default: this one, if it has bentoml]",
    )
    ap.add_argument("--plain", type=int, metavar="PORT", help=argparse.SUPPRESS)  # run the plain server
    ap.add_argument("--plain-workers", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.plain:
        import uvicorn

        os.environ["CNNX_PLAIN_MODEL"] = str(args.model)
        uvicorn.run(
            "serve_load:plain_from_env",
            factory=True,
            app_dir=str(Path(__file__).parent),
            workers=args.plain_workers,
            host="127.0.0.1",
            port=args.plain,
            log_level="warning",
            access_log=False,
        )
        return
    r: dict[str, Any] = {"machine": machine_info(), "model": str(args.model), "load_before": os.getloadavg()}
    if args.baseline or args.baseline_model:
        SERVERS["cnnx-baseline"] = []
        checkout = args.baseline or REPO
        CHECKOUTS["cnnx-baseline"] = checkout.resolve()
        commit = ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"]
        r["baseline"] = {
            "checkout": str(checkout),
            "commit": subprocess.run(commit, capture_output=True, text=True).stdout.strip(),
            "model": str(args.baseline_model or args.model),
        }
        if args.baseline_model:
            MODELS["cnnx-baseline"] = args.baseline_model.resolve()
    bentoml = args.bentoml or (sys.executable if importlib.util.find_spec("bentoml") else None)
    if bentoml:
        BENTOML.append(bentoml)
        SERVERS.update({"bentoml": ["1"], "bentoml-2w": ["2"]})
        version = [bentoml, "-c", "import bentoml; print(bentoml.__version__)"]
        found = subprocess.run(version, capture_output=True, text=True)
        r["bentoml"] = {"python": bentoml, "version": found.stdout.strip()}
    r["command"] = " ".join(["python", "bench/serve_load.py", *sys.argv[1:]])
    r.update(measure(args.model, args.seconds, args.soak, args.rounds))
    r["load_after"] = os.getloadavg()
    r["targets"] = targets(r)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve_load.json").write_text(json.dumps(r, indent=2, default=str) + "\n")
    report(r)
    sys.exit(0 if all(ok for _, ok, _ in r["targets"]) else 1)


if __name__ == "__main__":
    main()
