"""Every number a route takes in its query string is bounded, and says so in the OpenAPI
document: a value past the bound is a 422, never a database overflow (a 500)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.identity.conftest import make_person
from tests.identity.test_route_authz import Walk, seed, walk_of

HUGE = 10**30


def integer_query_parameters(walk: Walk) -> list[tuple[str, str, str, dict]]:
    found = []
    for method, path in walk.ops:
        for parameter in walk.operation(method, path).get("parameters", []):
            schema = parameter.get("schema", {})
            kinds = [schema, *schema.get("anyOf", [])]
            number = next((k for k in kinds if k.get("type") == "integer"), None)
            if parameter["in"] == "query" and number is not None:
                found.append((method, path, parameter["name"], number))
    return found


async def test_every_integer_query_parameter_is_bounded(
    app_client: httpx.AsyncClient, tmp_path: Path
):
    alice = await make_person(app_client, "alice@example.org", first=True)
    targets = await seed(app_client, alice, alice.workspace_id, tmp_path)
    walk = await walk_of(app_client, targets)
    found = integer_query_parameters(walk)
    assert ("GET", "/api/conversations", "offset") in {(m, p, n) for m, p, n, _ in found}

    problems = []
    for method, path, name, schema in found:
        if "maximum" not in schema or "minimum" not in schema:
            problems.append(f"{method} {path} ?{name}: no bounds declared ({schema})")
        for value in (HUGE, -HUGE):
            walk.extra_params = {name: str(value)}
            response = await walk.call(method, path, alice.headers)
            if response.status_code != 422:
                problems.append(f"{method} {path} ?{name}={value}: {response.status_code}")
            elif response.json()["error"]["code"] != "validation_error":
                problems.append(f"{method} {path} ?{name}={value}: {response.text}")
    assert not problems, "\n".join(problems)


async def test_a_huge_offset_is_refused_in_the_error_shape(app_client: httpx.AsyncClient):
    alice = await make_person(app_client, "alice@example.org", first=True)
    response = await app_client.get(
        "/api/conversations", headers=alice.headers, params={"offset": str(HUGE)}
    )
    assert response.status_code == 422, response.text
    assert "offset" in response.json()["error"]["message"]
    fine = await app_client.get(
        "/api/conversations", headers=alice.headers, params={"offset": "1000000"}
    )
    assert fine.status_code == 200, fine.text
    assert fine.json()["items"] == []
