"""FHIR mechanics with no SQL and no FastAPI: resource registry, validation, search parameters, bundles, errors."""
