"""What a finder yields: a base URL where a Manager may answer, and how it was learnt."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Candidate:
    url: str  # base URL, e.g. "http://192.168.1.5:8080/" or "http://[fe80::1%eth0]:8080/"
    source: str  # "ssdp", "dns-sd", "remembered", "configured"
