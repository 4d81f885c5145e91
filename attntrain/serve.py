"""`attntrain serve RUN`: a JSON HTTP API over one loaded run (FastAPI on uvicorn), with dynamic batching.

    POST /predict  {"inputs": [...], "beam": 4, "top_k": 3}  -> {"predictions": [record, ...]}
    GET  /health   -> {"status": "ok"}
    GET  /info     -> task, input kind, head, labels, model summary, limits

An input is a string (a sentence; a node id for graph runs), {"text": str}, {"tokens": [str]},
{"base64": str} (audio/image bytes) or {"path": str} (audio/image file; only below --allow-paths).
Each request is checked and encoded in the request's own coroutine (a bad one gets a 4xx and never
reaches the model); encoded inputs of all requests then queue for one model thread, which takes up
to `max_batch` of them (1 = batching off): all that queued while the model was busy, and, while
other requests are still being read and encoded, it waits up to `max_wait_ms` for them to join. A
lone request never waits.
"""

# No `from __future__ import annotations`: FastAPI reads the route annotations (Request, imported late).
import asyncio
import base64
import binascii
import json
import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from attntrain.errors import UserError
from attntrain.predictor import EMPTY, Predictor

log = logging.getLogger("attntrain.serve")

FILE_SUFFIX = {"audio": ".wav", "image": ".png"}  # base64 inputs are written to a temporary file of this kind


@dataclass
class ServeSettings:
    max_batch: int = 32  # inputs per model call; 1 turns dynamic batching off
    max_wait_ms: float = 5.0  # how long the first queued input waits for others to join its batch
    max_tokens: int = 4096  # padded positions per model call (a batch is cut into groups of similar length)
    max_body_bytes: int = 1 << 20  # larger request bodies are refused (413) before they are read whole
    max_inputs: int = 256  # inputs per request
    max_input_chars: int = 20_000  # characters of one text input (or tokens joined)
    allow_paths: Optional[Path] = None  # {"path": ...} inputs are read only below this folder; None = refused


class RequestError(Exception):
    """A client's mistake: answered with `status` and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Job:
    example: dict
    item: dict
    beam: Optional[int]
    top_k: Optional[int]
    future: asyncio.Future = field(repr=False)
    queued: float = 0.0  # event-loop time it joined the queue


class Batcher:
    """Collects encoded inputs from concurrent requests into batches for one model thread."""

    def __init__(self, predictor: Predictor, settings: ServeSettings):
        self.predictor, self.settings = predictor, settings
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.model_thread = ThreadPoolExecutor(1, thread_name_prefix="attntrain-model")
        self.batches = self.inputs = 0  # counters for /info (how much batching happened)
        self.arriving = 0  # requests being read and encoded: inputs that will queue soon

    async def predict(self, pairs: list[tuple[dict, Optional[dict]]], beam: Optional[int],
                      top_k: Optional[int]) -> list[dict]:
        loop = asyncio.get_running_loop()
        futures = []
        for example, item in pairs:
            future = loop.create_future()
            if item is EMPTY:
                future.set_result({})
            else:
                self.queue.put_nowait(Job(example, item, beam, top_k, future, loop.time()))
            futures.append(future)
        return list(await asyncio.gather(*futures))

    async def run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            # Counted from when the first input queued: inputs that waited while the model was busy go at once.
            deadline = jobs[0].queued + self.settings.max_wait_ms / 1000
            while len(jobs) < self.settings.max_batch:
                try:
                    jobs.append(self.queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                if not self.arriving:  # nobody else on the way: waiting would only add latency
                    break
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    jobs.append(await asyncio.wait_for(self.queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            for beam in dict.fromkeys(job.beam for job in jobs):  # model calls per search setting
                same_search = [job for job in jobs if job.beam == beam]
                # A task whose predict batch is 1 (a graph: the batch is the whole graph) gets one input per call.
                most = 1 if self.predictor.task.predict_batch_size == 1 else self.settings.max_batch
                for group in length_groups(same_search, self.settings.max_tokens, max_size=most):
                    await self._run(loop, group, beam)

    async def _run(self, loop, jobs: list[Job], beam: Optional[int]) -> None:
        try:
            results = await loop.run_in_executor(self.model_thread, lambda: self.predictor.run(
                [job.item for job in jobs], beam=beam))
            self.batches += 1
            self.inputs += len(jobs)
            for job, result in zip(jobs, results):
                if not job.future.done():
                    job.future.set_result(self.predictor.record(job.example, result, top_k=job.top_k))
        except Exception as e:  # the model failed on this batch: its requests get a 500, the server goes on
            log.error("prediction failed: %s: %s", type(e).__name__, e)
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(e)


def length_groups(jobs: list[Job], max_tokens: int, *, max_size: int = 1 << 30, slack: float = 1.3
                  ) -> list[list[Job]]:
    """Jobs sorted by length, cut into groups of similar length (longest <= slack x shortest + 2) and at
    most `max_tokens` padded positions. On CPU a batch pays for its padding: mixed lengths cost more
    than they save (measured: 32 random test sentences per call ran at 0.6x the rate of single ones,
    length-sorted groups of 8 at 1.4-1.6x)."""
    groups: list[list[Job]] = []
    for job in sorted(jobs, key=lambda j: j.item["length"]):
        length = job.item["length"]
        group = groups[-1] if groups else None
        if (group is None or len(group) >= max_size or length > slack * group[0].item["length"] + 2
                or (len(group) + 1) * length > max_tokens):
            groups.append([job])
        else:
            group.append(job)
    return groups


# ---- request checking ------------------------------------------------------------------------

def parse_body(raw: bytes) -> dict:
    """Bytes -> a JSON object; malformed UTF-8 or JSON, or another JSON type, is a 400."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(400, f"body is not valid UTF-8 (byte {e.start})")
    try:
        body = json.loads(text)
    except json.JSONDecodeError as e:
        raise RequestError(400, f"body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}")
    except RecursionError:
        raise RequestError(400, "body is nested too deeply to be a request")
    if not isinstance(body, dict):
        raise RequestError(400, f"body must be a JSON object, not {type(body).__name__}")
    return body


