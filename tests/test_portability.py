"""The checkout is self-contained: no tracked file points at a path outside the repository.

A test, script or document that reads a folder beside the clone, or someone's home directory,
works on one machine only. Every tracked text file is scanned for absolute paths under a
filesystem root (other than the few system paths the tests and CI really use), for Windows and
home-relative paths, for relative paths that climb to something the checkout does not hold, and
for `Path(__file__).parents[N]` reaching above the repository.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Top-level folders of Linux, macOS and common mounts. A leading "/" followed by anything else
# is most likely an HTTP route (`/v1/chat/completions`), which is not a filesystem reference.
FILESYSTEM_ROOTS = (
    "afs", "bin", "boot", "cygdrive", "data", "dev", "etc", "gpfs", "home", "lib", "lib64",
    "media", "mnt", "net", "nix", "opt", "private", "proc", "root", "run", "sbin", "scratch",
    "shared", "snap", "srv", "sys", "tmp", "Users", "usr", "var", "Volumes", "work", "workspace",
    "workspaces",
)  # fmt: skip

# System paths the tests, benchmarks and CI really use; an entry also allows what lies under it.
ALLOWED_ABSOLUTE = (
    "/dev/null",  # shell redirections in .ci/run
    "/etc/nginx",  # Debian's nginx configuration, for the nginx test
    "/etc/postgresql",  # Debian's PostgreSQL clusters, which .ci/run starts
    "/proc",  # CPU and memory readings of the benchmarks and the emulator's load check
    "/tmp",  # throwaway folders
    "/usr/bin/chromium",  # Debian's Chromium, for the browser tests
    "/usr/bin/env",  # shebang lines
    "/usr/sbin/nginx",  # Debian's nginx binary
)

# Climbing relative paths that are data, not references (each with the test that needs it).
ALLOWED_RELATIVE = (
    "../etc/passwd",  # test_grok_client: an asset path that tries to escape the assets host
)

PATH_TAIL = r"[^\s\"'`()<>\[\]{},;|]*"  # a path runs to the next blank, quote or bracket
ABSOLUTE = re.compile(
    r"(?<![\w.:/~$-])/(?:" + "|".join(FILESYSTEM_ROOTS) + r")(?![\w.-])(?:/" + PATH_TAIL + ")?"
)
WINDOWS = re.compile(r"\b[A-Za-z]:[\\/]+(?:Users|home|Documents and Settings)\b", re.IGNORECASE)
HOME_RELATIVE = re.compile(r"(?<![\w.~/-])~[\w.-]*/")
CLIMBING = re.compile(r"(?<![\w./-])(?:\.\./)+" + PATH_TAIL + r"|(?<![\w./-])\.\.(?=[\"'`\s]|$)")
FILE_PARENTS = re.compile(
    r"Path\(__file__\)(?:\.resolve\(\)|\.absolute\(\))?(?:\.parents\[(\d+)\]|((?:\.parent\b)+))"
)

SKIPPED_DIRS = {".git", ".venv", "__pycache__", "instance", "node_modules"}
# Third-party files copied as published by their pinned vendor scripts (scripts/): minified
# grammars and bundles hold regex literals and relative strings that are no paths of ours.
VENDORED = "grokproxy/static/vendor/"


def _allowed_absolute(path: str) -> bool:
    path = path.rstrip(".:")
    return any(path == entry or path.startswith(entry + "/") for entry in ALLOWED_ABSOLUTE)


def _climbs_out(rel_file: str, path: str, files: set[str]) -> bool:
    """True unless the climbing path, read from the file's folder, names a file in the checkout."""
    if path.rstrip(".:") in ALLOWED_RELATIVE:
        return False
    target = os.path.normpath(PurePosixPath(rel_file).parent / path.rstrip(":"))
    if target == ".." or target.startswith("../"):
        return True
    if target == ".":  # the repository's top folder
        return False
    return not (target in files or any(f.startswith(target.rstrip("/") + "/") for f in files))


def outside_references(rel_file: str, text: str, files: set[str]) -> list[str]:
    """`line: path` for each reference in `text` (the file at `rel_file`) leaving the checkout."""
    depth = len(PurePosixPath(rel_file).parts)  # parents[depth] is the repository's parent
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        hits = [m.group(0) for m in ABSOLUTE.finditer(line) if not _allowed_absolute(m.group(0))]
        hits += [m.group(0) for m in WINDOWS.finditer(line)]
        hits += [m.group(0) for m in HOME_RELATIVE.finditer(line)]
        hits += [
            m.group(0) for m in CLIMBING.finditer(line) if _climbs_out(rel_file, m.group(0), files)
        ]
        for m in FILE_PARENTS.finditer(line):
            index = int(m.group(1)) if m.group(1) is not None else m.group(2).count(".parent") - 1
            if index >= depth:
                hits.append(m.group(0))
        found += [f"{number}: {hit}" for hit in hits]
    return found


