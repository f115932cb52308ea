"""A small OpenAI-compatible /v1/audio/speech server on loopback, for the speech provider and voice battle tests.

The first path segment of the base URL picks the behaviour (``base_url`` = http://127.0.0.1:PORT/<behaviour>/v1):
- `wav`: a 48 kHz stereo 24-bit WAV tone with a LIST/INFO chunk naming its encoder ("SecretTTS by Secretcorp");
- `silence`: a valid WAV that holds only silence;
- `html`: HTTP 200 with an HTML page, not audio;
- `hang`: sends headers, then nothing for 30 s;
- `fail`: HTTP 500 with a JSON error naming the server;
- `key`: the `wav` answer only with ``Authorization: Bearer sekrit``, else HTTP 401.
Every request is kept in ``requests`` (path, JSON body, Authorization header).
"""

from __future__ import annotations

import io
import json
import struct
import threading
import time
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

ENCODER_TAG = b"SecretTTS by Secretcorp"


def tone_wav(*, rate: int = 48000, channels: int = 2, width: int = 3, seconds: float = 1.5, amplitude: float = 0.3) -> bytes:
    """A 440 Hz tone as PCM WAV, with a LIST/INFO chunk (ISFT = the encoder tag) after the data chunk."""
    t = np.arange(int(rate * seconds)) / rate
    mono = amplitude * np.sin(2 * np.pi * 440 * t)
    ints = np.round(mono * ((1 << (8 * width - 1)) - 1)).astype(np.int64)
    frames = np.repeat(ints[:, None], channels, axis=1).reshape(-1)
    raw = b"".join(int(v).to_bytes(width, "little", signed=True) for v in frames) if width == 3 else (
        frames.astype("<i2").tobytes())
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(raw)
    data = out.getvalue()
    info = b"INFO" + b"ISFT" + struct.pack("<I", len(ENCODER_TAG) + 1) + ENCODER_TAG + b"\x00"
    if len(info) % 2:
        info += b"\x00"
    chunk = b"LIST" + struct.pack("<I", len(info)) + info
    body = data[12:] + chunk
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    requests: list[dict] = []

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        _Handler.requests.append({"path": self.path, "body": body, "authorization": self.headers.get("Authorization")})
        behaviour = self.path.split("/")[1]
        if not self.path.endswith("/v1/audio/speech"):
            self._answer(404, "application/json", b'{"error": "not found"}')
        elif behaviour == "wav":
            self._answer(200, "audio/wav", tone_wav())
        elif behaviour == "key":
            if self.headers.get("Authorization") != "Bearer sekrit":
                self._answer(401, "application/json", b'{"error": "bad key"}')
            else:
                self._answer(200, "audio/wav", tone_wav())
        elif behaviour == "silence":
            self._answer(200, "audio/wav", tone_wav(amplitude=0.0, channels=1, width=2, rate=22050))
        elif behaviour == "html":
            self._answer(200, "text/html", b"<html><body>SecretTTS by Secretcorp: welcome</body></html>")
        elif behaviour == "fail":
            self._answer(500, "application/json", b'{"error": {"message": "SecretTTS crashed"}}')
        elif behaviour == "hang":
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.end_headers()
            self.wfile.flush()
            time.sleep(30)
        else:
            self._answer(404, "application/json", b'{"error": "unknown behaviour"}')


class SpeechStandin:
    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="speech-standin", daemon=True)
        self.requests = _Handler.requests

    def base_url(self, behaviour: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{behaviour}/v1"

    def start(self) -> "SpeechStandin":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
