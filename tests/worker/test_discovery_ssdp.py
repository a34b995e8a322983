"""The worker's SSDP side, by the bytes: Flamenco's search, a stock Flamenco Manager's answers."""

from __future__ import annotations

import pytest

from flamenco_worker.discovery import ssdp

UUID = "aa80bc5f-d0af-46b8-8630-23bd7e80ec4d"


def stock_answer(location: str, *, usn_uuid: str = UUID, st: str = "urn:flamenco:manager:0") -> bytes:
    """An answer shaped as a stock Flamenco v3 Manager sends it (its SSDP library writes the headers in
    map order, so any order; `EXT` has an empty value; the date is Go's RFC 1123 form)."""
    return (
        "HTTP/1.1 200 OK\r\n"
        f"LOCATION: {location}\r\n"
        "CACHE-CONTROL: max-age=3600\r\n"
        "DATE: Mon, 30 Nov 2026 15:00:00 UTC\r\n"
        "SERVER: linux/0.0 UPnP/1.0 gossdp/0.1\r\n"
        "EXT: \r\n"
        f"ST: {st}\r\n"
        f"USN: uuid:{usn_uuid}::{st}\r\n"
        "\r\n"
    ).encode()


def test_a_stock_managers_answer_gives_its_base_url() -> None:
    answer = stock_answer("http://192.168.3.4:8080/upnp/description.xml")
    assert ssdp.parse_answer(answer) == ["http://192.168.3.4:8080/"]


def test_ipv6_link_local_zone_is_unescaped_for_the_http_client() -> None:
    answer = stock_answer("http://[fe80::1%25eth0]:8080/upnp/description.xml")
    assert ssdp.parse_answer(answer) == ["http://[fe80::1%eth0]:8080/"]


def test_several_urls_in_one_location() -> None:
    answer = stock_answer(
        "http://10.0.0.2:8080/upnp/description.xml;http://[fd00::2]:8080/upnp/description.xml"
    )
    assert ssdp.parse_answer(answer) == ["http://10.0.0.2:8080/", "http://[fd00::2]:8080/"]


@pytest.mark.parametrize(
    "data",
    [
        stock_answer("http://10.0.0.2:8080/", usn_uuid="00000000-0000-0000-0000-000000000000"),
        stock_answer("http://10.0.0.2:8080/", st="urn:schemas-upnp-org:device:MediaServer:1"),
        stock_answer("ftp://10.0.0.2/"),
        stock_answer("http://user:pw@10.0.0.2:8080/"),
        stock_answer("http://10.0.0.2:99999/"),
        b"NOTIFY * HTTP/1.1\r\nNT: urn:flamenco:manager:0\r\nNTS: ssdp:byebye\r\nUSN: uuid:"
        + UUID.encode()
        + b"::x\r\n\r\n",
        b'M-SEARCH * HTTP/1.1\r\nST: urn:flamenco:manager:0\r\nMAN: "ssdp:discover"\r\nMX: 3\r\n\r\n',
        b"\xff\xfe garbage",
        b"",
    ],
    ids=[
        "other-device",
        "other-type",
        "not-http",
        "credentials",
        "bad-port",
        "byebye",
        "a-search",
        "binary",
        "empty",
    ],
)
def test_anything_else_yields_nothing(data: bytes) -> None:
    assert ssdp.parse_answer(data) == []


def test_an_alive_announcement_counts() -> None:
    notify = (
        "NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nNT: urn:flamenco:manager:0\r\nNTS: ssdp:alive\r\n"
        f"USN: uuid:{UUID}::urn:flamenco:manager:0\r\nLOCATION: http://10.1.2.3:8080/upnp/description.xml\r\n\r\n"
    ).encode()
    assert ssdp.parse_answer(notify) == ["http://10.1.2.3:8080/"]


def test_our_search_is_flamencos() -> None:
    lines = ssdp.search_message().decode().split("\r\n")
    assert lines[0] == "M-SEARCH * HTTP/1.1"
    assert lines[-2:] == ["", ""]
    assert sorted(lines[1:-2]) == sorted(
        ["HOST: 239.255.255.250:1900", "ST: urn:flamenco:manager:0", 'MAN: "ssdp:discover"', "MX: 3"]
    )
