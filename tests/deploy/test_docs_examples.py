"""The curl examples of the README and docs/DEPLOYMENT.md work under compose, where the api runs
with AUTH_REQUIRED: every example of a route that needs a key sends one (else it gets a 401)."""

from __future__ import annotations

import re
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from api.auth import decisions_of
from api.main import create_app
from tests.deploy.compose import ROOT

DOCS = [ROOT / "README.md", ROOT / "docs" / "DEPLOYMENT.md"]
KEY_FORMS = ('-H "$AUTH"', "Authorization: Bearer", "X-API-Key:")


def curl_examples() -> list[tuple[str, str]]:
    """(document, command) for every curl command in a shell block, continuation lines joined."""
    found = []
    for doc in DOCS:
        for block in re.findall(r"```sh\n(.*?)```", doc.read_text(), flags=re.S):
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():
                for command in re.findall(r"curl\s[^;]*", line):
                    found.append((doc.name, command.strip()))
    return found


@cache
def app_routes() -> list[Any]:
    """The routes of an app built inside the test (after the user's .env is set aside)."""
    return list(iter_route_contexts(create_app().routes))


def access(method: str, path: str) -> set[str]:
    """The access decisions of the app's route for this request (the docs pages are public)."""
    for context in app_routes():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(context.path))
        if method in (context.methods or ()) and re.fullmatch(pattern, path):
            route = context.route
            return decisions_of(route) if isinstance(route, APIRoute) else {"public"}
    raise AssertionError(f"no route {method} {path}")


def target(command: str) -> tuple[str, str]:
    method = re.search(r"-X\s+([A-Z]+)", command)
    url = re.search(r"(?:localhost|127\.0\.0\.1):8000(/[^\s'\"]*)", command)
    assert url, command
    return (method.group(1) if method else "GET"), urlsplit(url.group(1)).path


def test_the_docs_have_curl_examples() -> None:
    assert len(curl_examples()) > 20


@pytest.mark.parametrize(("doc", "command"), curl_examples())
def test_each_example_of_a_protected_route_sends_a_key(doc: str, command: str) -> None:
    method, path = target(command)
    if access(method, path) == {"public"}:
        return
    assert any(form in command for form in KEY_FORMS), f"{doc}: 401 under compose: {command}"
