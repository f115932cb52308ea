"""How a clip goes out, as plain functions: the byte range a Range header asks for, the padding that gives both
clips of a battle one size, and a body that reports its delivery only once its last chunk was taken."""

from __future__ import annotations

import asyncio
import io
import wave

import pytest

from speech.delivery import (
    CHUNK_BYTES, RangeNotSatisfiable, achunks_then, byte_range, chunks_then, wav_frames, wav_padded,
)


def wav(frames: int, rate: int = 22050, value: int = 1000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(value.to_bytes(2, "little", signed=True) * frames)
    return out.getvalue()


@pytest.mark.parametrize("header,expected", [
    (None, None),
    ("", None),
    ("bytes=0-", (0, 1000)),
    ("bytes=0-99", (0, 100)),
    ("bytes=10-10", (10, 11)),
    ("bytes=900-5000", (900, 1000)),
    ("bytes=-100", (900, 1000)),
    ("bytes=-5000", (0, 1000)),
    ("bytes=5-2", None),  # invalid: the whole body
    ("bytes=0-1,5-9", None),  # several ranges: the whole body
    ("bytes=-", None),
    ("items=0-9", None),
    ("bytes=" + "1" * 60 + "-", None),  # longer than any real header: not looked at
])
def test_a_range_header_selects_one_slice_or_the_whole_body(header, expected):
    assert byte_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_a_range_past_the_end_is_not_satisfiable(header):
    with pytest.raises(RangeNotSatisfiable):
        byte_range(header, 1000)


def test_padding_appends_silence_and_gives_two_clips_one_size():
    short, long = wav(22050), wav(33075, value=-7)
    frames = max(wav_frames(short), wav_frames(long))
    padded_short, padded_long = wav_padded(short, frames), wav_padded(long, frames)
    assert len(padded_short) == len(padded_long)
    assert padded_short[:44] == padded_long[:44], "one header: one declared size and duration"
    assert wav_frames(padded_short) == wav_frames(padded_long) == 33075
    assert padded_short[44:len(short)] == short[44:], "the voice as it was"
    assert set(padded_short[len(short):]) == {0}, "silence after the voice"
    assert padded_long == long, "the longer clip goes out as it was stored"


def test_the_body_reports_delivery_only_after_its_last_chunk():
    data = bytes(range(256)) * (CHUNK_BYTES // 128)  # exactly two chunks
    delivered: list[bool] = []
    body = chunks_then(data, lambda: delivered.append(True))
    first = next(body)
    assert len(first) == CHUNK_BYTES and not delivered
    next(body)
    assert not delivered, "the last chunk taken, but not yet asked past"
    body.close()  # the connection closed before the server asked for more
    assert not delivered
    whole = chunks_then(data, lambda: delivered.append(True))
    assert b"".join(whole) == data and delivered == [True]


def test_the_async_body_reports_delivery_only_after_its_last_chunk():
    data = b"x" * (CHUNK_BYTES + 1)
    delivered: list[bool] = []

    async def done() -> None:
        delivered.append(True)

    async def read(limit: int | None) -> bytes:
        body = achunks_then(data, done)
        taken = []
        async for chunk in body:
            taken.append(chunk)
            if limit is not None and len(taken) == limit:
                break
        await body.aclose()
        return b"".join(taken)

    assert asyncio.run(read(2)) == data and not delivered, "every chunk taken, none asked past: a cut connection"
    assert asyncio.run(read(None)) == data and delivered == [True]
