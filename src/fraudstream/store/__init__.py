"""The SQL system of record: tables, migrations, the sink that fills them, history export.

SQLite (WAL) in the data dir by default, PostgreSQL by URL (``database_url``). Modules:
`tables` (the schema, declared once), `migrate` (Alembic), `engine`, `write` (idempotent
batched upserts), `sink` (the consumer of ``tx.decisions``), `lag`, `export`, and `scratch`
(a throw-away PostgreSQL for tests and benchmarks).
"""
