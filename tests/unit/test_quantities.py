import pytest

from sdwatch.quantities import (
    format_duration,
    format_size,
    parse_duration,
    parse_percent,
    parse_size,
)


@pytest.mark.parametrize("text, seconds", [
    ("500ms", 0.5), ("5s", 5), ("2m", 120), ("1h", 3600), ("1d", 86400), ("1h30m", 5400),
    ("1.5s", 1.5), (3, 3.0), (0.25, 0.25), ("10", 10.0), (" 2 m ", 120),
])
def test_parse_duration_accepts(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "fast", "5 minutes", "-1s", "1s2", True, -3, [1], "m5"])
def test_parse_duration_rejects_with_hint(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("text, size", [
    ("512", 512), ("64K", 65536), ("2M", 2 << 20), ("1.5G", 3 << 29), ("1GiB", 1 << 30),
    ("2gb", 2 << 30), (4096, 4096), ("1T", 1 << 40),
])
def test_parse_size_accepts(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "big", "2X", "-1", -1, True, 1.5, "1.2.3M"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_parse_percent():
    assert parse_percent("90%") == 90.0
    assert parse_percent(12.5) == 12.5
    with pytest.raises(ValueError):
        parse_percent("ninety")
    with pytest.raises(ValueError):
        parse_percent("-5%")


def test_format_duration_and_size():
    assert format_duration(0.25) == "250ms"
    assert format_duration(5) == "5s"
    assert format_duration(90061) == "1d 1h 1m"
    assert format_size(1536) == "1.5 KiB"
    assert format_size(100) == "100 B"
