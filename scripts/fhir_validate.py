#!/usr/bin/env python3
"""Validate FHIR resources with an independent implementation: the pydantic
models of the PyPI package `fhir.resources` (its R4B package; for the
resource types Dr Amal emits R4B is R4 4.0.1 with corrections).

Usage: fhir_validate.py FILE...   (each FILE holds one JSON resource, or a
JSON array of resources; Bundles are validated with every entry inside).
Prints one line per invalid resource and exits 1 if any is invalid.
"""
import importlib
import json
import re
import sys


def model_for(resource_type):
    module = importlib.import_module(
        "fhir.resources.R4B." + resource_type.lower())
    return getattr(module, resource_type)


def validate(resource, where):
    rt = resource.get("resourceType") if isinstance(resource, dict) else None
    if not isinstance(rt, str) or not re.fullmatch(r"[A-Z][A-Za-z]+", rt):
        return ["%s: not a FHIR resource (no resourceType)" % where]
    try:
        model_for(rt).model_validate(resource)
    except Exception as e:  # pydantic.ValidationError or an unknown type
        return ["%s: %s %s is invalid: %s" % (where, rt, resource.get("id", ""), e)]
    return []


def main(paths):
    errors, count = [], 0
    for path in paths:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        items = doc if isinstance(doc, list) else [doc]
        for i, r in enumerate(items):
            count += 1
            errors += validate(r, "%s[%d]" % (path, i))
            if isinstance(r, dict) and r.get("resourceType") == "Bundle":
                count += len(r.get("entry", []))
    for e in errors:
        print(e)
    print("%d resource(s) checked, %d invalid" % (count, len(errors)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
