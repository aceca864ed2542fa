#!/usr/bin/env python3
"""Checks the module DAG: every edge between ztunnel/ modules must be one the table in
docs/ARCHITECTURE.md ("Modules and build targets", the "depends on" column) allows.

Edges are read from two places, and both are checked:
  - #include "ztunnel/<module>/..." in each module's sources and headers;
  - zt_* libraries named in each module's CMakeLists.txt (target_link_libraries).
Tests (*_test.cc and test helpers) may include what their module may include, whatever
those modules may include in turn (a test builds the objects it drives), and io/ (its
test helpers: LoopThread, UniqueFd).
The table itself must be acyclic and must name every folder under ztunnel/.

Exit 0 when everything holds; 1 with one line per violation otherwise.
`--self-test` checks that a forbidden edge is caught, on a copy of the tree.
"""
import argparse
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

INCLUDE = re.compile(r'^\s*#\s*include\s+"ztunnel/([a-z0-9_]+)/[^"]+"', re.M)
LINK = re.compile(r"target_link_libraries\(\s*([A-Za-z0-9_\-]+)([^)]*)\)", re.S)
ROW = re.compile(r"^\|\s*`([a-z0-9_]+)/`\s*\|([^|]*)\|[^|]*\|([^|]*)\|\s*$")
TARGET = re.compile(r"`(zt_[a-z0-9_]+)`")
TEST_HELPERS = {"testing.h", "test_util.h"}


def is_test_file(path: pathlib.Path) -> bool:
    name = path.name
    return name.endswith("_test.cc") or name in TEST_HELPERS or name.endswith("_test_util.h")


def parse_table(architecture: pathlib.Path):
    """Returns ({folder: set of allowed folders or None for 'everything'}, {target: folder})."""
    text = architecture.read_text()
    start = text.find("## Modules and build targets")
    if start < 0:
        raise SystemExit(f"{architecture}: no 'Modules and build targets' section")
    rows = {}
    targets = {}
    for line in text[start:].splitlines()[1:]:
        if line.startswith("## "):
            break
        m = ROW.match(line)
        if not m:
            continue
        folder, target_cell, deps_cell = m.group(1), m.group(2), m.group(3)
        for t in TARGET.findall(target_cell):
            targets[t] = folder
        rows[folder] = None if "all of the above" in deps_cell else set(TARGET.findall(deps_cell))
    allowed = {}
    for folder, deps in rows.items():
        if deps is None:
            allowed[folder] = None
            continue
        unknown = sorted(d for d in deps if d not in targets)
        if unknown:
            raise SystemExit(f"{architecture}: {folder}/ depends on unknown target(s) {unknown}")
        allowed[folder] = {targets[d] for d in deps} - {folder}
    return allowed, targets


def find_cycle(allowed):
    """Returns one cycle of the table's graph as a list of folders, or None."""
    state = {}
    stack = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(allowed.get(node) or ()):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(n for n, deps in allowed.items() if deps is not None):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def closure(allowed, folder):
    seen = set()
    todo = list(allowed.get(folder) or ())
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        todo.extend(allowed.get(f) or ())
    return seen


def check(root: pathlib.Path):
    problems = []
    allowed, targets = parse_table(root / "docs" / "ARCHITECTURE.md")
    cycle = find_cycle(allowed)
    if cycle:
        problems.append("docs/ARCHITECTURE.md: the module table has a cycle: " + " -> ".join(cycle))
    src = root / "ztunnel"
    folders = sorted(p.name for p in src.iterdir() if p.is_dir())
    for folder in folders:
        if folder not in allowed:
            problems.append(f"ztunnel/{folder}/ has no row in docs/ARCHITECTURE.md's module table")
    edges = 0
    for folder in folders:
        if folder not in allowed or allowed[folder] is None:
            continue
        direct = allowed[folder]
        for_tests = direct | closure(allowed, folder) | {"io"}
        for path in sorted((src / folder).rglob("*")):
            if path.suffix not in (".h", ".cc") or not path.is_file():
                continue
            ok = for_tests if is_test_file(path) else direct
            for m in INCLUDE.finditer(path.read_text(errors="replace")):
                dep = m.group(1)
                edges += 1
                if dep == folder or dep in ok:
                    continue
                line = path.read_text(errors="replace")[: m.start()].count("\n") + 1
                what = "a test may include" if is_test_file(path) else "it may depend on"
                problems.append(
                    f"{path.relative_to(root)}:{line}: includes ztunnel/{dep}/, but "
                    f"docs/ARCHITECTURE.md lets {folder}/ depend only on "
                    f"{sorted(ok) or 'nothing'} ({what})")
        cmake = src / folder / "CMakeLists.txt"
        if not cmake.exists():
            continue
        text = re.sub(r"#[^\n]*", "", cmake.read_text())
        for m in LINK.finditer(text):
            target, libs = m.group(1), m.group(2)
            if targets.get(target) != folder:
                continue  # a test or an executable of the folder: checked through its sources
            for lib in re.findall(r"\bzt_[a-z0-9_]+\b", libs):
                dep = targets.get(lib)
                if dep is None:
                    problems.append(f"{cmake.relative_to(root)}: {target} links {lib}, "
                                    "which no row of the module table names")
                elif dep != folder and dep not in direct:
                    problems.append(
                        f"{cmake.relative_to(root)}: {target} links {lib} ({dep}/), but "
                        f"docs/ARCHITECTURE.md lets {folder}/ depend only on {sorted(direct)}")
    return problems, edges


def self_test(root: pathlib.Path) -> int:
    """A forbidden include and a forbidden link must each be reported."""
    with tempfile.TemporaryDirectory(prefix="zt-modules-") as tmp:
        copy = pathlib.Path(tmp)
        shutil.copytree(root / "docs", copy / "docs")
        shutil.copytree(root / "ztunnel", copy / "ztunnel")
        problems, _ = check(copy)
        if problems:
            print("self-test: the tree itself fails:\n  " + "\n  ".join(problems))
            return 1
        session = copy / "ztunnel" / "tls" / "session.cc"
        session.write_text('#include "ztunnel/proxy/worker.h"\n' + session.read_text())
        cmake = copy / "ztunnel" / "state" / "CMakeLists.txt"
        cmake.write_text(cmake.read_text().replace(
            "target_link_libraries(zt_state PRIVATE", "target_link_libraries(zt_state PRIVATE zt_io"))
        out = subprocess.run([sys.executable, __file__, "--root", str(copy)],
                             capture_output=True, text=True)
        want = ["ztunnel/tls/session.cc:1: includes ztunnel/proxy/",
                "zt_state links zt_io (io/)"]
        missing = [w for w in want if w not in out.stdout]
        if out.returncode != 1 or missing:
            print(f"self-test: expected exit 1 naming {missing or want}; got {out.returncode}:\n"
                  + out.stdout + out.stderr)
            return 1
    print("self-test: a forbidden include and a forbidden link are both reported")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=pathlib.Path(__file__).resolve().parent.parent,
                        type=pathlib.Path)
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    if args.self_test:
        return self_test(args.root)
    problems, edges = check(args.root)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} module boundary violation(s)")
        return 1
    print(f"module DAG ok: {edges} cross-file includes checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
