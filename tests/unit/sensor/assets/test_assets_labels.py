"""Names and tags people give assets: validation, the store (migration 2), the inventory's labels."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from zw_paths import PCAPS

from sensor.assets.labels import (
    MAX_NAME_CHARS,
    MAX_TAG_CHARS,
    MAX_TAGS_PER_ASSET,
    AssetLabels,
    LabelError,
    check_address,
    check_name,
    check_tags,
)
from sensor.assets.observer import InventoryObserver
from sensor.runtime import SensorConfig, replay
from sensor.store.sqlite import Store, migrations, split_statements


def test_labels_migration_is_version_2_with_portable_sql(tmp_path: Path) -> None:
    found = {v: (name, sql) for v, name, sql in migrations()}
    name, sql = found[2]
    assert name == "asset_labels"
    for statement in split_statements(sql):
        assert "WITHOUT ROWID" not in statement and "AUTOINCREMENT" not in statement
    store = Store(tmp_path / "z.db")
    assert store.schema_version() >= 2
    assert store.labels_revision() == 0
    store.close()


def test_labels_migration_upgrades_a_version_1_file_and_keeps_its_assets(tmp_path: Path) -> None:
    """A store written before labels existed: opening it for writing adds the tables, loses nothing."""
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " applied_at DOUBLE PRECISION NOT NULL)"
    )
    version, name, sql = migrations()[0]
    for statement in split_statements(sql):
        conn.execute(statement)
    conn.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (version, name))
    conn.execute(
        "INSERT INTO assets (ip, first_seen, last_seen, detail) VALUES ('10.0.0.5', 1, 2,"
        ' \'{"ip": "10.0.0.5", "first_seen": 1, "last_seen": 2}\')'
    )
    conn.close()
    reader = Store(db, readonly=True)  # read-only: no labels yet, and no error
    assert reader.get_asset("10.0.0.5")["tags"] == []
    assert reader.load_labels() == {}
    reader.close()
    store = Store(db)
    assert store.schema_version() >= 2
    store.update_labels("10.0.0.5", by="t", tags=["plc"])
    assert store.get_asset("10.0.0.5")["tags"] == ["plc"]
    assert store.count_assets() == 1
    store.close()


def test_update_labels_name_tags_add_remove_and_revision(tmp_path: Path) -> None:
    store = Store(tmp_path / "z.db")
    first = store.update_labels("10.0.0.5", by="alice", name="  Filler PLC ", tags=["line1", "plc"], at=10.0)
    assert first == AssetLabels("10.0.0.5", "Filler PLC", ("line1", "plc"), 10.0, "alice")
    assert store.labels_revision() == 1
    store.update_labels("10.0.0.5", by="bob", add_tags=["safety"], remove_tags=["line1"])
    got = store.get_labels("10.0.0.5")
    assert got is not None and got.name == "Filler PLC" and got.tags == ("plc", "safety")
    assert got.updated_by == "bob"
    store.update_labels("10.0.0.5", by="bob", tags=[])  # replace with nothing: name stays
    kept = store.get_labels("10.0.0.5")
    assert kept is not None and kept.name == "Filler PLC" and kept.tags == ()
    store.update_labels("10.0.0.5", by="bob", name="")  # nothing left: the row goes
    assert store.get_labels("10.0.0.5") is None
    assert store.load_labels() == {}
    assert store.labels_revision() == 4
    store.close()


def test_update_labels_canonical_address_and_refusals(tmp_path: Path) -> None:
    store = Store(tmp_path / "z.db")
    assert store.update_labels("2001:DB8::1", by="t", tags=["x"]).ip == "2001:db8::1"
    with pytest.raises(LabelError):
        store.update_labels("10.0.0.300", by="t", tags=["x"])
    with pytest.raises(LabelError):
        store.update_labels("10.0.0.1", by="t", tags=["has space"])
    with pytest.raises(LabelError):
        store.update_labels("10.0.0.1", by="t", add_tags=[f"t{i}" for i in range(MAX_TAGS_PER_ASSET + 1)])
    store.update_labels("10.0.0.1", by="t", tags=[f"t{i}" for i in range(MAX_TAGS_PER_ASSET)])
    with pytest.raises(LabelError):  # the cap holds for tags added one call at a time too
        store.update_labels("10.0.0.1", by="t", add_tags=["one-more"])
    assert len(store.get_labels("10.0.0.1").tags) == MAX_TAGS_PER_ASSET  # type: ignore[union-attr]
    store.close()


@pytest.mark.parametrize(
    "tag",
    ["", " x", "-lead", "a b", "ü", "x" * (MAX_TAG_CHARS + 1), "a\x00b", "<script>", "a;b", "a'b"],
)
def test_check_tags_refuses_bad_tags(tag: str) -> None:
    with pytest.raises(LabelError):
        check_tags([tag])


def test_check_tags_accepts_words_sorts_and_dedups() -> None:
    assert check_tags(["zone:cell-1", "Line1", "a/b.c_d", "Line1"]) == ("Line1", "a/b.c_d", "zone:cell-1")
    assert check_tags(["x" * MAX_TAG_CHARS]) == ("x" * MAX_TAG_CHARS,)


@pytest.mark.parametrize("name", ["a\nb", "tab\there", "bell\x07", "x" * (MAX_NAME_CHARS + 1), "\u202eevil"])
def test_check_name_refuses_control_characters_and_length(name: str) -> None:
    with pytest.raises(LabelError):
        check_name(name)


def test_check_name_and_address_normalise() -> None:
    assert check_name("  Kessel 3 (Füllstand)  ") == "Kessel 3 (Füllstand)"
    assert check_name("") == ""
    assert check_address(" 10.1.2.3 ") == "10.1.2.3"
    with pytest.raises(LabelError):
        check_address("010.1.2.3")


def test_observer_labels_include_given_name_and_tags_before_the_asset_is_seen(tmp_path: Path) -> None:
    db = tmp_path / "z.db"
    store = Store(db)
    store.update_labels("10.0.0.9", by="t", name="Spare PLC", tags=["cell2"])
    store.close()
    observer = InventoryObserver.open(lambda alert: None, SensorConfig().limits, db)
    assert observer.labels("10.0.0.9") == {"Spare PLC", "cell2"}
    assert observer.labels("10.0.0.10") == set()
    observer.close()


def test_observer_labels_merge_inferred_and_given_and_follow_changes(tmp_path: Path) -> None:
    db = tmp_path / "z.db"
    replay([PCAPS / "modbus-pymodbus-polling.pcap"], SensorConfig(db_path=db))
    store = Store(db)
    store.update_labels("127.0.0.1", by="t", tags=["plc"])
    store.close()
    observer = InventoryObserver.open(lambda alert: None, SensorConfig().limits, db)
    labels = observer.labels("127.0.0.1")
    assert {"plc", "modbus_server", "modbus_client"} <= labels
    writer = Store(db)  # another process (the API) changes the tags while the sensor runs
    writer.update_labels("127.0.0.1", by="t", tags=["line2"])
    writer.close()
    assert "plc" in observer.labels("127.0.0.1")  # not yet: read at the next commit
    observer.commit()
    after = observer.labels("127.0.0.1")
    assert "line2" in after and "plc" not in after
    assert observer.section()["labelled_addresses"] == 1
    observer.close()


def test_sensor_saves_never_overwrite_labels(tmp_path: Path) -> None:
    db = tmp_path / "z.db"
    store = Store(db)
    store.update_labels("127.0.0.1", by="t", name="Loop PLC", tags=["plc"])
    store.close()
    replay([PCAPS / "modbus-pymodbus-polling.pcap"], SensorConfig(db_path=db))
    replay([PCAPS / "modbus-pymodbus-writes-exceptions.pcap"], SensorConfig(db_path=db))
    reader = Store(db, readonly=True)
    row = reader.list_assets(tag="plc")
    assert [r["ip"] for r in row] == ["127.0.0.1"]
    assert row[0]["name"] == "Loop PLC" and row[0]["given_name"] == "Loop PLC" and row[0]["tags"] == ["plc"]
    assert reader.list_assets(tag="nope") == []
    detail = reader.get_asset("127.0.0.1")
    assert detail is not None and detail["labels_updated_by"] == "t" and detail["tags"] == ["plc"]
    reader.close()
