"""Wire compatibility of MemcachedCache with Django's PyLibMCCache and PyMemcacheCache.

Against real memcached servers, with the real pylibmc and pymemcache clients behind
Django's own backends, these tests prove that:

* every value type Django code stores (bytes, str, int of any size, bool, float, None,
  containers, datetimes, instances of user classes) written by either peer is read
  back by ours, and written by ours is read back by either peer, with the same type;
  where a peer cannot round-trip a type itself, ours reads what the peer reads;
* integers written by any of the three are incremented by the others, and the server
  keeps the writer's flags;
* a Django key (KEY_PREFIX, VERSION, non-ASCII text) names the same memcached key in
  all three;
* ours writes exactly the flags and bytes pylibmc and pymemcache use (0 bytes,
  1 pickle, 4 decimal int, 16 UTF-8 text, 8 zlib OR-ed in);
* zlib compression is understood both ways with pylibmc, and what a PyMemcacheCache
  reader makes of a compressed value;
* with several servers, ours and pylibmc send every key to the same server for the
  same distribution settings (ketama, modula);
* ours and PyLibMCCache running side by side on the same servers, as during a rolling
  deploy, see each other's writes, deletes and bulk calls.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import pickle
import zlib
from collections.abc import Callable, Iterator
from typing import Any, Literal

import pylibmc
import pymemcache.exceptions
import pytest
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.memcached import PyLibMCCache as DjPyLibMC
from django.core.cache.backends.memcached import PyMemcacheCache as DjPyMemcache

from django_nativecache.backends.memcached import MemcachedCache
from tests.mcserver import MemcachedServer

Peer = Literal["pylibmc", "pymemcache"]
PEERS: tuple[Peer, ...] = ("pylibmc", "pymemcache")
PROTOCOLS = {"text": False, "binary": True}

# Django's flags, as pylibmc and pymemcache define them.
F_BYTES, F_PICKLE, F_INTEGER, F_LONG, F_ZLIB, F_TEXT = 0, 1, 2, 4, 8, 16

MISSING = object()
PLUS_FIVE = datetime.timezone(datetime.timedelta(hours=5))
BIG = 2**70 + 12345  # beyond 64 bits: no native integer on either side


@dataclasses.dataclass(frozen=True)
class Parcel:
    """A user class: pickled by reference to this module, as Django code stores them."""

    label: str
    weight: float
    tags: tuple[str, ...] = ()


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 7


# -- the values --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    value: Any
    # What every reader gets back when pylibmc is the writer, where pylibmc itself does
    # not keep the type (MISSING: the value itself).
    via_pylibmc: Any = MISSING

    def written_by(self, peer: Peer) -> Any:
        if peer == "pylibmc" and self.via_pylibmc is not MISSING:
            return self.via_pylibmc
        return self.value


CASES = [
    Case("bytes", b"raw \x00 bytes"),
    Case("bytes-empty", b""),
    Case("bytes-not-utf8", b"\xff\xfe\x80\xc3("),
    Case("str-ascii", "hello world"),
    Case("str-non-ascii", "héllo wörld ✓ 日本 🐍"),
    Case("str-empty", ""),
    Case("int-small", 42),
    Case("int-zero", 0),
    Case("int-negative", -987654321),
    Case("int-64-max", 2**63 - 1),
    Case("int-64-min", -(2**63)),
    Case("int-big", BIG),
    Case("int-big-negative", -BIG),
    # pylibmc writes a bool as an integer (flag 2, b"1" / b"0"), so that every reader,
    # pylibmc included, gets 1 / 0 back. pymemcache and ours pickle it: True stays True.
    Case("bool-true", True, via_pylibmc=1),
    Case("bool-false", False, via_pylibmc=0),
    # The same for other int subclasses: pylibmc writes the plain decimal number (flag
    # 4), pymemcache and ours pickle the instance.
    Case("int-subclass", Level.HIGH, via_pylibmc=7),
    Case("float", 3.141592653589793),
    Case("float-negative-zero", -0.0),
    Case("none", None),
    Case("dict", {"a": 1, "b": [1, 2, {"c": "ü"}], 3: (None, b"x")}),
    Case("list", [1, "two", 3.0, b"four", None, [5]]),
    Case("tuple", (1, ("nested",), frozenset({2, 3}))),
    Case("datetime", datetime.datetime(2024, 2, 29, 13, 37, 42, 123456)),
    Case("datetime-aware", datetime.datetime(2024, 2, 29, 13, 37, tzinfo=PLUS_FIVE)),
    Case("date", datetime.date(1999, 12, 31)),
    Case("custom-class", Parcel("box", 1.25, ("fragile", "ü"))),
]


def assert_same(got: Any, expected: Any) -> None:
    """Equal and of the same type (1 == True == 1.0 would hide a codec mismatch)."""
    assert type(got) is type(expected), (
        f"{got!r} is a {type(got).__name__}, not a {type(expected).__name__}"
    )
    assert got == expected
    if isinstance(expected, float):
        # -0.0 == 0.0: compare the sign too.
        assert repr(got) == repr(expected)


# -- servers and clients -----------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[MemcachedServer]:
    s = MemcachedServer().start()
    yield s
    s.cleanup()


@pytest.fixture(scope="module")
def three_servers() -> Iterator[list[MemcachedServer]]:
    started: list[MemcachedServer] = []
    try:
        for _ in range(3):
            started.append(MemcachedServer().start())
        yield started
    finally:
        for s in started:
            s.cleanup()


class Clients:
    """Builds the three backends on the same LOCATION; closes what it built."""

    def __init__(self) -> None:
        self._made: list[BaseCache] = []

    def ours(
        self, location: str | list[str], *, binary: bool = False, **params: Any
    ) -> MemcachedCache:
        options = dict(params.pop("OPTIONS", {}))
        if binary:
            options["binary"] = True
        cache = MemcachedCache(location, {**params, "OPTIONS": options})
        self._made.append(cache)
        return cache

    def peer(self, name: Peer, location: str | list[str], **params: Any) -> BaseCache:
        cls = DjPyLibMC if name == "pylibmc" else DjPyMemcache
        cache = cls(location, params)
        self._made.append(cache)
        return cache

    def pylibmc(self, location: str | list[str], **params: Any) -> DjPyLibMC:
        cache = self.peer("pylibmc", location, **params)
        assert isinstance(cache, DjPyLibMC)
        return cache

    def close(self) -> None:
        for cache in self._made:
            if isinstance(cache, MemcachedCache):
                cache.disconnect_all()
            elif "_cache" in vars(cache):  # Django builds the client on first use
                vars(cache)["_cache"].disconnect_all()


@pytest.fixture
def clients(server: MemcachedServer) -> Iterator[Clients]:
    server.flush()
    made = Clients()
    yield made
    made.close()


@pytest.fixture(params=list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def binary(request: pytest.FixtureRequest) -> bool:
    """Ours on the text and on the binary protocol (the peers stay on text)."""
    return bool(request.param)


# -- 1. every value type, both directions ---------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.parametrize("peer", PEERS)
def test_ours_reads_what_the_peer_wrote(
    clients: Clients, server: MemcachedServer, peer: Peer, case: Case, binary: bool
) -> None:
    theirs = clients.peer(peer, server.location)
    ours = clients.ours(server.location, binary=binary)
    theirs.set("value", case.value)
    expected = case.written_by(peer)
    # The peer's own reading is the reference ours must match.
    assert_same(theirs.get("value", MISSING), expected)
    assert_same(ours.get("value", MISSING), expected)
    assert_same(ours.get_many(["value"])["value"], expected)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.parametrize("peer", PEERS)
def test_peer_reads_what_ours_wrote(
    clients: Clients, server: MemcachedServer, peer: Peer, case: Case, binary: bool
) -> None:
    theirs = clients.peer(peer, server.location)
    ours = clients.ours(server.location, binary=binary)
    ours.set("value", case.value)
    # Ours pickles bool and int subclasses, so even pylibmc gets the exact value back.
    assert_same(theirs.get("value", MISSING), case.value)
    assert_same(theirs.get_many(["value"])["value"], case.value)
    assert_same(ours.get("value", MISSING), case.value)


def test_text_that_is_not_utf8_is_pickled_and_read_by_both_peers(
    clients: Clients, server: MemcachedServer, binary: bool
) -> None:
    lone_surrogate = "half a pair: \ud800"
    ours = clients.ours(server.location, binary=binary)
    ours.set("text", lone_surrogate)
    flags, data = server.raw_get(":1:text") or (None, b"")
    assert flags == F_PICKLE
    assert pickle.loads(data) == lone_surrogate
    for peer in PEERS:
        theirs = clients.peer(peer, server.location)
        assert_same(theirs.get("text"), lone_surrogate)
        # Neither peer can store such a string at all.
        with pytest.raises(UnicodeEncodeError):
            theirs.set("text", lone_surrogate)


# -- 2. incr / decr across clients -----------------------------------------------------


PEER_INT_FLAGS = {"pylibmc": F_LONG, "pymemcache": F_INTEGER}


@pytest.mark.parametrize("peer", PEERS)
def test_ours_increments_the_peers_integers(
    clients: Clients, server: MemcachedServer, peer: Peer, binary: bool
) -> None:
    theirs = clients.peer(peer, server.location)
    ours = clients.ours(server.location, binary=binary)
    theirs.set("counter", 41)
    assert server.raw_get(":1:counter") == (PEER_INT_FLAGS[peer], b"41")
    assert ours.incr("counter") == 42
    assert ours.incr("counter", 958) == 1000
    # The server decrements in place and pads the shorter number with spaces.
    assert ours.decr("counter", 993) == 7
    assert server.raw_get(":1:counter") == (PEER_INT_FLAGS[peer], b"7   ")
    assert_same(theirs.get("counter"), 7)
    assert_same(ours.get("counter"), 7)
    assert ours.incr("counter", -2) == 5
    assert_same(theirs.get("counter"), 5)


@pytest.mark.parametrize("peer", PEERS)
def test_the_peer_increments_our_integers(
    clients: Clients, server: MemcachedServer, peer: Peer, binary: bool
) -> None:
    theirs = clients.peer(peer, server.location)
    ours = clients.ours(server.location, binary=binary)
    ours.set("counter", 99)
    assert theirs.incr("counter") == 100
    assert theirs.incr("counter", 900) == 1000
    assert theirs.decr("counter", 998) == 2
    # The server keeps the flags ours wrote; the padded digits still read as an int.
    assert server.raw_get(":1:counter") == (F_LONG, b"2   ")
    assert_same(ours.get("counter"), 2)
    assert_same(theirs.get("counter"), 2)
    assert ours.incr("counter", 40) == 42
    assert_same(theirs.get("counter"), 42)


@pytest.mark.parametrize("start", [BIG, -5], ids=["beyond-64-bits", "negative"])
@pytest.mark.parametrize("peer", PEERS)
def test_ours_increments_integers_the_server_cannot(
    clients: Clients, server: MemcachedServer, peer: Peer, start: int, binary: bool
) -> None:
    # memcached's incr takes only unsigned 64-bit numbers. The peers pass the server's
    # refusal on; ours adds in Python and writes back with cas, in the shared format.
    theirs = clients.peer(peer, server.location)
    ours = clients.ours(server.location, binary=binary)
    theirs.set("counter", start)
    refused = pylibmc.Error if peer == "pylibmc" else pymemcache.exceptions.MemcacheError
    with pytest.raises(refused):
        theirs.incr("counter")
    assert ours.incr("counter", 3) == start + 3
    assert server.raw_get(":1:counter") == (F_LONG, str(start + 3).encode())
    assert_same(theirs.get("counter"), start + 3)


# -- 3. keys ---------------------------------------------------------------------------


KEY_CASES = [
    pytest.param({}, "plain", None, ":1:plain", id="defaults"),
    pytest.param(
        {"KEY_PREFIX": "site", "VERSION": 7}, "user:42", None, "site:7:user:42",
        id="prefix-version",
    ),
    pytest.param(
        {"KEY_PREFIX": "préfixe"}, "clé-ünïcode-✓-日本", None, "préfixe:1:clé-ünïcode-✓-日本",
        id="non-ascii",
    ),
    pytest.param({"KEY_PREFIX": "p"}, "versioned", 3, "p:3:versioned", id="explicit-version"),
]


@pytest.mark.parametrize(("params", "key", "version", "raw_key"), KEY_CASES)
def test_a_django_key_names_the_same_memcached_key(
    clients: Clients,
    server: MemcachedServer,
    params: dict[str, Any],
    key: str,
    version: int | None,
    raw_key: str,
) -> None:
    caches: dict[str, BaseCache] = {
        "pylibmc": clients.peer("pylibmc", server.location, **params),
        "pymemcache": clients.peer("pymemcache", server.location, **params),
        "ours": clients.ours(server.location, **params),
    }
    for writer_name, writer in caches.items():
        server.flush()
        assert writer.make_key(key, version=version) == raw_key
        writer.set(key, f"from {writer_name}", version=version)
        assert server.raw_get(raw_key) == (F_TEXT, f"from {writer_name}".encode())
        for reader in caches.values():
            assert reader.get(key, version=version) == f"from {writer_name}"
            assert reader.get(key, version=(version or params.get("VERSION", 1)) + 1) is None
        caches["ours"].delete(key, version=version)
        assert server.raw_get(raw_key) is None
        for reader in caches.values():
            assert reader.get(key, MISSING, version=version) is MISSING


# -- 4. the bytes ours puts on the wire --------------------------------------------------


def _pickled(value: Any) -> tuple[int, bytes]:
    return F_PICKLE, pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


RAW_CASES = [
    pytest.param(b"", (F_BYTES, b""), id="bytes-empty"),
    pytest.param(b"\xff\x00raw", (F_BYTES, b"\xff\x00raw"), id="bytes"),
    pytest.param("", (F_TEXT, b""), id="str-empty"),
    pytest.param("héllo ✓", (F_TEXT, "héllo ✓".encode()), id="str"),
    pytest.param("x" * 5000, (F_TEXT, b"x" * 5000), id="str-long-uncompressed"),
    pytest.param(0, (F_LONG, b"0"), id="int-zero"),
    pytest.param(-17, (F_LONG, b"-17"), id="int-negative"),
    pytest.param(2**63 - 1, (F_LONG, b"9223372036854775807"), id="int-64-max"),
    pytest.param(BIG, (F_LONG, str(BIG).encode()), id="int-big"),
    pytest.param(True, _pickled(True), id="bool"),
    pytest.param(Level.LOW, _pickled(Level.LOW), id="int-subclass"),
    pytest.param(1.5, _pickled(1.5), id="float"),
    pytest.param(None, _pickled(None), id="none"),
    pytest.param({"a": [1, 2]}, _pickled({"a": [1, 2]}), id="dict"),
    pytest.param(Parcel("p", 2.0), _pickled(Parcel("p", 2.0)), id="custom-class"),
]


@pytest.mark.parametrize(("value", "raw"), RAW_CASES)
def test_ours_writes_the_shared_flags_and_bytes(
    clients: Clients, server: MemcachedServer, value: Any, raw: tuple[int, bytes], binary: bool
) -> None:
    ours = clients.ours(server.location, binary=binary)
    ours.set("value", value)
    assert server.raw_get(":1:value") == raw
    ours.set_many({"many": value})
    assert server.raw_get(":1:many") == raw


# -- 5. compression ----------------------------------------------------------------------


LONG_TEXT = "compressible text, ünïcode included. " * 100
LONG_BYTES = bytes(range(256)) * 20
LONG_OBJECT = {"rows": [{"id": i, "name": f"row {i}"} for i in range(200)]}

COMPRESSED_CASES = [
    pytest.param(LONG_TEXT, F_TEXT, LONG_TEXT.encode(), id="str"),
    pytest.param(LONG_BYTES, F_BYTES, LONG_BYTES, id="bytes"),
    pytest.param(
        LONG_OBJECT, F_PICKLE, pickle.dumps(LONG_OBJECT, pickle.HIGHEST_PROTOCOL), id="pickled"
    ),
]


@pytest.mark.parametrize(("value", "base_flags", "payload"), COMPRESSED_CASES)
def test_ours_compresses_long_values_and_pylibmc_reads_them(
    clients: Clients,
    server: MemcachedServer,
    value: Any,
    base_flags: int,
    payload: bytes,
    binary: bool,
) -> None:
    ours = clients.ours(
        server.location,
        binary=binary,
        OPTIONS={"COMPRESS_MIN_LENGTH": 100, "COMPRESS_LEVEL": 9},
    )
    theirs = clients.pylibmc(server.location)
    ours.set("long", value)
    raw = server.raw_get(":1:long")
    assert raw is not None
    flags, data = raw
    assert flags == base_flags | F_ZLIB
    assert len(data) < len(payload)
    assert zlib.decompress(data) == payload
    assert_same(theirs.get("long"), value)
    assert_same(ours.get("long"), value)
    # The same client leaves short values as they are.
    ours.set("short", "tiny")
    assert server.raw_get(":1:short") == (F_TEXT, b"tiny")
    assert theirs.get("short") == "tiny"


def test_ours_never_compresses_integers(clients: Clients, server: MemcachedServer) -> None:
    # Neither does pylibmc: the server's incr needs the decimal digits as they are.
    ours = clients.ours(server.location, OPTIONS={"COMPRESS_MIN_LENGTH": 10})
    huge = 10**150
    ours.set("huge", huge)
    assert server.raw_get(":1:huge") == (F_LONG, str(huge).encode())


@pytest.mark.parametrize(("value", "base_flags", "payload"), COMPRESSED_CASES)
def test_ours_reads_values_pylibmc_compressed(
    clients: Clients,
    server: MemcachedServer,
    value: Any,
    base_flags: int,
    payload: bytes,
    binary: bool,
) -> None:
    theirs = clients.pylibmc(server.location)
    ours = clients.ours(server.location, binary=binary)
    # Django's PyLibMCCache has no compression setting: ask its pylibmc client directly.
    key = theirs.make_and_validate_key("long")
    theirs._cache.set(key, value, min_compress_len=1)
    raw = server.raw_get(key)
    assert raw is not None
    assert raw[0] == base_flags | F_ZLIB
    assert zlib.decompress(raw[1]) == payload
    assert_same(ours.get("long"), value)
    assert_same(ours.get_many(["long"])["long"], value)


@pytest.mark.parametrize(("value", "base_flags", "payload"), COMPRESSED_CASES)
def test_pymemcache_cannot_read_compressed_values(
    clients: Clients,
    server: MemcachedServer,
    value: Any,
    base_flags: int,
    payload: bytes,
) -> None:
    # Django's PyMemcacheCache uses pymemcache's pickle_serde, which ignores flag 8.
    # Compression (COMPRESS_MIN_LENGTH > 0, or pylibmc's min_compress_len) must stay
    # off while any PyMemcacheCache reader remains on the same servers: it raises on
    # compressed text, hands back the zlib stream for compressed bytes, and turns a
    # compressed pickle into None (not even the default) without an error.
    ours = clients.ours(server.location, OPTIONS={"COMPRESS_MIN_LENGTH": 100})
    theirs = clients.peer("pymemcache", server.location)
    ours.set("long", value)
    raw = server.raw_get(":1:long")
    assert raw is not None and raw[0] == base_flags | F_ZLIB
    if base_flags == F_TEXT:
        with pytest.raises(UnicodeDecodeError):
            theirs.get("long")
    elif base_flags == F_BYTES:
        assert theirs.get("long") == raw[1] != value
    else:
        assert theirs.get("long", MISSING) is None


# -- 6. several servers: the same key on the same server ---------------------------------


N_KEYS = 200


def _home(servers: list[MemcachedServer], raw_key: str) -> int:
    """Index of the one server that holds raw_key."""
    holders = [i for i, s in enumerate(servers) if s.raw_get(raw_key) is not None]
    assert len(holders) == 1, f"{raw_key!r} is on servers {holders}"
    return holders[0]


def _written_mapping(writer: BaseCache, servers: list[MemcachedServer]) -> dict[str, int]:
    """Writes N_KEYS keys with writer; which server each one landed on."""
    for s in servers:
        s.flush()
    keys = [f"key-{i}" for i in range(N_KEYS)]
    assert writer.set_many({k: f"value {k}" for k in keys}) == []
    return {k: _home(servers, f":1:{k}") for k in keys}


# (pylibmc's behaviors, ours' behaviors) that must send every key to the same server.
SAME_DISTRIBUTION = [
    pytest.param({"ketama": True}, {}, id="pylibmc-ketama/ours-default"),
    pytest.param({"ketama": True}, {"ketama": True}, id="ketama"),
    pytest.param({"ketama": True, "hash": "md5"}, {"hash": "md5"}, id="ketama-md5"),
    pytest.param({}, {"ketama": False}, id="pylibmc-default/ours-ketama-off"),
    pytest.param({}, {"distribution": "modula"}, id="pylibmc-default/ours-modula"),
    pytest.param(
        {},
        {"ketama": False, "distribution": "modula", "hash": "default"},
        id="pylibmc-default/ours-modula-default-hash",
    ),
    pytest.param({"hash": "fnv1a_32"}, {"ketama": False, "hash": "fnv1a_32"}, id="modula-fnv1a_32"),
]


@pytest.mark.parametrize(("pylibmc_behaviors", "our_behaviors"), SAME_DISTRIBUTION)
def test_several_servers_same_key_same_server(
    three_servers: list[MemcachedServer],
    pylibmc_behaviors: dict[str, Any],
    our_behaviors: dict[str, Any],
) -> None:
    locations = [s.location for s in three_servers]
    made = Clients()
    try:
        theirs = made.pylibmc(locations, OPTIONS={"behaviors": pylibmc_behaviors})
        ours = made.ours(locations, OPTIONS={"behaviors": our_behaviors})
        # pylibmc writes: ours finds every key, and names the server it is on.
        mapping = _written_mapping(theirs, three_servers)
        assert set(mapping.values()) == {0, 1, 2}
        assert ours.get_many(list(mapping)) == {k: f"value {k}" for k in mapping}
        for key, index in mapping.items():
            assert ours.server_for(key) == three_servers[index].address
        # Ours writes: the same mapping, and pylibmc finds every key.
        assert _written_mapping(ours, three_servers) == mapping
        assert theirs.get_many(list(mapping)) == {k: f"value {k}" for k in mapping}
    finally:
        made.close()


def test_ketama_and_modula_mappings_differ(three_servers: list[MemcachedServer]) -> None:
    # Makes the test above meaningful: the distribution settings do decide where a key
    # goes, so a reader with the wrong ones misses keys.
    locations = [s.location for s in three_servers]
    made = Clients()
    try:
        modula = _written_mapping(
            made.ours(locations, OPTIONS={"behaviors": {"ketama": False}}), three_servers
        )
        ketama = _written_mapping(made.ours(locations), three_servers)
        assert sum(ketama[k] != modula[k] for k in ketama) > N_KEYS // 10
        # What ours wrote with its default (ketama), pylibmc's default (modula) only
        # partly finds.
        found = made.pylibmc(locations).get_many(list(ketama))
        assert 0 < len(found) < N_KEYS
    finally:
        made.close()


def test_pymemcache_spreads_keys_its_own_way(three_servers: list[MemcachedServer]) -> None:
    # PyMemcacheCache with several servers uses pymemcache's HashClient (rendezvous
    # hashing), which no libmemcached distribution reproduces: with more than one
    # server, ours (like PyLibMCCache) misses part of what it wrote, and the reverse.
    locations = [s.location for s in three_servers]
    made = Clients()
    try:
        theirs = made.peer("pymemcache", locations)
        mapping = _written_mapping(theirs, three_servers)
        for behaviors in ({}, {"ketama": False}):
            ours = made.ours(locations, OPTIONS={"behaviors": behaviors})
            assert len(ours.get_many(list(mapping))) < N_KEYS
    finally:
        made.close()


# -- 7. rolling deploy: both backends live on the same servers ---------------------------


ROLLING_VALUES: list[Callable[[int], Any]] = [
    lambda n: n,
    lambda n: -n * 1000,
    lambda n: f"text {n} ✓",
    lambda n: f"bytes {n}".encode(),
    lambda n: {"round": n, "items": list(range(n % 5))},
    lambda n: Parcel(f"parcel {n}", n / 4),
    lambda n: None if n % 2 else (n, "tuple"),
    lambda n: datetime.datetime(2024, 1, 1) + datetime.timedelta(minutes=n),
]


@pytest.mark.parametrize("topology", ["one-server", "three-servers"])
def test_rolling_deploy_side_by_side(
    server: MemcachedServer,
    three_servers: list[MemcachedServer],
    topology: str,
    binary: bool,
) -> None:
    made = Clients()
    try:
        if topology == "one-server":
            server.flush()
            theirs: BaseCache = made.pylibmc(server.location, KEY_PREFIX="site")
            ours = made.ours(server.location, binary=binary, KEY_PREFIX="site")
        else:
            for s in three_servers:
                s.flush()
            locations = [s.location for s in three_servers]
            theirs = made.pylibmc(
                locations, KEY_PREFIX="site", OPTIONS={"behaviors": {"ketama": True}}
            )
            ours = made.ours(locations, binary=binary, KEY_PREFIX="site")
        keys = [f"shared-{i}" for i in range(24)]
        expected: dict[str, Any] = {}
        for n in range(12):
            writer, reader = (ours, theirs) if n % 2 == 0 else (theirs, ours)
            # Each round rewrites a different half of the keys, with values of each type.
            batch = {
                k: ROLLING_VALUES[(i + n) % len(ROLLING_VALUES)](n + i)
                for i, k in enumerate(keys)
                if (i + n) % 2 == 0
            }
            assert writer.set_many(batch) == []
            expected.update(batch)
            assert reader.get_many(keys) == expected
            assert writer.get_many(keys) == expected
            # A single write from the reader's side, seen by the writer at once.
            reader.set(keys[n], f"single {n}")
            expected[keys[n]] = f"single {n}"
            assert writer.get(keys[n]) == f"single {n}"
            # Deletes on one side are deletes on the other.
            gone = keys[(n * 5) % len(keys)]
            reader.delete_many([gone])
            expected.pop(gone, None)
            assert writer.get(gone, MISSING) is MISSING
            assert writer.get_many(keys) == expected
            # add() sees the other side's value as present.
            present = next(iter(expected))
            assert not writer.add(present, "must not replace")
            assert reader.get(present) == expected[present]
        assert ours.get_many(keys) == theirs.get_many(keys) == expected
    finally:
        made.close()
