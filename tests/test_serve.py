"""The HTTP server on a free 127.0.0.1 port: answers for tagging, sequence-label, translation and image
runs equal `predict`'s, dynamic batching gives the unbatched answers, and every bad request is a 4xx."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import torch

from attntrain import runs
from attntrain.predictor import Predictor
from attntrain.serve import RequestError, ServeSettings, allowed_path, create_app
from tests.conftest import shared_data

SENTENCES = ["The quick brown fox jumps over the lazy dog .", "I loved this movie !", "",
             "Nothing works , and the service was slow and rude .", "ok"]


@contextmanager
def server(predictor: Predictor, **settings):
    """uvicorn in a thread on a free port; yields an httpx client bound to it."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    instance = uvicorn.Server(uvicorn.Config(create_app(predictor, ServeSettings(**settings)), log_level="warning"))
    thread = threading.Thread(target=instance.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if instance.started:
            break
        time.sleep(0.05)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield client
    finally:
        instance.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def predictors(tagging_run, sequence_run, translation_run):
    torch.set_num_threads(1)
    return {name: Predictor.from_run(path) for name, path in
            (("tagging", tagging_run), ("sequence", sequence_run), ("translation", translation_run))}


def jsonl(run_dir: Path, lines: list[str], **options) -> list[dict]:
    """`predict --format jsonl` records, without the echoed input."""
    out = [json.loads(line) for line in runs.predict(run_dir, lines, fmt="jsonl", **options)]
    assert [r.pop("input") for r in out] == lines
    return out


def assert_same(served: list[dict], expected: list[dict]) -> None:
    """Equal records; probabilities and scores to float tolerance (batch padding changes the last bits)."""
    assert len(served) == len(expected)
    for got, want in zip(served, expected):
        assert got.keys() == want.keys()
        for key, value in want.items():
            if isinstance(value, float):
                assert got[key] == pytest.approx(value, abs=1e-5)
            elif key == "probabilities":
                assert got[key] == pytest.approx(value, abs=1e-5)
            elif key == "top_k":
                assert [x["label"] for x in got[key]] == [x["label"] for x in value]
            else:
                assert got[key] == value


def test_tagging_run_answers_like_predict(predictors, tagging_run):
    with server(predictors["tagging"]) as client:
        assert client.get("/health").json() == {"status": "ok"}
        info = client.get("/info").json()
        assert info["task"] == "ud_pos" and info["head"] == "tagging" and "NOUN" in info["labels"]
        answer = client.post("/predict", json={"inputs": SENTENCES}).json()["predictions"]
        one = client.post("/predict", json={"input": {"tokens": ["The", "dog", "barks", "."]}}).json()["predictions"]
    assert_same(answer, jsonl(tagging_run, SENTENCES))
    assert answer[2] == {}  # empty input, empty answer
    assert answer[0]["tokens"][:2] == ["The", "quick"] and len(answer[0]["tags"]) == len(answer[0]["tokens"])
    assert set(answer[0]["tags"]) <= set(info["labels"])
    assert one[0]["tokens"] == ["The", "dog", "barks", "."] and len(one[0]["tags"]) == 4
    text = list(runs.predict(tagging_run, SENTENCES[:1]))[0]
    assert text == " ".join(f"{w}/{t}" for w, t in zip(answer[0]["tokens"], answer[0]["tags"]))


def test_sequence_run_answers_like_predict(predictors, sequence_run):
    with server(predictors["sequence"]) as client:
        answer = client.post("/predict", json={"inputs": SENTENCES, "top_k": 1}).json()["predictions"]
    assert_same(answer, jsonl(sequence_run, SENTENCES, top_k=1))
    first = answer[0]
    assert set(first["probabilities"]) == {"negative", "positive"}
    assert sum(first["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    assert first["probability"] == max(first["probabilities"].values())
    assert first["top_k"] == [{"label": first["label"], "probability": first["probability"]}]


def test_translation_run_answers_like_predict_with_beam_settings(predictors, translation_run):
    sources = ["Ein Mann fährt Fahrrad .", "Zwei Hunde spielen im Schnee .", ""]
    with server(predictors["translation"]) as client:
        default = client.post("/predict", json={"inputs": sources}).json()["predictions"]
        greedy = client.post("/predict", json={"inputs": sources, "beam": 1}).json()["predictions"]
        info = client.get("/info").json()
    assert info["head"] == "seq2seq" and info["search"]["beam_size"] == 4
    assert [r["translation"] for r in default[:2]] == list(runs.predict(translation_run, sources[:2]))
    assert [r["translation"] for r in greedy[:2]] == list(runs.predict(translation_run, sources[:2], beam=1))
    assert_same(greedy, jsonl(translation_run, sources, beam=1))
    assert all(r["score"] < 0 for r in default[:2]) and default[2] == {}


def test_dynamic_batching_gives_the_unbatched_answers(predictors):
    inputs = [f"{s} {i}" for i in range(24) for s in SENTENCES[:2]][:40]

    def ask_concurrently(client) -> list[dict]:
        with ThreadPoolExecutor(16) as pool:
            return list(pool.map(lambda text: client.post("/predict", json={"input": text}).json()["predictions"][0],
                                 inputs))

    for kind in ("tagging", "sequence"):
        with server(predictors[kind], max_batch=1) as client:
            alone = ask_concurrently(client)
            assert client.get("/info").json()["served"] == {"batches": len(inputs), "inputs": len(inputs)}
        with server(predictors[kind], max_batch=16, max_wait_ms=50) as client:
            together = ask_concurrently(client)
            served = client.get("/info").json()["served"]
        assert served["inputs"] == len(inputs) and served["batches"] < len(inputs)  # requests did share batches
        assert_same(together, alone)


BAD_REQUESTS = [
    (b'{"inputs": ["ok"', 400, "not valid JSON"),
    (b'{"inputs": ["caf\xe9"]}', 400, "not valid UTF-8"),
    (b'["a list"]', 400, "must be a JSON object"),
    (b'{"inputs": []}', 422, "is empty"),
    (b'{"inputs": "one string"}', 422, "must be a list"),
    (b'{"inputs": [42]}', 422, "expected a string or an object"),
    (b'{"inputs": [{"tokens": [1, 2]}]}', 422, "list of strings"),
    (b'{"inputs": [{"words": "x"}]}', 422, "unknown input field 'words'"),
    (b'{"inputs": ["a"], "inptus": 1}', 422, "unknown field(s) inptus"),
    (b'{"input": "a", "inputs": ["b"]}', 422, "exactly one of"),
    (b'{"inputs": ["a"], "beam": 3}', 422, "only seq2seq runs search"),
    (b'{"inputs": ["a"], "top_k": 0}', 422, "'top_k' must be an integer"),
    (b'{"inputs": [{"path": "/etc/passwd"}]}', 422, "only audio and image runs take files"),
    (b'{"inputs": [{"base64": "aGVsbG8="}]}', 422, "only audio and image runs take files"),
    (json.dumps({"inputs": ["word " * 30]}).encode(), 413, "characters; the limit is 100"),
    (json.dumps({"inputs": ["a"] * 9}).encode(), 413, "9 inputs in one request; the limit is 8"),
    (json.dumps({"inputs": ["a" * 50] * 5}).encode(), 413, "the limit is 200"),
]


def test_every_bad_request_is_a_4xx_and_the_server_keeps_serving(predictors):
    with server(predictors["sequence"], max_body_bytes=200, max_inputs=8, max_input_chars=100) as client:
        for body, status, message in BAD_REQUESTS:
            response = client.post("/predict", content=body, headers={"content-type": "application/json"})
            assert response.status_code == status, (body, response.text)
            assert message in response.json()["error"], (body, response.text)
        # a body over the limit without a Content-Length header (chunked) is cut off while it streams
        chunked = client.post("/predict", content=iter([b'{"inputs": ["', b"a" * 300, b'"]}']))
        assert chunked.status_code == 413 and "over the limit" in chunked.json()["error"]
        assert client.get("/nowhere").status_code == 404
        assert client.get("/predict").status_code == 405
        assert client.get("/health").json() == {"status": "ok"}
        assert len(client.post("/predict", json={"inputs": ["still fine"]}).json()["predictions"]) == 1
        assert client.get("/info").json()["served"]["inputs"] == 1  # no bad request reached the model


def test_an_error_in_the_model_thread_is_a_500_without_traceback(predictors, monkeypatch):
    predictor = predictors["sequence"]
    with server(predictor) as client:
        monkeypatch.setattr(predictor, "run", lambda items, beam=None: 1 / 0)
        failed = client.post("/predict", json={"inputs": ["boom"]})
        monkeypatch.undo()
        assert failed.status_code == 500 and failed.json() == {"error": "internal error (ZeroDivisionError)"}
        assert "Traceback" not in failed.text
        assert client.post("/predict", json={"inputs": ["fine again"]}).status_code == 200


def png_bytes(index: int) -> bytes:
    from PIL import Image

    from attntrain.data.inputs.images import read_idx

    images = read_idx(shared_data() / "mnist" / "t10k-images-idx3-ubyte.gz")
    buffer = io.BytesIO()
    Image.fromarray(images[index].numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


def test_image_inputs_as_base64_or_allowed_path_only(image_run, tmp_path):
    allowed = tmp_path / "uploads"
    allowed.mkdir()
    (allowed / "seven.png").write_bytes(png_bytes(0))
    (tmp_path / "secret.png").write_bytes(png_bytes(1))
    os.symlink(tmp_path / "secret.png", allowed / "link.png")
    expected = jsonl(image_run, [str(allowed / "seven.png")])[0]
    predictor = Predictor.from_run(image_run)
    encoded = base64.b64encode(png_bytes(0)).decode()
    with server(predictor) as client:  # paths off
        by_upload = client.post("/predict", json={"inputs": [{"base64": encoded}]}).json()["predictions"][0]
        off = client.post("/predict", json={"inputs": [{"path": str(allowed / "seven.png")}]})
        as_text = client.post("/predict", json={"inputs": ["/etc/hostname"]})
        garbage = client.post("/predict", json={"inputs": [{"base64": "not base64!"}]})
        not_image = client.post("/predict", json={"inputs": [{"base64": base64.b64encode(b"hello").decode()}]})
    assert_same([by_upload], [expected])
    assert off.status_code == 403 and "--allow-paths" in off.json()["error"]
    assert as_text.status_code == 422 and "send it as base64" in as_text.json()["error"]
    assert garbage.status_code == 422 and "not valid base64" in garbage.json()["error"]
    assert not_image.status_code == 422 and "not a readable image" in not_image.json()["error"]
    assert str(tmp_path) not in not_image.json()["error"]  # the server's temporary file name is not shown
    with server(predictor, allow_paths=allowed) as client:
        inside = client.post("/predict", json={"inputs": [{"path": "seven.png"}]}).json()["predictions"][0]
        statuses = {name: client.post("/predict", json={"inputs": [{"path": name}]}).status_code
                    for name in ("../secret.png", str(tmp_path / "secret.png"), "link.png", "missing.png")}
    assert_same([inside], [expected])
    assert statuses == {"../secret.png": 403, str(tmp_path / "secret.png"): 403, "link.png": 403, "missing.png": 404}


def test_allowed_path_resolves_symlinks_and_dot_dot(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.wav").write_bytes(b"x")
    assert allowed_path("x.wav", tmp_path / "a", "inputs[0]") == (tmp_path / "a" / "x.wav").resolve()
    for name in ("../a/../../etc/passwd", "/etc/passwd"):
        with pytest.raises(RequestError) as e:
            allowed_path(name, tmp_path / "a", "inputs[0]")
        assert e.value.status == 403
    with pytest.raises(RequestError) as e:
        allowed_path("x.wav", None, "inputs[0]")
    assert e.value.status == 403


def test_loading_a_run_for_prediction_never_unpickles(tagging_run, monkeypatch):
    """Weights come from safetensors and vocabularies from JSON: torch.load / pickle are never called."""
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling while loading a run")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    predictor = Predictor.from_run(tagging_run)
    assert predictor.records(predictor.parse(["A dog ."]))[0]["tokens"] == ["A", "dog", "."]


def test_length_groups_keep_similar_lengths_under_the_token_cap():
    from attntrain.serve import Job, length_groups

    jobs = [Job({}, {"length": n}, None, None, None) for n in (30, 3, 4, 28, 5, 100, 29, 31)]
    groups = [[job.item["length"] for job in group] for group in length_groups(jobs, max_tokens=90)]
    assert groups == [[3, 4, 5], [28, 29, 30], [31], [100]]  # 4 x 31 > 90 tokens; 100 > 1.3 x 28 + 2
    assert sorted(n for g in groups for n in g) == sorted(job.item["length"] for job in jobs)
    singles = length_groups(jobs, max_tokens=4096, max_size=1)  # e.g. a graph run: one graph per call
    assert [len(g) for g in singles] == [1] * len(jobs)
