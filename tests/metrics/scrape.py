"""Reading a metrics endpoint over HTTP in the tests: fetch, parse, look a sample up."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()


async def get(url: str) -> tuple[int, str]:
    """``GET url`` from a thread (the server answers on this test's event loop)."""
    return await asyncio.to_thread(_get, url)


async def get_json(url: str) -> tuple[int, Any]:
    """``GET url`` and its JSON body."""
    status, body = await get(url)
    return status, json.loads(body)


async def scrape(url: str) -> Samples:
    """Every sample of ``url``/metrics, parsed by ``prometheus_client.parser``."""
    status, body = await get(url + "/metrics")
    assert status == 200, body
    samples: Samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels`` (0 when absent: a counter not moved yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
