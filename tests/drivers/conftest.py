"""Shared fixtures for the driver tests.

The tests read three URLs from the environment (scripts/test provides them):
  GATEWAY_URL  an agent connecting through drawbridge
  DIRECT_URL   the target's own role, straight to PostgreSQL
  ADMIN_URL    a superuser, straight to PostgreSQL (fixtures only)
Each test runs the same operations through the gateway and directly and compares.
Without GATEWAY_URL the gateway side falls back to DIRECT_URL and gateway-only tests skip.
"""

import os
import secrets

import psycopg
import pytest

DIRECT_URL = os.environ.get("DIRECT_URL")
ADMIN_URL = os.environ.get("ADMIN_URL")
GATEWAY_URL = os.environ.get("GATEWAY_URL")


def pytest_report_header(config):
    if GATEWAY_URL:
        return "drivers: comparing GATEWAY_URL with DIRECT_URL"
    return "drivers: GATEWAY_URL not set; the gateway side uses DIRECT_URL and gateway-only tests skip"


def pytest_configure(config):
    config.addinivalue_line("markers", "gateway_only: needs a real gateway (GATEWAY_URL)")
    if not DIRECT_URL or not ADMIN_URL:
        pytest.exit("set DIRECT_URL and ADMIN_URL (scripts/test does this)", returncode=2)


def pytest_collection_modifyitems(config, items):
    if GATEWAY_URL:
        return
    skip = pytest.mark.skip(reason="GATEWAY_URL not set")
    for item in items:
        if "gateway_only" in item.keywords:
            item.add_marker(skip)


def app_role():
    return psycopg.conninfo.conninfo_to_dict(DIRECT_URL)["user"]


@pytest.fixture
def urls():
    """(gateway, direct) URLs; the pair every comparison runs over."""
    return {"gateway": GATEWAY_URL or DIRECT_URL, "direct": DIRECT_URL}


@pytest.fixture
def admin():
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        yield conn


@pytest.fixture
def make_table(admin):
    """Create tables owned by the app role with given columns; drop them afterwards."""
    created = []

    def make(columns="id int PRIMARY KEY, name text, score numeric, data bytea", rows=()):
        name = f"drv_{secrets.token_hex(4)}"
        admin.execute(f"CREATE TABLE {name} ({columns})")
        admin.execute(f'ALTER TABLE {name} OWNER TO "{app_role()}"')
        created.append(name)
        for row in rows:
            placeholders = ", ".join(["%s"] * len(row))
            admin.execute(f"INSERT INTO {name} VALUES ({placeholders})", row)
        return name

    yield make
    for name in created:
        admin.execute(f"DROP TABLE IF EXISTS {name}")


def sample_rows(n=50):
    return [(i, f"name-{i}-é", i * 1.25, bytes([i % 256, 0, 255])) for i in range(1, n + 1)]
