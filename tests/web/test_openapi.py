"""The checked-in OpenAPI document (flask_smtp_senders/openapi.json) is valid OpenAPI 3.1,
is what the app serves, and cannot drift from the routes: every API route is in it and
everything in it is a route; its links, examples and schemas hold together."""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from typing import Any

import pytest
from flask import Flask
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from flask_smtp_senders.extension import api_prefix
from tests.support.cases import Host

#: SQLite only: routes and the served document do not depend on the database.
pytestmark = pytest.mark.sqlite_only

TOKEN = {"Authorization": "Bearer script"}  # the Host allows any caller
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
#: ``<int(max=2147483647):sender_id>`` -> ``{sender_id}``
FLASK_VARIABLE = re.compile(r"<(?:[^<>:]+:)?([A-Za-z_][A-Za-z0-9_]*)>")


def checked_in() -> dict[str, Any]:
    """The file as it is on disk (not the module's cached copy)."""
    text = resources.files("flask_smtp_senders").joinpath("openapi.json").read_text("utf-8")
    return json.loads(text)


DOCUMENT = checked_in()


def operations(document: dict[str, Any] = DOCUMENT) -> dict[tuple[str, str], dict[str, Any]]:
    """(path, METHOD) -> the operation object."""
    return {(path, method.upper()): item[method]
            for path, item in document["paths"].items()
            for method in METHODS if method in item}


@pytest.fixture
def app(make_app) -> Flask:
    return make_app(plugins=[Host()])


# -- a valid OpenAPI 3.1 document ---------------------------------------------------------


def test_the_document_is_valid_openapi_3_1():
    assert DOCUMENT["openapi"].startswith("3.1.")
    validate(DOCUMENT, cls=OpenAPIV31SpecValidator)


def test_the_validator_would_catch_a_broken_document():
    broken = copy.deepcopy(DOCUMENT)
    broken["paths"]["/senders/{sender_id}"]["parameters"][0]["in"] = "body"  # OpenAPI 2
    with pytest.raises(OpenAPIValidationError):
        validate(broken, cls=OpenAPIV31SpecValidator)


def test_operation_ids_are_unique():
    ids = [operation["operationId"] for operation in operations().values()]
    assert len(ids) == len(set(ids)) == len(operations())


# -- served as checked in -----------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/settings/senders", "/admin/mail/"])
def test_the_served_document_is_the_checked_in_one_with_this_apps_servers(make_app, prefix):
    app = make_app(plugins=[Host()], SMTP_SENDERS_URL_PREFIX=prefix)
    root = api_prefix(app.config)
    answer = app.test_client().get(f"{root}/openapi.json", headers=TOKEN)

    assert answer.status_code == 200
    served = answer.json
    assert served.pop("servers") == [{"url": root}]
    expected = checked_in()
    expected.pop("servers")
    assert served == expected


# -- routes and document cannot drift -----------------------------------------------------


def api_routes(app: Flask) -> set[tuple[str, str]]:
    """(path as documented, METHOD) for every route of the API blueprint."""
    root = api_prefix(app.config)
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("smtp_senders_api.") or rule.endpoint.endswith(
                ".static"):
            continue
        assert rule.rule.startswith(root + "/"), rule.rule
        path = FLASK_VARIABLE.sub(r"{\1}", rule.rule[len(root):])
        routes |= {(path, method) for method in rule.methods - {"HEAD", "OPTIONS"}}
    return routes


def test_every_route_is_documented_and_every_documented_operation_is_a_route(app):
    routes = api_routes(app)

    assert routes  # the blueprint is registered and the conversion found its rules
    assert ("/senders/{sender_id}", "PATCH") in routes
    assert routes - set(operations()) == set(), "routes missing from openapi.json"
    assert set(operations()) - routes == set(), "documented operations that are no route"


def test_the_route_comparison_sees_a_route_the_document_lacks(app):
    """The check above fails for a new route: a route the document does not name."""
    app.add_url_rule(api_prefix(app.config) + "/senders/<int:sender_id>/extra",
                     "smtp_senders_api.extra", lambda sender_id: "", methods=["PUT"])
    assert api_routes(app) - set(operations()) == {("/senders/{sender_id}/extra", "PUT")}


