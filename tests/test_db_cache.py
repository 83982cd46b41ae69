"""DatabaseCache beyond Django's suite, on SQLite (tests.settings) and PostgreSQL
(tests.settings_pg): Django's rows are read, writes are one statement, the row count is
not asked on every write, transactions and routers are Django's, incr is atomic."""

from __future__ import annotations

import random
import threading

import pytest
from asgiref.sync import async_to_sync
from django.core import management
from django.core.cache.backends.db import DatabaseCache as DjangoDatabaseCache
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from django_nativecache.backends.db import DatabaseCache
from django_nativecache.exceptions import CorruptData

TABLE = "nativecache db tests"


class OtherDatabaseRouter:
    """Puts the cache table on the 'other' database."""

    def db_for_read(self, model, **hints):
        return "other" if model._meta.app_label == "django_cache" else None

    db_for_write = db_for_read

    def allow_migrate(self, db, app_label, **hints):
        return db == "other" if app_label == "django_cache" else None


@pytest.fixture
def table(transactional_db, settings):
    settings.CACHES = {"default": {"BACKEND": "django_nativecache.backends.db.DatabaseCache",
                                   "LOCATION": TABLE}}
    management.call_command("createcachetable", verbosity=0)
    yield TABLE
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE %s" % connection.ops.quote_name(TABLE))


def build(**options) -> DatabaseCache:
    return DatabaseCache(TABLE, {"OPTIONS": options} if options else {})


def raw_value(key: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT value FROM %s WHERE cache_key = %%s" % connection.ops.quote_name(TABLE), [key]
        )
        row = cursor.fetchone()
    return None if row is None else connection.ops.process_clob(row[0])


def in_threads(work, count: int = 4) -> None:
    """Runs ``work(n)`` in ``count`` threads, each with a connection of its own (closed
    after), as Django's request threads; re-raises the first error."""
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            work(n)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def test_reads_what_djangos_database_cache_wrote(table):
    theirs = DjangoDatabaseCache(TABLE, {})
    ours = build()
    values = {"s": "text", "i": 42, "big": 2**70, "b": b"\x00\xff", "d": {"a": [1, 2]},
              "t": True, "n": None}
    theirs.set_many(values)
    assert ours.get_many(list(values)) == values
    # Ours writes its own text format, which Django's class cannot read: switching back
    # means clearing the table (documented).
    ours.set("mine", "text")
    assert raw_value(":1:mine") == "s:text"


def test_value_text_format(table):
    cache = build()
    cache.set("s", "héllo")
    cache.set("i", -7)
    cache.set("nul", "a\x00b")
    cache.set("p", [1, 2])
    assert raw_value(":1:s") == "s:héllo"
    assert raw_value(":1:i") == "i:-7"
    assert raw_value(":1:nul").startswith("1:")  # a text column cannot hold NUL
    assert raw_value(":1:p").startswith("1:")
    assert cache.get_many(["s", "i", "nul", "p"]) == {"s": "héllo", "i": -7, "nul": "a\x00b",
                                                       "p": [1, 2]}


def test_compression_option(table):
    cache = build(COMPRESS_MIN_LENGTH=100)
    cache.set("long", "x" * 1000)
    assert raw_value(":1:long").startswith("24:")
    assert cache.get("long") == "x" * 1000


def test_writes_are_one_statement_and_the_count_is_not_asked_each_time(table):
    cache = build(MAX_ENTRIES=1000)
    cache.set("first", 1)  # counts the table once
    with CaptureQueriesContext(connection) as queries:
        for i in range(20):
            cache.set(f"k{i}", i)
        assert cache.add("k0", "no") is False
        assert cache.add("new", "yes") is True
        cache.set_many({f"m{i}": i for i in range(50)})
    sql = [q["sql"] for q in queries]
    assert len(sql) == 23
    assert not any("COUNT" in s for s in sql)


def test_databases_without_upsert_take_the_portable_path(table, monkeypatch):
    # MySQL, Oracle and third-party backends: UPDATE, else INSERT, in a transaction.
    monkeypatch.setattr("django_nativecache.backends.db._UPSERT_VENDORS", frozenset())
    cache = build(MAX_ENTRIES=1000)
    cache.set("k", 1)
    cache.set("k", 2)
    assert cache.get("k") == 2
    assert cache.add("k", 3) is False
    assert cache.add("new", 4) is True and cache.get("new") == 4
    cache.set("gone", 1, 0)  # written expired: add takes it over
    assert cache.add("gone", 5) is True and cache.get("gone") == 5
    assert cache.set_many({"a": 1, "b": 2}) == []
    assert cache.get_many(["a", "b", "k"]) == {"a": 1, "b": 2, "k": 2}
    with CaptureQueriesContext(connection) as queries:
        cache.set("k", 6)
    assert not any("ON CONFLICT" in q["sql"] for q in queries)


