"""The one decoder for untrusted JSON: every hostile input is a ValueError."""

from __future__ import annotations

import pytest

from common.json_input import MAX_JSON_DEPTH, UntrustedJsonError, load_untrusted_json


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000,
        "{" * 100_000,
        '{"a":' * 5_000 + "1" + "}" * 5_000,
        "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1),
        "NaN",
        '{"x": -Infinity}',
        str(2**63),
        str(-(2**63) - 1),
        "9" * 10_000,
        b"\xff\xfe",
        "",
        "[1,]",
        "1e400",
        "[-1e999]",
    ],
)
def test_hostile_input_is_a_value_error(raw: bytes | str) -> None:
    with pytest.raises(UntrustedJsonError):
        load_untrusted_json(raw)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH, None),
        (str(2**63 - 1), 2**63 - 1),
        (str(-(2**63)), -(2**63)),
        ('{"a": [1, 2.5, "x", null, true]}', {"a": [1, 2.5, "x", None, True]}),
    ],
)
def test_ordinary_json_is_decoded(raw: str, value: object) -> None:
    decoded = load_untrusted_json(raw)
    if value is not None:
        assert decoded == value
