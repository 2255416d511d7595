"""Is the service on a port really AsyncTaskFlow's API? `make run` and the tests ask /ready,
and accept only an answer that names the service: any web server answers 200 to something,
and another program already on :8000 must not pass for ours."""

from __future__ import annotations

import httpx

SERVICE = "asynctaskflow"  # what /live and /ready name (api/schemas.py Probe)


def identifies(response: httpx.Response) -> bool:
    """The answer is our /ready: 200 (ready) or 503 (Redis away), JSON naming the service."""
    if response.status_code not in (200, 503):
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("service") == SERVICE


def api_ready(client: httpx.Client, timeout: float = 5.0) -> bool:
    """True when `client`'s base URL serves our API's /ready; False on any other answer or none
    within `timeout` seconds."""
    try:
        return identifies(client.get("/ready", timeout=timeout))
    except httpx.HTTPError:
        return False