def test_culling_keeps_the_table_at_max_entries(table):
    cache = build(MAX_ENTRIES=30, CULL_FREQUENCY=3)
    for i in range(200):
        cache.set(f"c{i:03d}", i)
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM %s" % connection.ops.quote_name(TABLE))
        assert cursor.fetchone()[0] <= 31


def test_set_many_culls_as_writing_each_row_would(table):
    cache = build(MAX_ENTRIES=30, CULL_FREQUENCY=3)
    for batch in range(3):
        assert cache.set_many({f"b{batch}-{i:03d}": i for i in range(200)}) == []
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM %s" % connection.ops.quote_name(TABLE))
            assert cursor.fetchone()[0] <= 31
    assert cache.get("b2-199") == 199  # culling takes the lowest keys first, as Django


@pytest.mark.parametrize("cull_frequency", [0, 2])
def test_set_many_into_a_full_table_keeps_what_djangos_keeps(table, cull_frequency):
    # Django counts, and culls, before each row: the last rows of a batch are kept even
    # when CULL_FREQUENCY = 0 empties the table on the way.
    options = {"MAX_ENTRIES": 30, "CULL_FREQUENCY": cull_frequency}
    kept = {}
    for cache in (build(**options), DjangoDatabaseCache(TABLE, {"OPTIONS": options})):
        cache.clear()
        cache.set_many({f"old{i:02d}": i for i in range(28)})
        assert cache.set_many({f"new{i}": i for i in range(5)}) == []
        kept[type(cache).__module__] = sorted(cache.get_many(
            [f"old{i:02d}" for i in range(28)] + [f"new{i}" for i in range(5)]))
    ours, djangos = kept.values()
    assert ours == djangos and "new4" in ours


def test_writes_to_a_table_that_is_gone_raise_as_djangos_do(table):
    ours, django = build(), DjangoDatabaseCache(TABLE, {})
    ours.set("a", 1)  # the rows were just counted: the next writes do not count them again
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE %s" % connection.ops.quote_name(TABLE))
    try:
        for cache in (ours, django):
            for write in (lambda: cache.set("b", 2), lambda: cache.add("c", 3),
                          lambda: cache.set_many({"d": 4, "e": 5}), lambda: cache.touch("a")):
                with pytest.raises(DatabaseError):
                    write()
    finally:
        management.call_command("createcachetable", verbosity=0)


def test_a_write_rolled_back_with_its_transaction_is_gone(table):
    cache = build()
    cache.set("kept", 1)
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            cache.set("kept", 2)
            cache.set("new", 3)
            raise RuntimeError
    assert cache.get("kept") == 1
    assert cache.get("new") is None


def _refuse_keys_with_boom() -> None:
    """A trigger that makes the database refuse writes of keys containing 'boom'."""
    table = connection.ops.quote_name(TABLE)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                f"CREATE TRIGGER nc_boom BEFORE INSERT ON {table} "
                "WHEN NEW.cache_key LIKE '%boom%' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        else:
            cursor.execute(
                "CREATE OR REPLACE FUNCTION nc_boom() RETURNS trigger AS $$ BEGIN "
                "IF NEW.cache_key LIKE '%boom%' THEN RAISE EXCEPTION 'refused'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                f"CREATE TRIGGER nc_boom BEFORE INSERT OR UPDATE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION nc_boom()"
            )


def test_a_failed_write_inside_a_transaction_leaves_it_usable(table):
    # Django's rule: a write the database refuses fails quietly. Inside the caller's
    # transaction it must not abort that transaction (PostgreSQL would refuse every
    # later statement of it), so it runs under a savepoint of its own.
    _refuse_keys_with_boom()
    cache = build()
    with transaction.atomic():
        cache.set("before", 1)
        assert cache.set("boom", 2) is None
        assert cache.add("boom-add", 2) is False
        # The refused key alone is returned; the others are stored, as Django's would be.
        assert cache.set_many({"boom-many": 1, "also": 2}) == ["boom-many"]
        assert cache.get("before") == 1
        cache.set("after", 3)
    assert cache.get_many(["before", "boom", "boom-add", "also", "after"]) == {
        "before": 1,
        "also": 2,
        "after": 3,
    }


def test_set_many_returns_exactly_the_refused_keys_across_chunks(table):
    _refuse_keys_with_boom()
    cache = build(MAX_ENTRIES=10_000)
    data = {f"k{i:04}": i for i in range(1200)} | {"boom-1": 1, "k0600boom": 2}
    assert sorted(cache.set_many(data)) == ["boom-1", "k0600boom"]
    stored = cache.get_many(list(data))
    assert len(stored) == 1200 and stored["k0599"] == 599 and stored["k1199"] == 1199


