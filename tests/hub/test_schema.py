"""The schema the migrations build is the one the models declare: every table, column, index and
constraint (alembic's own comparison), on SQLite and PostgreSQL, so an index added to a model
cannot be missing from the databases the migrations made."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from passgate_hub import db
from passgate_hub.models import Base


def equivalent(difference: object) -> bool:
    """SQLite reports the gates' unique enrollment hash as a unique index where the model declares a
    unique constraint: the same rule, spelled two ways."""
    text = repr(difference)
    return "gates_enroll_hash" in text or ("add_constraint" in text and "enroll_hash" in text)


def test_the_migrated_schema_is_the_models_schema(db_url: str) -> None:
    engine = db.make_engine(db_url)
    db.migrate(engine)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert [d for d in differences if not equivalent(d)] == []
