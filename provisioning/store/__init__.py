"""Persistence: SQLAlchemy models, engines and Alembic migrations (SQLite and PostgreSQL)."""
