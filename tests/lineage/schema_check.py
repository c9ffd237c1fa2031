"""Validate lifemap's OpenLineage events (a file transport's JSON lines) against the OpenLineage
2-0-2 JSON schemas: each event against RunEvent, and each facet against the schema its
`_schemaURL` names.

    python schema_check.py SPEC_DIR EVENTS.jsonl [EXPECTED_EVENT_TYPE ...]
"""

import json
import pathlib
import sys

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource


def registry(spec: pathlib.Path) -> tuple:
    schemas = {}
    for path in [spec / "OpenLineage.json", *sorted((spec / "facets").glob("*.json"))]:
        schema = json.loads(path.read_text())
        schemas[schema["$id"]] = schema
    resources = [(uri, Resource.from_contents(schema)) for uri, schema in schemas.items()]
    return Registry().with_resources(resources), schemas


def facets_of(node, found):
    """Every object carrying `_schemaURL` below `node`."""
    if isinstance(node, dict):
        if "_schemaURL" in node:
            found.append(node)
        for value in node.values():
            facets_of(value, found)
    elif isinstance(node, list):
        for value in node:
            facets_of(value, found)
    return found


def main(spec: pathlib.Path, events_file: pathlib.Path, expected: list) -> None:
    reg, schemas = registry(spec)
    core = schemas["https://openlineage.io/spec/2-0-2/OpenLineage.json"]
    run_event = Draft202012Validator(
        {"$ref": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"},
        registry=reg,
        format_checker=FormatChecker(),
    )
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    problems = []
    checked_facets = 0
    for number, event in enumerate(events, 1):
        for error in run_event.iter_errors(event):
            problems.append(f"event {number} ({event.get('eventType')}): {error.json_path}: {error.message}")
        for facet in facets_of(event, []):
            url = facet["_schemaURL"]
            if url.split("#")[0] not in schemas:
                problems.append(f"event {number}: a facet names a schema this spec copy lacks: {url}")
                continue
            validator = Draft202012Validator({"$ref": url}, registry=reg, format_checker=FormatChecker())
            for error in validator.iter_errors(facet):
                problems.append(f"event {number}: facet {url}: {error.json_path}: {error.message}")
            checked_facets += 1
    kinds = [event.get("eventType") for event in events]
    if expected and kinds != expected:
        problems.append(f"events {kinds}, expected {expected}")
    if problems:
        sys.exit("\n".join(problems))
    print(f"{len(events)} OpenLineage events ({', '.join(kinds)}) and {checked_facets} facets valid against "
          f"the {core['$id']} schemas")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3:])
