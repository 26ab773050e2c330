"""A console line's way out, made fast without changing what the client gets: the
history's split of whole-line chunks (agent/console/history.py) and the hand-made
output frame (agent/ws/console.py)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from agent.console.history import ConsoleHistory, ConsoleLine
from agent.runtime.docker_attach import DockerAttachment
from agent.ws.console import frame, line_frame
from common.websocket_frames import text_frame

OUTPUT = (
    b"plain\n\nwindows\r\n\xc3\xbcn\xc3\xafc\xc3\xb6d\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x8e\xae\n"
    b"broken \xe2\x82\nlone \xff byte\ncut \xf0\x9f\n\x1b[1mbold\x1b[0m\ttab\n"
)


def _lines(history: ConsoleHistory) -> list[tuple[str, str]]:
    return [(line.stream, line.text) for line in history.tail()]


def test_whole_lines_in_one_chunk_are_what_they_are_byte_by_byte() -> None:
    at_once, by_byte = ConsoleHistory(100), ConsoleHistory(100)
    at_once.feed("stdout", OUTPUT, time_ms=1)
    for i in range(len(OUTPUT)):
        by_byte.feed("stdout", OUTPUT[i : i + 1], time_ms=1)
    assert _lines(at_once) == _lines(by_byte)
    assert len(_lines(at_once)) == 8
    assert _lines(at_once)[1:3] == [("stdout", ""), ("stdout", "windows")]


def test_a_whole_line_after_a_partial_one_completes_it() -> None:
    history = ConsoleHistory(10)
    history.feed("stdout", b"hel", time_ms=1)
    history.feed("stderr", b"err\n", time_ms=1)  # another stream's pending bytes stay apart
    history.feed("stdout", b"lo\nworld\n", time_ms=1)
    assert _lines(history) == [("stderr", "err"), ("stdout", "hello"), ("stdout", "world")]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain",
        'a "quoted" word',
        "back\\slash",
        "tab\tand\x01\x7f",
        "ünïcödé ✓ 🎮",
        "</script>",
        "a line longer than a 7-bit frame length " * 3,
    ],
)
@pytest.mark.parametrize(
    ("stream", "event"), [("stdout", "console output"), ("install", "install output")]
)
def test_the_line_frame_is_the_generic_frame(text: str, stream: str, event: str) -> None:
    made = line_frame(ConsoleLine(0, stream, text))
    assert made == frame(event, text)
    assert json.loads(made) == {"event": event, "args": [text]}


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (0, b"\x81\x00"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f" + (65536).to_bytes(8, "big")),
    ],
)
def test_text_frames_carry_their_length_as_rfc_6455_says(size: int, header: bytes) -> None:
    # FIN and the text opcode, no RSV1 (uncompressed), no mask (a server's frame).
    assert text_frame(b"x" * size) == header + b"x" * size


def _frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


def _appender(got: list[tuple[str, bytes]]) -> Callable[[str, bytes], None]:
    return lambda stream, data: got.append((stream, data))


def test_attach_reads_give_the_same_chunks_however_the_frames_arrive() -> None:
    frames = [_frame(1, b"one\n"), _frame(2, b"err\n"), _frame(1, b""), _frame(1, b"two\n")]
    wire = b"".join(frames)
    expected = [("stdout", b"one\n"), ("stderr", b"err\n"), ("stdout", b""), ("stdout", b"two\n")]
    for reads in (frames, [wire], [wire[i : i + 1] for i in range(len(wire))]):
        got: list[tuple[str, bytes]] = []
        attachment = DockerAttachment(None, _appender(got), lambda: None)
        for data in reads:
            attachment.data_received(data)
        assert got == expected


def test_a_consumer_that_fails_on_one_chunk_gets_the_rest_of_that_read() -> None:
    got: list[bytes] = []

    def consume(stream: str, data: bytes) -> None:
        if stream == "stderr":
            raise RuntimeError("a consumer's bug")
        got.append(data)

    attachment = DockerAttachment(None, consume, lambda: None)
    attachment.data_received(_frame(1, b"one\n") + _frame(2, b"err\n") + _frame(1, b"two\n"))
    assert got == [b"one\n", b"two\n"]
