"""DatabaseCache: Django's database cache, with keys and values done natively.

The table is Django's (``createcachetable`` creates it, since this is a
``BaseDatabaseCache``), and all SQL goes through Django's connections and routers, so
transactions, several databases and query counting work as with Django's own class.
What changes:

* keys are made and checked natively, values go through the native codec as text
  (``s:`` + a str, ``i:`` + an int, otherwise ``<flags>:`` + base64); values Django's
  ``DatabaseCache`` wrote (base64 of a pickle) are read too;
* on SQLite and PostgreSQL a write is one ``INSERT ... ON CONFLICT`` statement instead
  of a SELECT and an UPDATE or INSERT in a transaction; ``set_many`` is one statement;
* the row count for MAX_ENTRIES is only asked when this instance's last count plus the
  rows it has written since could exceed the limit (or the count is a second old), not
  on every write; culling is Django's (expired rows first, then the first keys in order);
* ``incr``/``decr`` are atomic across processes (a compare-and-set on the stored text)
  and keep the entry's expiry.

The SQL for each connection is built once and reused.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.db import BaseDatabaseCache
from django.db import DatabaseError, IntegrityError, connections, models, router, transaction
from django.utils.timezone import now as tz_now

from django_nativecache import _native
from django_nativecache.backends.base import NativeKeys, ThreadAsyncMixin
from django_nativecache.options import count_option, in_range, parse_size, validate_options

_SCHEMA = {
    "MAX_ENTRIES": count_option(-(1 << 62), 1 << 62, 300),
    "CULL_FREQUENCY": count_option(0, 1 << 31, 3),
    "COMPRESS_MIN_LENGTH": (in_range(0, 1 << 40, parse_size), 0),
    "COMPRESS_LEVEL": (in_range(1, 9), 6),
}
_UPSERT_VENDORS = frozenset({"sqlite", "postgresql"})
_COUNT_MAX_AGE = 1.0  # seconds a row count is trusted for, against other writers
_IN_CHUNK = 500  # keys per IN (...) list


@contextmanager
def _savepoint(connection: Any) -> Iterator[None]:
    """Runs a write that may fail quietly. Inside the caller's transaction (``atomic()``
    or autocommit turned off) it gets a savepoint of its own, so that its failure does
    not abort that transaction (PostgreSQL refuses every later statement of an aborted
    one); in autocommit mode a statement is atomic by itself and needs none."""
    if not connection.get_autocommit():
        with transaction.atomic(using=connection.alias):
            yield
    else:
        yield


@dataclass(frozen=True)
class _Sql:
    """The statements for one connection, built once."""

    upsert: bool
    select_one: str
    select_many: Callable[[int], str]
    insert: Callable[[int], str]
    insert_add: str
    update_value: str
    update_expired: str
    touch: str
    delete_many: Callable[[int], str]
    has_key: str
    count: str
    cull_expired: str
    cull_key: str
    cull_below: str
    clear: str
    cas_value: str
    converters: tuple[Any, ...]
    expression: Any


def _build_sql(connection: Any, table_name: str) -> _Sql:
    q = connection.ops.quote_name
    table, key, value, expires = q(table_name), q("cache_key"), q("value"), q("expires")
    upsert = connection.vendor in _UPSERT_VENDORS

    def marks(n: int) -> str:
        return ", ".join(["%s"] * n)

    def insert(rows: int) -> str:
        sql = f"INSERT INTO {table} ({key}, {value}, {expires}) VALUES " + ", ".join(
            ["(%s, %s, %s)"] * rows
        )
        if upsert:
            sql += (
                f" ON CONFLICT ({key}) DO UPDATE SET {value} = excluded.{value},"
                f" {expires} = excluded.{expires}"
            )
        return sql

    expression = models.Expression(output_field=models.DateTimeField())
    converters = tuple(
        connection.ops.get_db_converters(expression) + expression.get_db_converters(connection)
    )
    return _Sql(
        upsert=upsert,
        select_one=f"SELECT {value}, {expires} FROM {table} WHERE {key} = %s",
        select_many=lambda n: (
            f"SELECT {key}, {value}, {expires} FROM {table} WHERE {key} IN ({marks(n)})"
        ),
        insert=insert,
        # add: insert, or take over a row that has expired (%s: now).
        insert_add=(
            f"INSERT INTO {table} ({key}, {value}, {expires}) VALUES (%s, %s, %s)"
            f" ON CONFLICT ({key}) DO UPDATE SET {value} = excluded.{value},"
            f" {expires} = excluded.{expires} WHERE {table}.{expires} < %s"
        ),
        update_value=f"UPDATE {table} SET {value} = %s, {expires} = %s WHERE {key} = %s",
        update_expired=(
            f"UPDATE {table} SET {value} = %s, {expires} = %s WHERE {key} = %s"
            f" AND {expires} < %s"
        ),
        touch=f"UPDATE {table} SET {expires} = %s WHERE {key} = %s AND {expires} >= %s",
        delete_many=lambda n: f"DELETE FROM {table} WHERE {key} IN ({marks(n)})",
        has_key=f"SELECT {key} FROM {table} WHERE {key} = %s and {expires} > %s",
        count=f"SELECT COUNT(*) FROM {table}",
        cull_expired=f"DELETE FROM {table} WHERE {expires} < %s",
        cull_key=connection.ops.cache_key_culling_sql() % table,
        cull_below=f"DELETE FROM {table} WHERE {key} < %s",
        clear=f"DELETE FROM {table}",
        cas_value=(
            f"UPDATE {table} SET {value} = %s WHERE {key} = %s AND {value} = %s"
            f" AND {expires} >= %s"
        ),
        converters=converters,
        expression=expression,
    )


class _RowCount:
    """This instance's view of the table's row count: when it was last counted, and how
    many rows it may have added since."""

    __slots__ = ("known", "added", "at")

    def __init__(self) -> None:
        self.known: int | None = None
        self.added = 0
        self.at = 0.0

    def may_exceed(self, max_entries: int) -> bool:
        if self.known is None or time.monotonic() - self.at > _COUNT_MAX_AGE:
            return True
        return self.known + self.added > max_entries

    def counted(self, n: int) -> None:
        self.known, self.added, self.at = n, 0, time.monotonic()


class DatabaseCache(ThreadAsyncMixin, NativeKeys, BaseDatabaseCache):
    def __init__(self, table: str, params: dict[str, Any]) -> None:
        options = validate_options(
            f"{type(self).__name__} {table!r}", params.get("OPTIONS") or {}, _SCHEMA
        )
        super().__init__(table, params)
        self._store = _native.open_dummy(options["COMPRESS_MIN_LENGTH"], options["COMPRESS_LEVEL"])
        self._sql: weakref.WeakKeyDictionary[Any, _Sql] = weakref.WeakKeyDictionary()
        self._counts: dict[str, _RowCount] = {}
        self._refresh_key_path()

    # -- plumbing ---------------------------------------------------------------------

    def _connection(self, write: bool) -> tuple[str, Any, _Sql]:
        model = self.cache_model_class
        db = router.db_for_write(model) if write else router.db_for_read(model)
        connection = connections[db]
        sql = self._sql.get(connection)
        if sql is None:
            sql = self._sql[connection] = _build_sql(connection, self._table)
        return db, connection, sql

    @staticmethod
    def _expires(sql: _Sql, connection: Any, raw: Any) -> Any:
        for converter in sql.converters:
            raw = converter(raw, sql.expression, connection)
        return raw

    def _expiry(self, connection: Any, timeout: Any) -> Any:
        """The adapted ``expires`` for a Django timeout (seconds; None for never)."""
        timeout = self.get_backend_timeout(timeout)
        if timeout is None:
            exp = datetime.max
        else:
            exp = datetime.fromtimestamp(timeout, tz=timezone.utc if settings.USE_TZ else None)
        return connection.ops.adapt_datetimefield_value(exp.replace(microsecond=0))

    @staticmethod
    def _now(connection: Any) -> Any:
        return connection.ops.adapt_datetimefield_value(tz_now().replace(microsecond=0))

    def _make_room(self, db: str, connection: Any, sql: _Sql, cursor: Any, adding: int) -> None:
        """Django's cull, when the table may hold more than MAX_ENTRIES rows."""
        count = self._counts.setdefault(db, _RowCount())
        if count.may_exceed(self._max_entries):
            cursor.execute(sql.count)
            num = cursor.fetchone()[0]
            if num > self._max_entries:
                num = self._cull(connection, sql, cursor, num)
            count.counted(num)
        count.added += adding

    def _room(self, db: str, connection: Any, sql: _Sql, cursor: Any) -> int:
        """Rows that may be written before Django would cull again (at least one), once
        the table is culled as Django would cull it now."""
        self._make_room(db, connection, sql, cursor, 0)
        count = self._counts[db]
        return max(1, self._max_entries + 1 - (count.known or 0) - count.added)

    def _after_refusal(self, db: str, sql: _Sql, cursor: Any) -> None:
        """A write failed quietly, as in Django; but Django counts the rows before every
        write, so a table that is gone (or a database that does not answer) raises there.
        Counting now gives that same error, where the cached count would have hidden it."""
        cursor.execute(sql.count)
        self._counts.setdefault(db, _RowCount()).counted(cursor.fetchone()[0])

    def _cull(self, connection: Any, sql: _Sql, cursor: Any, num: int) -> int:
        """Django's cull: expired rows, then 1/CULL_FREQUENCY of the rest in key order,
        again until at most MAX_ENTRIES are left (other writers may have added many rows
        since this instance last counted: Django counts before each row it writes)."""
        if self._cull_frequency == 0:
            cursor.execute(sql.clear)
            return 0
        cursor.execute(sql.cull_expired, [self._now(connection)])
        num -= max(cursor.rowcount, 0)
        while num > self._max_entries:
            cursor.execute(sql.cull_key, [num // self._cull_frequency])
            last = cursor.fetchone()
            if not last:
                break
            cursor.execute(sql.cull_below, [last[0]])
            culled = max(cursor.rowcount, 0)
            if culled == 0:
                break
            num -= culled
        return num

    # -- Django's API -------------------------------------------------------------------

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        made = self._final_key(key, version)
        _, connection, sql = self._connection(write=False)
        with connection.cursor() as cursor:
            cursor.execute(sql.select_one, [made])
            row = cursor.fetchone()
        if row is None:
            return default
        value, expires = row
        if self._expires(sql, connection, expires) < tz_now():
            self._delete_made([made])
            return default
        return self._store.decode_text(connection.ops.process_clob(value))

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        key_map = {self._final_key(k, version): k for k in keys}
        if not key_map:
            return {}
        _, connection, sql = self._connection(write=False)
        made = list(key_map)
        rows: list[Any] = []
        with connection.cursor() as cursor:
            for i in range(0, len(made), _IN_CHUNK):
                chunk = made[i : i + _IN_CHUNK]
                cursor.execute(sql.select_many(len(chunk)), chunk)
                rows.extend(cursor.fetchall())
        result = {}
        expired = []
        now = tz_now()
        decode = self._store.decode_text
        for made_key, value, expires in rows:
            if self._expires(sql, connection, expires) < now:
                expired.append(made_key)
            else:
                result[key_map[made_key]] = decode(connection.ops.process_clob(value))
        if expired:
            self._delete_made(expired)
        return result

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        self._write("set", self._final_key(key, version), value, timeout)

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        return self._write("add", self._final_key(key, version), value, timeout)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        made = self._final_key(key, version)
        db, connection, sql = self._connection(write=True)
        exp = self._expiry(connection, timeout)
        with connection.cursor() as cursor:
            try:
                with _savepoint(connection):
                    cursor.execute(sql.touch, [exp, made, self._now(connection)])
                    return cursor.rowcount > 0
            except DatabaseError:
                self._after_refusal(db, sql, cursor)
                return False

    def _write(self, mode: str, made: str, value: Any, timeout: Any) -> bool:
        text = self._store.encode_text(value)  # a value that cannot be stored raises first
        db, connection, sql = self._connection(write=True)
        exp = self._expiry(connection, timeout)
        with connection.cursor() as cursor:
            self._make_room(db, connection, sql, cursor, 1)
            try:
                with _savepoint(connection):
                    if sql.upsert:
                        if mode == "set":
                            cursor.execute(sql.insert(1), [made, text, exp])
                            return True
                        cursor.execute(sql.insert_add, [made, text, exp, self._now(connection)])
                        return cursor.rowcount > 0
                    return self._write_portably(connection, sql, cursor, mode, made, text, exp)
            except DatabaseError:
                # As Django's: a write that loses a race fails quietly.
                self._after_refusal(db, sql, cursor)
                return False

    def _write_portably(
        self, connection: Any, sql: _Sql, cursor: Any, mode: str, made: str, text: str, exp: Any
    ) -> bool:
        """Databases without INSERT ... ON CONFLICT: update, else insert, atomically."""
        with transaction.atomic(using=connection.alias):
            if mode == "set":
                cursor.execute(sql.update_value, [text, exp, made])
            else:
                cursor.execute(sql.update_expired, [text, exp, made, self._now(connection)])
            if cursor.rowcount > 0:
                return True
            try:
                with transaction.atomic(using=connection.alias):
                    cursor.execute(sql.insert(1), [made, text, exp])
            except IntegrityError:
                return False  # a live row is there (add), or another writer won
            return True

    def set_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        rows = {self._final_key(k, version): self._store.encode_text(v) for k, v in data.items()}
        if not rows:
            return []
        db, connection, sql = self._connection(write=True)
        if not sql.upsert:
            for made, text in rows.items():
                self._write_text(made, text, timeout)
            return []
        exp = self._expiry(connection, timeout)
        # In key order: writers of overlapping keys lock their rows in one order, so two
        # of them never deadlock (PostgreSQL would abort one).
        items = sorted(rows.items())
        refused: list[Any] = []
        keys: dict[str, Any] | None = None
        with connection.cursor() as cursor:
            done = 0
            while done < len(items):
                # As many rows per statement as Django would write before its next cull
                # (one, when the table is full), so culling happens where Django's would.
                chunk = items[done : done + min(self._room(db, connection, sql, cursor),
                                                _IN_CHUNK)]
                done += len(chunk)
                self._counts[db].added += len(chunk)
                try:
                    with _savepoint(connection):
                        params = [p for made, text in chunk for p in (made, text, exp)]
                        cursor.execute(sql.insert(len(chunk)), params)
                except DatabaseError:
                    # Some row was refused: each again on its own, as Django writes them,
                    # so the others are stored and exactly the refused keys are returned.
                    self._after_refusal(db, sql, cursor)
                    if keys is None:
                        keys = {self._final_key(k, version): k for k in data}
                    refused += [keys[made] for made, text in chunk
                                if not self._insert_one(connection, sql, cursor, made, text, exp)]
        return refused

    @staticmethod
    def _insert_one(connection: Any, sql: _Sql, cursor: Any, made: str, text: str,
                    exp: Any) -> bool:
        try:
            with _savepoint(connection):
                cursor.execute(sql.insert(1), [made, text, exp])
        except DatabaseError:
            return False
        return True

    def _write_text(self, made: str, text: str, timeout: Any) -> None:
        db, connection, sql = self._connection(write=True)
        exp = self._expiry(connection, timeout)
        with connection.cursor() as cursor:
            self._make_room(db, connection, sql, cursor, 1)
            try:
                self._write_portably(connection, sql, cursor, "set", made, text, exp)
            except DatabaseError:
                self._after_refusal(db, sql, cursor)

    def delete(self, key: Any, version: int | None = None) -> bool:
        return self._delete_made([self._final_key(key, version)])

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        self._delete_made([self._final_key(k, version) for k in keys])

    def _delete_made(self, made: list[str]) -> bool:
        if not made:
            return False
        _, connection, sql = self._connection(write=True)
        deleted = 0
        with connection.cursor() as cursor:
            for i in range(0, len(made), _IN_CHUNK):
                chunk = made[i : i + _IN_CHUNK]
                cursor.execute(sql.delete_many(len(chunk)), chunk)
                deleted += max(cursor.rowcount, 0)
        return deleted > 0

    def has_key(self, key: Any, version: int | None = None) -> bool:
        made = self._final_key(key, version)
        _, connection, sql = self._connection(write=False)
        now = tz_now().replace(microsecond=0, tzinfo=None)
        with connection.cursor() as cursor:
            cursor.execute(sql.has_key, [made, connection.ops.adapt_datetimefield_value(now)])
            return cursor.fetchone() is not None

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        made = self._final_key(key, version)
        _, connection, sql = self._connection(write=True)
        while True:
            with connection.cursor() as cursor:
                cursor.execute(sql.select_one, [made])
                row = cursor.fetchone()
                if row is None or self._expires(sql, connection, row[1]) < tz_now():
                    raise ValueError("Key '%s' not found" % key)
                old_text = connection.ops.process_clob(row[0])
                new_value = self._store.decode_text(old_text) + delta
                # Committed only if nobody wrote the key since it was read; the expiry stays.
                # A refused write raises, under a savepoint: the caller's transaction stays.
                with _savepoint(connection):
                    cursor.execute(
                        sql.cas_value,
                        [self._store.encode_text(new_value), made, old_text,
                         self._now(connection)],
                    )
                if cursor.rowcount > 0:
                    return new_value

    def clear(self) -> None:
        db, connection, sql = self._connection(write=True)
        with connection.cursor() as cursor:
            cursor.execute(sql.clear)
        self._counts.setdefault(db, _RowCount()).counted(0)