def check_request(body: dict, predictor: Predictor, settings: ServeSettings) -> tuple[list, Optional[int], Optional[int]]:
    """-> (inputs, beam, top_k); an unknown field, a wrong type or a count out of range is a 422 / 413."""
    unknown = set(body) - {"inputs", "input", "beam", "top_k"}
    if unknown:
        raise RequestError(422, f"unknown field(s) {', '.join(sorted(unknown))}; "
                                "valid: inputs (or input), beam, top_k")
    if ("inputs" in body) == ("input" in body):
        raise RequestError(422, "give exactly one of 'inputs' (a list) or 'input' (one input)")
    inputs = body["inputs"] if "inputs" in body else [body["input"]]
    if not isinstance(inputs, list):
        raise RequestError(422, f"'inputs' must be a list, not {type(inputs).__name__}")
    if not inputs:
        raise RequestError(422, "'inputs' is empty")
    if len(inputs) > settings.max_inputs:
        raise RequestError(413, f"{len(inputs)} inputs in one request; the limit is {settings.max_inputs}")
    beam, top_k = body.get("beam"), body.get("top_k")
    for name, value, high in (("beam", beam, 64), ("top_k", top_k, 1000)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high):
            raise RequestError(422, f"'{name}' must be an integer from 1 to {high}")
    if beam is not None and not predictor.seq2seq:
        raise RequestError(422, f"'beam': only seq2seq runs search; this run's head is "
                                f"'{predictor.cfg.model.head.kind}'")
    return inputs, beam, top_k


def to_example(value: Any, index: int, predictor: Predictor, settings: ServeSettings) -> dict:
    """One input of a request -> a raw example of the run's task (files are read only where allowed)."""
    where = f"inputs[{index}]"
    kind = predictor.task.input
    if isinstance(value, str):
        value = {"text": value}
    if not isinstance(value, dict) or len(value) != 1:
        raise RequestError(422, f"{where}: expected a string or an object with one of text, tokens, base64, path")
    (key, payload), = value.items()
    if key == "text":
        if not isinstance(payload, str):
            raise RequestError(422, f"{where}.text must be a string")
        if kind in FILE_SUFFIX:
            raise RequestError(422, f"{where}: this run reads {kind}; send it as base64 (or path, if allowed)")
        _check_size(len(payload), where, settings)
        return predictor.parse([payload])[0]
    if key == "tokens":
        if not isinstance(payload, list) or not all(isinstance(t, str) for t in payload):
            raise RequestError(422, f"{where}.tokens must be a list of strings")
        _check_size(sum(len(t) + 1 for t in payload), where, settings)
        return predictor.from_tokens(payload)
    if key in ("base64", "path"):
        if kind not in FILE_SUFFIX:
            raise RequestError(422, f"{where}.{key}: only audio and image runs take files; this run reads {kind}")
        if not isinstance(payload, str):
            raise RequestError(422, f"{where}.{key} must be a string")
        return {"file": payload, "key": key}  # read in `encode_input`, which owns the temporary file
    raise RequestError(422, f"{where}: unknown input field '{key}'; use text, tokens, base64 or path")


def _check_size(chars: int, where: str, settings: ServeSettings) -> None:
    if chars > settings.max_input_chars:
        raise RequestError(413, f"{where}: {chars} characters; the limit is {settings.max_input_chars}")


def allowed_path(text: str, root: Optional[Path], where: str) -> Path:
    """A client-named file, only if it lies (symlinks resolved) below `root`."""
    if root is None:
        raise RequestError(403, f"{where}.path: reading server files is off (start the server with --allow-paths DIR)")
    base = root.resolve()
    path = (base / text).resolve()
    if not path.is_relative_to(base):
        raise RequestError(403, f"{where}.path: outside the allowed folder")
    if not path.is_file():
        raise RequestError(404, f"{where}.path: no such file below the allowed folder")
    return path


