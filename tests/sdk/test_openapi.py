"""`/openapi.json` is a valid OpenAPI 3.1 document (by openapi-spec-validator)."""

import json
import os
import urllib.request

from openapi_spec_validator import validate


def test_the_document_is_valid_openapi():
    with urllib.request.urlopen(os.environ["GATEWAY_URL"] + "/openapi.json") as response:
        document = json.load(response)
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on any violation of the OpenAPI schema
    assert "/v1/chat/completions" in document["paths"]
    assert "/v1/keys" in document["paths"]
