"""The one resource quantity parser: forms accepted, rounding up to what Docker
receives, minimums checked after rounding (never 0 = "no limit"), maximums, and
every kind of malformed input refused with a message naming the resource."""

from __future__ import annotations

import pytest

from common.quantities import (
    CPU,
    DISK,
    MEMORY,
    QuantityError,
    QuantityKind,
    parse_cpu_millis,
    parse_disk_bytes,
    parse_memory_bytes,
)

MI = 2**20


@pytest.mark.parametrize(
    ("value", "millis"),
    [
        ("100m", 100),
        ("0.5", 500),
        ("2", 2000),
        (1, 1000),
        (0.25, 250),
        ("1.5", 1500),
        (" 250m ", 250),
        ("250 m", 250),
        ("\t1\t", 1000),
        ("10m", 10),
        ("0.01", 10),
        ("10.1m", 11),  # rounded up to whole millicores
        ("0.0101", 11),
        ("1024", 1024 * 1000),
    ],
)
def test_cpu_forms(value: object, millis: int) -> None:
    assert parse_cpu_millis(value) == millis


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("128Mi", 128 * MI),
        ("1Gi", 2**30),
        ("1G", 10**9),
        ("6Mi", 6 * MI),
        ("6291456", 6 * MI),
        (6 * MI, 6 * MI),
        ("7M", 7 * 10**6),
        ("7000k", 7 * 10**6),
        ("7000K", 7 * 10**6),
        ("6144Ki", 6 * MI),
        ("1.5Gi", 3 * 2**29),
        ("0.001Ti", 1_099_511_628),  # 1099511627.776 rounded up
        ("1T", 10**12),
        (" 64 Mi ", 64 * MI),
        (float(2**30), 2**30),
        ("1024Ti", 2**50),
    ],
)
def test_memory_forms(value: object, size: int) -> None:
    assert parse_memory_bytes(value) == size


def test_disk_shares_the_byte_forms_with_its_own_minimum() -> None:
    assert parse_disk_bytes("10Gi") == 10 * 2**30
    assert parse_disk_bytes("16Mi") == 16 * MI
    with pytest.raises(QuantityError, match=r"disk .* minimum of 16Mi"):
        parse_disk_bytes("15Mi")


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        # Fractions and zero that would round to nothing, or below what Docker takes.
        (MEMORY, "0.5"),
        (MEMORY, 0.5),
        (MEMORY, "0"),
        (MEMORY, 0),
        (MEMORY, "0.0Mi"),
        (MEMORY, "1"),
        (MEMORY, "4Mi"),
        (MEMORY, "6291455"),
        (MEMORY, "5.99Mi"),
        (MEMORY, "0.000001Ti"),
        (CPU, "0"),
        (CPU, 0),
        (CPU, "0.5m"),
        (CPU, "9m"),
        (CPU, "0.009"),
        (CPU, 0.001),
        (CPU, 1e-9),
        (DISK, "1Mi"),
    ],
)
def test_quantities_below_the_minimum_after_rounding_are_refused(
    kind: QuantityKind, value: object
) -> None:
    with pytest.raises(QuantityError, match="less than the minimum"):
        kind.parse(value)


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (MEMORY, "1025Ti"),
        (MEMORY, "99999999999999999999999Ti"),
        (MEMORY, 2**51),
        (MEMORY, 10**400),
        (MEMORY, 1e300),
        (CPU, "1025"),
        (CPU, "99999999999"),
        (CPU, 10**30),
        (DISK, "2000Ti"),
    ],
)
def test_quantities_above_the_maximum_are_refused(kind: QuantityKind, value: object) -> None:
    with pytest.raises(QuantityError, match="more than the maximum"):
        kind.parse(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "abc",
        "-1",
        "-128Mi",
        "+128Mi",
        "1e3",
        "1E9",
        "1e-3",
        "1.5e2Mi",
        ".5",
        "5.",
        "1..5",
        "1,5",
        "128Mb",
        "128mi",
        "128 Mi B",
        "0x10",
        "１２８Mi",  # noqa: RUF001 - full-width digits
        "\u0661\u0662\u0668Mi",  # Arabic-Indic digits
        "128\u00a0Mi",  # no-break space
        "128Mi\n",
        "1" * 41,
        "inf",
        "NaN",
        float("nan"),
        float("inf"),
        -1,
        -0.5,
        True,
        None,
        [128],
        {"value": 1},
    ],
)
def test_malformed_quantities_are_refused_naming_the_resource(value: object) -> None:
    with pytest.raises(QuantityError, match=r"^memory .*(not a quantity|minimum)"):
        parse_memory_bytes(value)
    with pytest.raises(QuantityError, match=r"^cpu .*(not a quantity|minimum)"):
        parse_cpu_millis(value)


def test_cpu_takes_no_byte_units_and_memory_no_millicores() -> None:
    with pytest.raises(QuantityError, match="not a quantity"):
        parse_cpu_millis("1Gi")
    with pytest.raises(QuantityError, match="not a quantity"):
        parse_memory_bytes("128000000m")


def test_a_quantity_error_is_a_value_error() -> None:
    """Pydantic validators turn ValueError into a 400 naming the field."""
    assert issubclass(QuantityError, ValueError)