def checkout_files(root: Path) -> list[str]:
    """The repository's tracked files (its whole tree, minus caches, outside a git checkout)."""
    try:
        listing = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        found = []
        for folder, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")]
            found += [str(Path(folder, n).relative_to(root)) for n in names]
        return sorted(found)
    return sorted(name for name in listing.decode().split("\0") if name)


def read_text_file(path: Path) -> str | None:
    """The file's text, or None for a binary file."""
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


def scan(root: Path) -> dict[str, list[str]]:
    """Every file under `root` that refers outside it, with its offending lines."""
    names = checkout_files(root)
    files = set(names)
    problems = {}
    for name in names:
        path = root / name
        if name.startswith(VENDORED):
            continue
        if not path.is_file():  # deleted in the work tree but still in the index
            continue
        text = read_text_file(path)
        if text is None:
            continue
        hits = outside_references(name, text, files)
        if hits:
            problems[name] = hits
    return problems


def test_no_tracked_file_refers_outside_the_repository():
    problems = scan(ROOT)
    report = "\n".join(f"{name}:{hit}" for name, hits in problems.items() for hit in hits)
    assert not problems, f"paths outside the repository:\n{report}"


def test_the_scan_covers_tests_code_scripts_and_docs():
    names = set(checkout_files(ROOT))
    for expected in ("README.md", ".ci/run", "tests/conftest.py", "grokproxy/__init__.py"):
        assert expected in names
    assert any(n.startswith("tests/fixtures/upstream/") for n in names)


def _abs(*parts: str) -> str:
    # Built at run time, so this file does not itself hold the paths it must reject.
    return "/" + "/".join(parts)


FILES = {"README.md", "docs/benchmarks.md", "tests/conftest.py", "tests/fixtures/upstream/a.json"}


@pytest.mark.parametrize(
    ("rel_file", "line"),
    [
        ("tests/test_x.py", f'SAMPLES = Path("{_abs("work", "shared", "upstream-samples")}")'),
        ("docs/x.md", f"see {_abs('home', 'alice', 'notes.md')}"),
        ("README.md", f"open `{_abs('Users', 'bob', 'grokproxy')}`"),
        (".ci/run", f"cp {_abs('root', 'keys')} ."),
        (".ci/run", f"mount {_abs('mnt', 'data')}"),
        ("bench/run.py", f'open("{_abs("etc", "shadow")}")'),
        ("tests/test_x.py", f'"{_abs("usr", "local", "bin", "chromium")}"'),
        ("tests/test_x.py", 'Path("' + "/".join(["..", "shared", "spec", "api.md"]) + '")'),
        ("docs/x.md", "[spec](" + "/".join(["..", "..", "shared", "spec", "api.md"]) + ")"),
        ("tests/test_x.py", "Path(__file__).resolve()" + ".parents[2]" + ' / "shared"'),
        ("tests/test_x.py", "Path(__file__).parent.parent" + ".parent"),
        ("docs/x.md", "C:" + "\\Users\\carol\\grokproxy"),
        ("README.md", "cp ~" + "/grokproxy.env ."),
        ("README.md", "cd .." + " && ls"),
    ],
)
def test_a_path_outside_the_repository_is_reported(rel_file, line):
    assert outside_references(rel_file, line, FILES)


@pytest.mark.parametrize(
    ("rel_file", "line"),
    [
        (".ci/run", "#!/usr/bin/env bash"),
        (".ci/run", "command -v chromium >/dev/null 2>&1"),
        (".ci/run", "for version in $(ls /etc/postgresql); do"),
        ("bench/run.py", 'Path(f"/proc/{pid}/stat").read_text()'),
        ("tests/test_x.py", 'out = "/tmp/grokproxy-test.sock"'),
        ("tests/test_x.py", 'requests.post(f"{url}/v1/chat/completions")'),
        ("tests/test_x.py", '"https://grok.com/rest/app-chat/conversations/new"'),
        ("tests/test_x.py", 'fetch_asset(TOKEN, "../etc/passwd")'),
        ("docs/benchmarks.md", "[the README](../README.md)"),
        (".ci/run", 'cd "$(dirname "$0")/.."'),
        ("tests/conftest.py", 'os.path.join(os.path.dirname(__file__), "..")'),
        ("tests/conftest.py", 'Path(__file__).resolve().parent / "fixtures" / "upstream"'),
        ("tests/conftest.py", "Path(__file__).resolve().parent.parent"),
        ("tests/conftest.py", "Path(__file__).resolve().parents[1]"),
        ("grokproxy/x.py", "a/home/b relative path inside the repository"),
    ],
)
def test_repository_and_allowed_system_paths_pass(rel_file, line):
    assert outside_references(rel_file, line, FILES) == []
