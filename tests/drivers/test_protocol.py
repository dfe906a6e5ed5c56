"""Message orders no driver sends but an agent can: the gateway must count the target's
answers as the target gives them, and must not lose track of which statement or portal a
name stands for. Each case tries to run an UPDATE over the demo policy's row limit of 100
as if it were a harmless statement."""

import pytest

from conftest import sample_rows
from rawproto import COPY_DONE, SYNC, Raw, bind, close, errors, execute, parse, query, values

pytestmark = pytest.mark.gateway_only


@pytest.fixture
def setup(urls, make_table, admin):
    table = make_table(rows=sample_rows(150))
    raw = Raw(urls["gateway"])
    yield raw, table, f"UPDATE {table} SET name = 'wiped' WHERE true"
    raw.close()
    assert admin.execute(f"SELECT count(*) FILTER (WHERE name = 'wiped') FROM {table}").fetchone() == (0,)


def still_counts(raw):
    """The session answers one query with one result and one ReadyForQuery."""
    raw.send(query("SELECT 41 + 1"))
    answers = raw.ready()
    assert values(answers) == ["42"] and not errors(answers), answers


def test_names_past_63_bytes_are_refused(setup):
    """The target compares only the first 63 bytes of a name."""
    raw, _, wipe = setup
    evil, nice = "n" * 63 + "_evil", "n" * 63 + "_nice"
    raw.send(parse(evil, wipe), SYNC)
    assert any("63 bytes" in e for e in errors(raw.ready())), "long statement name"
    raw.send(parse("ok", "SELECT 1"), bind(nice, "ok"), execute(nice), SYNC)
    assert any("63 bytes" in e for e in errors(raw.ready())), "long portal name"
    raw.send(parse("n" * 63, "SELECT 7"), bind("", "n" * 63), execute(""), SYNC)
    assert values(raw.ready()) == ["7"]
    still_counts(raw)


def test_portal_whose_rebind_failed_is_not_run(setup):
    """A Bind the target rejects leaves the older portal of the name in place."""
    raw, _, wipe = setup
    raw.send(query("BEGIN"))
    raw.ready()
    raw.send(parse("w", wipe), bind("p", "w"), SYNC)
    raw.ready()
    raw.send(query("SAVEPOINT s"))
    raw.ready()
    raw.send(parse("one", "SELECT 1"), bind("p", "one"), SYNC)
    assert any("already exists" in e for e in errors(raw.ready()))
    raw.send(query("ROLLBACK TO SAVEPOINT s"))
    raw.ready()
    raw.send(execute("p"), SYNC)
    assert any(e.startswith("drawbridge") for e in errors(raw.ready()))
    raw.send(query("COMMIT"))
    raw.ready()
    still_counts(raw)


def test_portal_fetched_in_later_batches_still_runs(setup):
    """The ordinary use of a named portal across batches (fetching in pages) is kept."""
    raw, table, _ = setup
    raw.send(query("BEGIN"))
    raw.ready()
    raw.send(parse("page", f"SELECT id FROM {table} ORDER BY id"), bind("c", "page"), execute("c", 2), SYNC)
    assert values(raw.ready()) == ["1", "2"]
    raw.send(execute("c", 2), SYNC)
    assert values(raw.ready()) == ["3", "4"]
    raw.send(query("COMMIT"))
    raw.ready()


def test_query_inside_an_extended_batch_ends_it(setup):
    """After an error the target skips a Query up to the Sync without answering it. The
    gateway ends the batch with a Sync of its own before the Query, so every Query gets its
    answer and the batches stay counted."""
    raw, _, wipe = setup
    raw.send(parse("", "SELECT 1"), bind("", ""), execute(""), query("SELECT 2"), SYNC)
    answers = raw.ready(2)
    assert values(answers) == ["1", "2"] and not errors(answers), answers
    # In a failed batch the Query runs after the gateway's Sync, and the Close after it
    # runs in a batch of its own, so the name is free for other text.
    raw.send(parse("w", wipe), SYNC)
    raw.ready()
    raw.send(parse("", "SELECT 1/0"), bind("", ""), execute(""), query("SELECT 4"), close(b"S", "w"), SYNC)
    answers = raw.ready(2)
    assert any("division by zero" in e for e in errors(answers)) and values(answers) == ["4"], answers
    raw.send(parse("w", "SELECT 3"), bind("", "w"), execute(""), SYNC)
    assert values(raw.ready()) == ["3"]
    still_counts(raw)


def test_sync_during_copy_in_is_not_counted(setup):
    """The target ignores Sync while it reads COPY data."""
    raw, table, wipe = setup
    raw.send(parse("w", wipe), SYNC)
    raw.ready()
    raw.send(query(f"COPY {table} (id, name) FROM STDIN"))
    assert raw.message()[0] == b"G"
    raw.send(SYNC, SYNC, COPY_DONE)
    answers = raw.ready()
    assert not errors(answers), answers
    # A Close skipped after an error must still count as skipped.
    raw.send(parse("", "SELECT 1/0"), bind("", ""), execute(""), close(b"S", "w"), SYNC)
    raw.ready()
    raw.send(SYNC)
    raw.ready()
    raw.send(parse("w", "SELECT 1"), SYNC)
    assert any(e.startswith("drawbridge") for e in errors(raw.ready()))
    raw.send(bind("", "w"), execute(""), SYNC)
    raw.ready()
    still_counts(raw)


def test_copy_in_over_the_extended_protocol_with_its_early_sync(setup):
    """libpq and tokio-postgres send Sync right after a COPY's Execute, then again after the
    data: one ReadyForQuery in all."""
    raw, table, _ = setup
    raw.send(parse("", f"COPY {table} (id, name) FROM STDIN"), bind("", ""), execute(""), SYNC)
    raw.until(b"G")
    raw.send(frame_copy_data(b"1000\tcopied\n"), COPY_DONE, SYNC)
    answers = raw.ready()
    assert not errors(answers), answers
    still_counts(raw)
    raw.send(query(f"SELECT name FROM {table} WHERE id = 1000"))
    assert values(raw.ready()) == ["copied"]


def frame_copy_data(data):
    from rawproto import frame

    return frame(b"d", data)
