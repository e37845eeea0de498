"""README, "Configuration": "A missing or invalid schema file ... stops start-up with one line naming the
file, the section and the route" -- for the schema files that used to escape as tracebacks (found by the
fuzzer, tests/fuzz/test_findings.py) and for what a valid schema may hold: a nested "$id" whose
relative "$ref"s resolve against it, and "format": "date-time" on a value that is not a string (formats
constrain strings only, as JSON Schema says).
"""
import json

import pytest

from fmspy_gateway.bridge.routes import load_routes

from .test_routes import one_line_error, schema, settings_for


@pytest.mark.parametrize("content, expected", [
    ("[" * 100_000 + "]" * 100_000, "JSON nested too deeply to read"),
    ('{"not": ' * 900 + "{}" + "}" * 900, "nested too deeply to check as a JSON Schema"),
    ('{"$schema": ["http://json-schema.org/draft-07/schema#"]}', "$schema ['http://json-schema.org/draft-07/schema#'] "
                                                                 "is not a JSON Schema draft jsonschema knows: "
                                                                 "expected a URI string"),
], ids=["deep-json", "deep-schema", "schema-uri-not-a-string"])
def test_a_schema_file_that_cannot_be_used_is_one_line_naming_file_section_and_route(tmp_path, content, expected):
    schema_file = tmp_path / "schemas" / "bad.json"
    schema_file.parent.mkdir()
    schema_file.write_text(content)
    settings = settings_for(tmp_path, "[shop]\ngetUser = users.get params=schemas/bad.json\n")
    message = str(one_line_error(load_routes, settings))
    assert message.startswith(f"{schema_file}: {expected}"), message[:300]
    assert f"params= of [shop] getUser in {tmp_path / 'routes.cfg'}" in message


def test_a_ref_relative_to_a_nested_id_resolves(tmp_path):
    document = {"$id": "https://example.test/root.json", "type": "object",
                "properties": {"user": {"$id": "https://example.test/user/", "$defs": {"id": {"type": "integer"}},
                                        "properties": {"id": {"$ref": "#/$defs/id"}}}}}
    user = schema(tmp_path, document)
    assert user.errors({"user": {"id": 1}}) == []
    assert user.errors({"user": {"id": "1"}}) == ["params.user.id: '1' is not of type 'integer'"]


def test_a_ref_that_only_a_nested_id_would_resolve_is_refused_elsewhere(tmp_path):
    document = {"properties": {"a": {"$ref": "#/$defs/id"}, "b": {"$id": "https://example.test/b/",
                                                                  "$defs": {"id": {"type": "integer"}}}}}
    schema_file = tmp_path / "schemas" / "s.json"
    schema_file.parent.mkdir()
    schema_file.write_text(json.dumps(document))
    settings = settings_for(tmp_path, "[shop]\ngetUser = users.get params=schemas/s.json\n")
    assert "$ref '#/$defs/id' cannot be resolved" in str(one_line_error(load_routes, settings))


def test_date_time_constrains_strings_only(tmp_path):
    when = schema(tmp_path, {"format": "date-time"})
    assert when.errors(20090213) == []
    assert when.errors("yesterday") == ["params: 'yesterday' is not a 'date-time'"]
