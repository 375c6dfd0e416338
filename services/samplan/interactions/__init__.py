"""The FHIR interactions run against the store: the layer between the gate and the store.

``fhir/`` holds the rules (registry, search parameters, bundles, outcomes,
profiles) and touches no store; this package runs them: read, search,
history, the writes and their preconditions (``service.py``), batch and
transaction Bundles (``transaction.py``), and the conformance resources
stored at start (``conformance.py``). Nothing here decides *who* may do it:
only ``security/`` (the gate) calls this package for a request.
"""
