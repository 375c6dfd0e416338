"""FastAPI routers only: HTTP in, HTTP out. No SQL, no domain rules."""
