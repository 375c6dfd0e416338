"""FHIR mechanics with no SQL and no FastAPI.

Resource registry, validation, search parameters, bundles, errors.
"""
