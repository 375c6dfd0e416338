"""Test helpers shared by the suite: the throwaway PostgreSQL cluster."""
