"""All SQL: tables, the resource repository, transactions and migrations."""