def test_every_path_parameter_is_declared_as_the_route_names_it():
    for (path, method), operation in operations().items():
        declared = {parameter["name"] for parameter in
                    DOCUMENT["paths"][path].get("parameters", []) +
                    operation.get("parameters", []) if parameter["in"] == "path"}
        assert declared == set(re.findall(r"{([^}]+)}", path)), (path, method)


# -- links, examples, schemas -------------------------------------------------------------


def _registry() -> Registry:
    return Registry().with_resource(
        "urn:openapi", Resource.from_contents(DOCUMENT, default_specification=DRAFT202012))


def schema_validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for a schema of the document (a ``$ref`` into its components)."""
    assert set(schema) == {"$ref"}, schema
    return Draft202012Validator({"$ref": "urn:openapi" + schema["$ref"]},
                                registry=_registry())


def component(ref: str) -> dict[str, Any]:
    node: Any = DOCUMENT
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_every_link_names_an_operation_and_parameters_it_has():
    by_id = {operation["operationId"]: (path, operation)
             for (path, _), operation in operations().items()}
    links = 0
    for (path, method), operation in operations().items():
        for status, response in operation["responses"].items():
            for name, link in response.get("links", {}).items():
                links += 1
                assert link["operationId"] in by_id, name
                target_path, target = by_id[link["operationId"]]
                parameters = {(p["in"], p["name"]) for p in
                              DOCUMENT["paths"][target_path].get("parameters", []) +
                              target.get("parameters", [])}
                for key, expression in link["parameters"].items():
                    where, _, parameter = key.rpartition(".")
                    assert any(p == parameter and (not where or where == at)
                               for at, p in parameters), (path, method, name, key)
                    if expression.startswith("$response.body#/"):
                        body = response["content"]["application/json"]["schema"]
                        fields = component(body["$ref"])["properties"]
                        assert expression.removeprefix("$response.body#/") in fields
                    else:
                        assert expression.startswith("$response.header."), expression
                        header = expression.removeprefix("$response.header.")
                        assert header in response["headers"], (path, method, status, header)
    assert links >= 6  # createSender's, at least: what the stateful tests follow


def test_every_example_is_valid_for_its_schema():
    examples = 0
    for (path, method), operation in operations().items():
        for content in operation.get("requestBody", {}).get("content", {}).values():
            validator = schema_validator(content["schema"])
            for name, example in content.get("examples", {}).items():
                examples += 1
                errors = [error.message for error in validator.iter_errors(example["value"])]
                assert errors == [], (path, method, name)
    assert examples >= 5


def test_the_schema_check_would_catch_a_bad_example():
    validator = schema_validator({"$ref": "#/components/schemas/SenderCreate"})
    assert not validator.is_valid({"username": "u", "password": "p"})  # no server, no From
    assert not validator.is_valid({**_create_example(), "port": "587"})
    assert validator.is_valid(_create_example())


def _create_example() -> dict[str, Any]:
    examples = DOCUMENT["paths"]["/senders"]["post"]["requestBody"]["content"][
        "application/json"]["examples"]
    return dict(next(iter(examples.values()))["value"])


def test_the_examples_are_accepted_by_the_api(app):
    """What the document shows a script sending works as shown (no 4xx)."""
    client = app.test_client()
    content = {key: operation.get("requestBody", {}).get("content", {})
               .get("application/json", {}).get("examples", {})
               for key, operation in operations().items()}
    root = api_prefix(app.config)
    made = []
    for example in content["/senders", "POST"].values():
        answer = client.post(f"{root}/senders", json=example["value"], headers=TOKEN)
        assert answer.status_code == 201, answer.json
        made.append(answer)
    sender = made[0].json["id"]
    for example in content["/senders/{sender_id}", "PATCH"].values():
        answer = client.patch(f"{root}/senders/{sender}", json=example["value"],
                              headers={**TOKEN, "If-Match": made[0].headers["ETag"]})
        assert answer.status_code == 200, answer.json
    for path in ("/senders/{sender_id}/test", "/senders/{sender_id}/check"):
        for example in content[path, "POST"].values():
            answer = client.post(root + path.format(sender_id=sender), json=example["value"],
                                 headers=TOKEN)
            # the Host resolves no example name: the result says so, the request is fine
            assert answer.status_code == 200, answer.json
            assert answer.json["stage"] == "resolve"