def test_a_refused_incr_raises_and_leaves_the_transaction_usable(table):
    cache = build()
    cache.set("boom-n", 1)
    _refuse_keys_with_boom()
    if connection.vendor == "sqlite":  # its trigger above refuses inserts only
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TRIGGER nc_boom_update BEFORE UPDATE ON "
                f"{connection.ops.quote_name(TABLE)} WHEN NEW.cache_key LIKE '%boom%' "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
    with transaction.atomic():
        cache.set("before", 1)
        with pytest.raises(DatabaseError):
            cache.incr("boom-n")
        assert cache.get("before") == 1  # PostgreSQL would refuse it in an aborted one
        cache.set("after", 2)
    assert cache.get_many(["before", "boom-n", "after"]) == {"before": 1, "boom-n": 1,
                                                             "after": 2}


@pytest.mark.skipif("connection.vendor == 'sqlite'",
                    reason="SQLite's in-memory test database locks whole tables against "
                           "concurrent writers; the same test runs on PostgreSQL")
def test_writers_of_overlapping_keys_in_any_order_never_deadlock(table):
    keys = [f"shared-{i}" for i in range(30)]
    failed: list[object] = []

    def work(n: int) -> None:
        order = random.Random(n)
        own = build(MAX_ENTRIES=10_000)
        for _ in range(30):
            shuffled = keys[:]
            order.shuffle(shuffled)
            failed.extend(own.set_many({k: n for k in shuffled}))

    in_threads(work)
    assert failed == []  # a deadlock makes PostgreSQL abort a writer: its keys come back
    assert len(build().get_many(keys)) == 30


@pytest.mark.skipif("connection.vendor == 'sqlite'",
                    reason="SQLite's in-memory test database locks whole tables against "
                           "concurrent writers; the same test runs on PostgreSQL")
def test_aincr_is_incr_atomic_and_keeping_the_expiry(table):
    cache = build()
    cache.set("n", 0, 5000)
    expires = _expires("n")

    def work(n: int) -> None:
        own = build()
        for _ in range(50):
            async_to_sync(own.aincr)("n")

    in_threads(work)
    assert cache.get("n") == 200
    assert async_to_sync(cache.adecr)("n", 10) == 190
    assert _expires("n") == expires


def _expires(key: str) -> object:
    with connection.cursor() as cursor:
        cursor.execute("SELECT expires FROM %s WHERE cache_key = %%s"
                       % connection.ops.quote_name(TABLE), [f":1:{key}"])
        return cursor.fetchone()[0]


def test_a_failed_write_with_autocommit_off_leaves_the_transaction_usable(table):
    _refuse_keys_with_boom()
    cache = build()
    transaction.set_autocommit(False)
    try:
        cache.set("before", 1)
        assert cache.add("boom", 2) is False
        assert cache.get("before") == 1
        transaction.commit()
    finally:
        transaction.set_autocommit(True)
    assert cache.get_many(["before", "boom"]) == {"before": 1}


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
def test_router_sends_the_table_to_another_database(settings):
    settings.DATABASE_ROUTERS = [OtherDatabaseRouter()]
    settings.CACHES = {"default": {"BACKEND": "django_nativecache.backends.db.DatabaseCache",
                                   "LOCATION": TABLE}}
    management.call_command("createcachetable", database="other", verbosity=0)
    try:
        cache = build()
        with CaptureQueriesContext(connections["other"]) as other, \
                CaptureQueriesContext(connection) as default:
            cache.set("routed", "v")
            assert cache.get("routed") == "v"
        assert len(other) >= 2 and len(default) == 0
    finally:
        with connections["other"].cursor() as cursor:
            cursor.execute("DROP TABLE %s" % connections["other"].ops.quote_name(TABLE))


def test_incr_keeps_expiry_and_handles_non_integers(table):
    cache = build()
    cache.set("n", 1, 500)
    assert cache.incr("n", 4) == 5
    assert cache.decr("n") == 4
    cache.set("f", 1.5)
    assert cache.incr("f") == 2.5
    with pytest.raises(ValueError):
        cache.incr("missing")
    cache.set("none", None)
    with pytest.raises(TypeError):
        cache.incr("none")


@pytest.mark.skipif("connection.vendor == 'sqlite'",
                    reason="SQLite's in-memory test database locks whole tables against "
                           "concurrent writers; the same test runs on PostgreSQL")
def test_incr_is_atomic_across_threads(table):
    cache = build()
    cache.set("counter", 0)

    def work(n: int) -> None:
        own = build()  # a cache instance and a connection per thread, as in Django
        for _ in range(100):
            own.incr("counter")

    in_threads(work)
    assert cache.get("counter") == 400


def test_damaged_value_raises_corrupt_data(table):
    cache = build()
    cache.set("k", "v")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE %s SET value = %%s" % connection.ops.quote_name(TABLE), ["9:%%%"])
    with pytest.raises(CorruptData):
        cache.get("k")


@pytest.mark.parametrize("options", [{"NOPE": 1}, {"MAX_ENTRIES": "many"}, {"COMPRESS_LEVEL": 0}])
def test_bad_options(options):
    with pytest.raises(ImproperlyConfigured):
        build(**options)
