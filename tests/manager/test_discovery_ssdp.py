"""The Manager's SSDP side, by the bytes: what it accepts as a search, what it answers, what it advertises."""

from __future__ import annotations

import ipaddress
import logging
import pathlib

import pytest

from flamenco_manager.config import ConfigError, load_config
from flamenco_manager.discovery import Announcers, ssdp
from flamenco_manager.discovery.netif import InterfaceAddress

UUID = "aa80bc5f-d0af-46b8-8630-23bd7e80ec4d"

#: A stock Flamenco v3 worker's search: its library writes the four headers in map order, so any order.
STOCK_SEARCHES = [
    b"M-SEARCH * HTTP/1.1\r\n"
    b'HOST: 239.255.255.250:1900\r\nST: urn:flamenco:manager:0\r\nMAN: "ssdp:discover"\r\nMX: 3\r\n\r\n',
    b"M-SEARCH * HTTP/1.1\r\n"
    b'MX: 3\r\nMAN: "ssdp:discover"\r\nST: urn:flamenco:manager:0\r\nHOST: 239.255.255.250:1900\r\n\r\n',
]


@pytest.mark.parametrize("data", STOCK_SEARCHES)
def test_a_stock_search_is_recognised(data: bytes) -> None:
    assert ssdp.parse_search(data) == ("urn:flamenco:manager:0", 3.0)


@pytest.mark.parametrize(
    "data",
    [
        b"M-SEARCH * HTTP/1.1\r\nST: urn:flamenco:manager:0\r\nMX: 3\r\n\r\n",  # no MAN
        b'M-SEARCH * HTTP/1.1\r\nMAN: "ssdp:discover"\r\nMX: 3\r\n\r\n',  # no ST
        b"HTTP/1.1 200 OK\r\nST: urn:flamenco:manager:0\r\n\r\n",
        b"NOTIFY * HTTP/1.1\r\nNT: urn:flamenco:manager:0\r\nNTS: ssdp:alive\r\n\r\n",
        b"\xff\xfe",
        b"",
    ],
)
def test_other_datagrams_are_not_searches(data: bytes) -> None:
    assert ssdp.parse_search(data) is None


def _headers(message: bytes) -> tuple[str, dict[str, str]]:
    text = message.decode()
    assert text.endswith("\r\n\r\n")
    lines = text.split("\r\n")[:-2]
    return lines[0], {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}


def test_the_answer_is_what_a_stock_worker_keeps() -> None:
    first, headers = _headers(ssdp.search_answer("http://10.0.0.2:8080/upnp/description.xml"))
    assert first == "HTTP/1.1 200 OK"
    assert headers["ST"] == "urn:flamenco:manager:0"
    # a stock worker splits USN on ':' and keeps the answer when part 1 is Flamenco's device UUID
    assert headers["USN"].split(":")[:2] == ["uuid", UUID]
    assert headers["USN"] == f"uuid:{UUID}::urn:flamenco:manager:0"
    assert headers["LOCATION"] == "http://10.0.0.2:8080/upnp/description.xml"
    assert headers["CACHE-CONTROL"] == f"max-age={ssdp.MAX_AGE}"
    assert headers["EXT"] == "" and headers["DATE"].endswith("GMT") and "UPnP/1.0" in headers["SERVER"]


def test_alive_and_byebye() -> None:
    first, alive = _headers(ssdp.notify("http://10.0.0.2:8080/upnp/description.xml", "239.255.255.250:1900"))
    assert first == "NOTIFY * HTTP/1.1"
    assert (alive["NTS"], alive["NT"], alive["HOST"]) == (
        "ssdp:alive",
        "urn:flamenco:manager:0",
        "239.255.255.250:1900",
    )
    assert alive["LOCATION"].endswith("/upnp/description.xml") and "max-age" in alive["CACHE-CONTROL"]
    _, bye = _headers(ssdp.notify(None, "239.255.255.250:1900"))
    assert bye["NTS"] == "ssdp:byebye" and "LOCATION" not in bye and bye["USN"] == alive["USN"]


ADDRESSES = [
    InterfaceAddress("eth0", 2, ipaddress.ip_address("192.168.1.5")),
    InterfaceAddress("eth0", 2, ipaddress.ip_address("fd00::5")),
    InterfaceAddress("eth0", 2, ipaddress.ip_address("fe80::5")),
]


@pytest.mark.parametrize(
    ("listen_host", "expected"),
    [
        ("", ["http://192.168.1.5:8080/", "http://[fd00::5]:8080/", "http://[fe80::5%25eth0]:8080/"]),
        ("0.0.0.0", ["http://192.168.1.5:8080/"]),
        ("::", ["http://192.168.1.5:8080/", "http://[fd00::5]:8080/", "http://[fe80::5%25eth0]:8080/"]),
        ("192.168.1.5", ["http://192.168.1.5:8080/"]),
        ("[fd00::5]", ["http://[fd00::5]:8080/"]),
        ("render-mgr", ["http://render-mgr:8080/"]),
        ("127.0.0.1", []),
    ],
)
def test_advertised_urls(listen_host: str, expected: list[str]) -> None:
    assert ssdp.advertised_urls(listen_host, 8080, ADDRESSES) == expected


async def test_a_loopback_manager_does_not_announce(caplog: pytest.LogCaptureFixture) -> None:
    announcers = Announcers("127.0.0.1", 8080)
    with caplog.at_level(logging.INFO):
        await announcers.start()
    try:
        assert not announcers.ssdp.running
        assert "discovery=off" in caplog.text
    finally:
        await announcers.close()


def _config(tmp_path: pathlib.Path, text: str) -> pathlib.Path:
    path = tmp_path / "flamenco-manager.yaml"
    path.write_text("_meta: {version: 3}\n" + text)
    return path


def test_autodiscoverable_is_flamencos_key_default_true(tmp_path: pathlib.Path) -> None:
    assert load_config(_config(tmp_path, ""), explicit=True).autodiscoverable is True
    assert (
        load_config(_config(tmp_path, "autodiscoverable: false\n"), explicit=True).autodiscoverable is False
    )
    assert load_config(_config(tmp_path, "autodiscoverable: true\n"), explicit=True).autodiscoverable is True


def test_autodiscoverable_must_be_a_boolean(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, "manager_name: x\nautodiscoverable: sometimes\n"), explicit=True)
    text = str(info.value)
    assert "autodiscoverable" in text and ":3" in text and "true or false" in text
