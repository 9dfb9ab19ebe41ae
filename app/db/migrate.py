"""Running Alembic from code: `callx migrate`, embedded start-up, tests."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import make_url


def alembic_config(url: str) -> Config:
    ini = resources.files("migrations").joinpath("alembic.ini")
    config = Config(str(ini))
    config.set_main_option("script_location", str(resources.files("migrations")))
    config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    database = make_url(url).database
    if url.startswith("sqlite") and database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)


def check(url: str) -> None:
    """Raise if the models and the migrations disagree (alembic check)."""
    command.check(alembic_config(url))