def encode_input(example: dict, index: int, predictor: Predictor, settings: ServeSettings
                 ) -> tuple[dict, Optional[dict]]:
    """-> (example, encoded item or EMPTY); unreadable audio/images and other task errors are a 422."""
    where = f"inputs[{index}]"
    try:
        if "file" not in example:
            return example, predictor.encode(example)
        if example["key"] == "path":
            path = allowed_path(example["file"], settings.allow_paths, where)
            parsed = predictor.parse([str(path)])[0]
            return parsed, predictor.encode(parsed)
        try:
            data = base64.b64decode(example["file"], validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(422, f"{where}.base64: not valid base64")
        if not data:
            raise RequestError(422, f"{where}.base64: empty")
        fd, name = tempfile.mkstemp(suffix=FILE_SUFFIX[predictor.task.input], prefix="attntrain-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            parsed = predictor.parse([name])[0]
            item = predictor.encode(parsed)
        finally:
            os.unlink(name)
        return {**parsed, "path" if "path" in parsed else "source": f"{where}"}, item
    except UserError as e:
        raise RequestError(422, f"{where}: {str(e).replace(tempfile.gettempdir(), '<upload>')}")


# ---- the application ---------------------------------------------------------------------------

def create_app(predictor: Predictor, settings: ServeSettings):
    """The FastAPI application (imported here: the `serve` extra is optional)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    batcher = Batcher(predictor, settings)

    @asynccontextmanager
    async def lifespan(app):
        worker = asyncio.create_task(batcher.run_forever())
        yield
        worker.cancel()
        batcher.model_thread.shutdown(wait=False)

    app = FastAPI(title="attntrain", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher = batcher

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/info")
    async def info():
        return {**predictor.info(),
                "limits": {"max_batch": settings.max_batch, "max_wait_ms": settings.max_wait_ms,
                           "max_body_bytes": settings.max_body_bytes, "max_inputs": settings.max_inputs,
                           "max_input_chars": settings.max_input_chars, "paths": settings.allow_paths is not None},
                "served": {"batches": batcher.batches, "inputs": batcher.inputs}}

    async def answer(request) -> list[dict]:
        batcher.arriving += 1
        try:
            body = parse_body(await read_limited(request, settings.max_body_bytes))
            inputs, beam, top_k = check_request(body, predictor, settings)
            examples = [to_example(value, i, predictor, settings) for i, value in enumerate(inputs)]
            def encode_all():
                return [encode_input(ex, i, predictor, settings) for i, ex in enumerate(examples)]

            # Reading audio / images goes to a thread; text is encoded in microseconds, here.
            pairs = await asyncio.to_thread(encode_all) if any("file" in ex for ex in examples) else encode_all()
        finally:
            batcher.arriving -= 1
        return await batcher.predict(pairs, beam, top_k)

    @app.post("/predict")
    async def predict(request: Request):  # the body is read by hand: size limit first, then UTF-8, JSON
        # Every failure is answered here, so none reaches Starlette's error middleware (which would
        # log a traceback and drop the keep-alive connection).
        try:
            return {"predictions": await answer(request)}
        except RequestError as e:
            return JSONResponse({"error": e.message}, status_code=e.status)
        except UserError as e:  # a task's own check, e.g. a graph node id not in the graph
            return JSONResponse({"error": str(e)}, status_code=422)
        except Exception as e:  # a bug or a model failure: a 500 with the error's type, never a traceback
            log.error("internal error on /predict: %s: %s", type(e).__name__, e)
            return JSONResponse({"error": f"internal error ({type(e).__name__})"}, status_code=500)

    return app


async def read_limited(request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it (or its declared length) passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"body of {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"body over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def check_port(host: str, port: int) -> None:
    """A port that cannot be bound (in use, privileged, a bad host) is a UserError naming it."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise UserError(f"--host {host}: cannot resolve it ({e.strerror})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind(address)
        except OSError as e:
            raise UserError(f"--port {port}: cannot listen on {host}:{port} ({e.strerror}); another program may "
                            "hold it: pick another with --port") from None


def serve(run_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000, settings: Optional[ServeSettings] = None,
          checkpoint: str = "best", device: str | None = None, threads: int | None = None) -> None:
    """Load the run once and answer requests until Ctrl-C."""
    try:
        import uvicorn
    except ImportError:
        raise UserError("serve needs the optional dependencies: pip install 'attntrain[serve]'")
    import torch

    if threads:
        torch.set_num_threads(threads)
    settings = settings or ServeSettings()
    if settings.allow_paths is not None and not settings.allow_paths.is_dir():
        raise UserError(f"--allow-paths: {settings.allow_paths} is not a folder")
    check_port(host, port)  # before the model loads, and never "serving on" a port another program holds
    predictor = Predictor.from_run(run_dir, checkpoint=checkpoint, device=device)
    app = create_app(predictor, settings)
    print(f"serving {run_dir} on http://{host}:{port} (POST /predict, GET /health, GET /info)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
