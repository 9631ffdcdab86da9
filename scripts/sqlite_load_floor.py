#!/usr/bin/env python3
"""The floor of a SQLite bulk load on this machine: how long SQLite alone takes to write the rows
an `atr load` wrote, with no parsing, validation or binding on the way.

It copies every row of a database that `atr load` filled (in the order the load inserted them) into
a new file with atr's schema, in the journal mode asked for, then builds the indexes a load sets
aside (as `atr load` does at its end). The copy runs inside SQLite (`INSERT … SELECT`), so what it
measures is B-tree inserts, page writes and syncs: the part of a load no loader can avoid with
this schema. `resources/s` is the ceiling that leaves for a whole load, whose writer must also do
this work one statement at a time while the input is parsed.

    python3 scripts/sqlite_load_floor.py --source L/atr.db --work DIR [--mode off wal ...]
        [--drop-caches]

Modes:
  off      no journal, no syncs, one transaction: not crash-safe, the lowest any load can go
  wal      WAL, synchronous=NORMAL, one commit per 5,000 resources (the load's batch), checkpoints
           left to the end and timed apart (a load checkpoints on another thread)
  wal-inline   the same with SQLite's own checkpoints inside the commits (every 100,000 pages)
  delete   rollback journal, synchronous=NORMAL, one commit per 5,000 resources

`--drop-caches` (root only) empties the page cache before each mode and then reads the source
file, so every mode starts from the same state.
"""

import argparse
import math
import os
import re
import sqlite3
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIGRATIONS = os.path.join(ROOT, "crates/atr-store/migrations/sqlite")
DEFERRED_RS = os.path.join(ROOT, "crates/atr-store/src/sql/deferred_indexes.rs")
TABLES = ["resource_version", "search_token", "search_string", "search_ref", "group_member"]
BATCH_RESOURCES = 5000


def deferred_indexes():
    """The (name, definition) pairs of `deferred_indexes::DEFERRED`, read from the source."""
    text = open(DEFERRED_RS).read()
    start = text.index("pub(crate) const DEFERRED")
    body = text[start:text.index("];", start)]
    found = re.findall(r'\(\s*"(\w+)",\s*"([^"]+)",?\s*\)', body)
    if not found:
        raise SystemExit(f"no deferred indexes found in {DEFERRED_RS}")
    return found


def schema_without(deferred):
    """The tables and kept indexes of the first migration: the deferred indexes come later."""
    names = {name for name, _ in deferred}
    sql = open(os.path.join(MIGRATIONS, "0001_resources.sql")).read()
    sql = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    kept = []
    for statement in (s.strip() for s in sql.split(";")):
        m = re.match(r"CREATE (?:UNIQUE )?INDEX (\w+)", statement)
        if statement and not (m and m.group(1) in names):
            kept.append(statement)
    return ";\n".join(kept) + ";"


def drop_caches(source):
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")
    with open(source, "rb") as f:
        while f.read(1 << 24):
            pass


def copy_rows(db, mode, resources):
    """Copies every table; returns seconds spent."""
    started = time.monotonic()
    commits = 1 if mode == "off" else max(1, math.ceil(resources / BATCH_RESOURCES))
    if mode == "off":
        db.execute("BEGIN")
    for table in TABLES:
        (top,) = db.execute(f"SELECT coalesce(max(rowid), 0) FROM src.{table}").fetchone()
        per = max(1, math.ceil(top / commits))
        for low in range(0, top, per):
            if mode != "off":
                db.execute("BEGIN")
            db.execute(
                f"INSERT INTO main.{table} SELECT * FROM src.{table} WHERE rowid > ? AND rowid <= ?",
                (low, low + per),
            )
            if mode != "off":
                db.execute("COMMIT")
    if mode == "off":
        db.execute("COMMIT")
    return time.monotonic() - started


def run(mode, source, work, deferred, drop):
    path = os.path.join(work, f"floor-{mode}.db")
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    if drop:
        drop_caches(source)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA page_size = 8192")
    pragmas = {
        "off": ["journal_mode = OFF", "synchronous = OFF"],
        "wal": ["journal_mode = WAL", "synchronous = NORMAL", "wal_autocheckpoint = 0"],
        "wal-inline": ["journal_mode = WAL", "synchronous = NORMAL", "wal_autocheckpoint = 100000"],
        "delete": ["journal_mode = DELETE", "synchronous = NORMAL"],
    }[mode]
    for p in pragmas + ["cache_size = -65536"]:
        db.execute(f"PRAGMA {p}")
    db.executescript(schema_without(deferred))
    db.execute("ATTACH ? AS src", (source,))
    (resources,) = db.execute("SELECT count(*) FROM src.resource_version").fetchone()
    rows = sum(db.execute(f"SELECT count(*) FROM src.{t}").fetchone()[0] for t in TABLES)
    insert = copy_rows(db, mode, resources)
    checkpoint = 0.0
    if mode.startswith("wal"):
        started = time.monotonic()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        checkpoint = time.monotonic() - started
    db.execute("DETACH src")
    started = time.monotonic()
    db.execute("PRAGMA threads = 2")
    db.execute("BEGIN")
    for name, definition in deferred:
        db.execute(f"CREATE INDEX {name} ON {definition}")
    db.execute("COMMIT")
    if mode.startswith("wal"):
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    index = time.monotonic() - started
    db.close()
    size = os.path.getsize(path)
    os.remove(path)
    writer = insert + index
    print(
        f"{mode:<10} {resources} resources, {rows} rows: insert {insert:.1f} s, "
        f"end checkpoint {checkpoint:.1f} s, indexes {index:.1f} s; "
        f"writer {writer:.1f} s = {resources / writer:,.0f} resources/s; {size / 1e9:.2f} GB",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="a database `atr load` filled")
    parser.add_argument("--work", required=True, help="where the copies go (one at a time)")
    parser.add_argument("--mode", nargs="+", default=["off", "wal", "wal-inline", "delete"])
    parser.add_argument("--drop-caches", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    deferred = deferred_indexes()
    print(f"SQLite {sqlite3.sqlite_version}; indexes built at the end: {len(deferred)}")
    for mode in args.mode:
        run(mode, args.source, args.work, deferred, args.drop_caches)


if __name__ == "__main__":
    main()
