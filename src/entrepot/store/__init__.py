"""Store: keys and the usage ledger in SQL (SQLite by default, Postgres for replicas)."""
