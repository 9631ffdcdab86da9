#!/usr/bin/env python3
"""Fails when the repository refers to a path outside itself.

A user's clone has nothing beside it, so code, tests and documents may only point inside the
checkout. Three kinds of reference are refused, in crates/, docs/, scripts/, .ci/, .cargo/,
fixtures/ (documents only), README.md and Cargo.toml:

- a path into `shared/` reached by `../` (the team's spec folder beside the checkout);
- an absolute path to the folders beside the checkout on the team's machines (`/work/shared`,
  `/work/.library`);
- any relative path whose `../` steps climb above the repository's root, resolved from the file's
  own folder and, for files of a crate, from the crate's folder as well (what
  `env!("CARGO_MANIFEST_DIR")` and `#[path]` are relative to).

Usage: standalone.py [ROOT]   (ROOT defaults to the repository holding this script). Prints one
line per reference found, as FILE:LINE: reason, and exits 1 when there is any.
"""

import os
import re
import sys

SCANNED = ["crates", "docs", "scripts", ".ci", ".cargo", "fixtures", "README.md", "Cargo.toml"]
TEXT_SUFFIXES = (".rs", ".md", ".toml", ".py", ".sh", ".sql", ".txt", ".yml", ".yaml", "run")
# A run of `../` not preceded by a dot or a word character (so `.../StructureDefinition` and `a../`
# are not paths).
PARENT_STEPS = re.compile(r"(?<![.\w])((?:\.\./)+)")
SHARED = re.compile(r"\.\./(?:\.\./)*shared\b")
WORK_AREA = re.compile(r"(?<![\w.])/work/(?:shared|\.library)\b")


def files(root):
    for name in SCANNED:
        top = os.path.join(root, name)
        if os.path.isfile(top):
            yield top
            continue
        for folder, dirs, names in os.walk(top):
            dirs[:] = [d for d in dirs if d not in ("target", ".git")]
            for n in sorted(names):
                if name == "fixtures" and not n.endswith(".md"):
                    continue  # the IG's own data files; their text is not ours
                if n.endswith(TEXT_SUFFIXES):
                    yield os.path.join(folder, n)


def bases(root, path):
    """The folders a relative path in `path` may be resolved from."""
    out = [os.path.dirname(path)]
    rel = os.path.relpath(path, root).split(os.sep)
    if len(rel) > 2 and rel[0] == "crates":
        out.append(os.path.join(root, rel[0], rel[1]))
    return out


def outside(root, base, steps):
    target = os.path.normpath(os.path.join(base, steps))
    return os.path.relpath(target, root).startswith("..")


def problems(root):
    root = os.path.abspath(root)
    for path in files(root):
        if os.path.abspath(path) == os.path.abspath(__file__):
            continue  # this script names the patterns it looks for
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (UnicodeDecodeError, OSError):
            continue
        shown = os.path.relpath(path, root)
        for number, line in enumerate(lines, 1):
            if SHARED.search(line):
                yield f"{shown}:{number}: points into the shared folder beside the checkout, which a clone does not have"
                continue
            if WORK_AREA.search(line):
                yield f"{shown}:{number}: an absolute path to a folder beside the checkout"
                continue
            for m in PARENT_STEPS.finditer(line):
                if any(outside(root, b, m.group(1)) for b in bases(root, path)):
                    yield f"{shown}:{number}: `{m.group(1)}` climbs above the repository's root"
                    break


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    found = list(problems(root))
    for p in found:
        print(p)
    if found:
        print(f"{len(found)} reference(s) to paths outside the repository", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
