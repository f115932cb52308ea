"""How a clip goes out to its voter: padded to its battle's one length, a byte range of it, and a body that says
when its last byte was handed to the server. Plain functions on bytes; no models, no requests.

Both clips of a battle leave the server with one byte length and one declared duration (the shorter one gets
silence appended, in the arena's one WAV format), so neither ``Content-Length`` nor the WAV header tells which
voice is which. A clip counts as delivered only once a response carrying all of its bytes has been handed on in
full, so a client that reads the headers, or asks for a slice, has not received it.
"""

from __future__ import annotations

import io
import re
import wave
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

CHUNK_BYTES = 64 * 1024
# One range, `bytes=a-b`, `bytes=a-` or `bytes=-n`: anchored and linear; longer headers are not looked at.
_RANGE = re.compile(r"bytes=(\d{0,15})-(\d{0,15})")
_RANGE_HEADER_MAX = 40


class RangeNotSatisfiable(Exception):
    """The requested range starts past the end of the clip (answered 416)."""


def wav_frames(data: bytes) -> int:
    """The number of frames a WAV file declares."""
    with wave.open(io.BytesIO(data)) as reader:
        return reader.getnframes()


def wav_padded(data: bytes, frames: int) -> bytes:
    """`data` (a PCM WAV file) rewritten with silence appended up to `frames` frames, in the same format.

    The file is written afresh by ``wave`` even when nothing is appended, so two clips of one format and one
    frame count come out with byte-identical headers and one length."""
    with wave.open(io.BytesIO(data)) as reader:
        params = reader.getparams()
        pcm = reader.readframes(params.nframes)
    missing = max(0, frames - params.nframes)
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(params.nchannels)
        writer.setsampwidth(params.sampwidth)
        writer.setframerate(params.framerate)
        writer.writeframes(pcm + b"\x00" * (missing * params.sampwidth * params.nchannels))
    return out.getvalue()


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (start, end exclusive) of a single-range ``Range`` header on a body of `size` bytes, or None for the
    whole body (no header, several ranges, or one this does not read: RFC 9110 lets a server send it all).
    Raises RangeNotSatisfiable for a range that starts at or past the end."""
    if not header or len(header) > _RANGE_HEADER_MAX:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # a suffix: the last n bytes
        length = int(last)
        if length == 0:
            raise RangeNotSatisfiable
        return max(0, size - length), size
    start = int(first)
    end = size if last == "" else min(size, int(last) + 1)
    if start >= size:
        raise RangeNotSatisfiable
    if end <= start:
        return None  # `bytes=5-2` is invalid: ignored, the whole body goes out
    return start, end


def chunks_then(data: bytes, done: Callable[[], None] | None) -> Iterator[bytes]:
    """`data` in chunks; `done` runs once the consumer has asked past the last chunk (a WSGI server has written it
    by then). A consumer that stops early (a closed connection) never runs it."""
    for offset in range(0, len(data), CHUNK_BYTES):
        yield data[offset:offset + CHUNK_BYTES]
    if done is not None:
        done()


async def achunks_then(data: bytes, done: Callable[[], Awaitable[None]] | None) -> AsyncIterator[bytes]:
    """The same for an ASGI server: Django sends each chunk before asking for the next, and cancels the
    iteration when the client disconnects, so `done` runs only after the last chunk was handed to the server."""
    for offset in range(0, len(data), CHUNK_BYTES):
        yield data[offset:offset + CHUNK_BYTES]
    if done is not None:
        await done()
