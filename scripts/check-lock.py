#!/usr/bin/env python3
"""Check that the running Python's packages are exactly those of the lock file, and that the lock still
matches pyproject.toml. `make venv` runs it with .venv's Python after installing the lock:

    .venv/bin/python scripts/check-lock.py requirements.lock

1. Every `name==version` line of the lock must be installed at that version, and nothing else may be
   installed except pip (the installer, pinned in the Makefile) and the project itself (editable).
2. The lock's direct dependencies (pip-compile's `# via <project> (pyproject.toml)` notes) must be the
   names in pyproject.toml's `dependencies` plus its `test` extra: a dependency added to or dropped from
   pyproject.toml without `make lock` is reported. Whether the locked versions fit pyproject.toml's
   ranges is left to `pip check`, which the Makefile runs next.

Exit status 1 with one line per difference; standard library only.
"""
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("test",)
TOOLS = {"pip"}


def norm(name: str) -> str:
    """PEP 503 normalised name: `ruamel.yaml`, `Ruamel_Yaml` and `ruamel-yaml` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def req_name(requirement: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not m:
        raise SystemExit(f"check-lock: cannot read a package name in {requirement!r}")
    return norm(m.group(1))


def read_lock(path: Path, project: str) -> tuple[dict[str, str], set[str]]:
    """({name: version} of every pin, names whose `via` notes include the project's pyproject.toml)."""
    pins: dict[str, str] = {}
    direct: set[str] = set()
    last = None
    for line in path.read_text().splitlines():
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if m:
            last = norm(m.group(1))
            if last in pins:
                raise SystemExit(f"check-lock: {path.name} pins {last} twice")
            pins[last] = m.group(2)
        elif last and (m := re.match(r"\s+#\s+(?:via\s+)?(\S+) \(pyproject\.toml\)", line)):
            if norm(m.group(1)) == project:
                direct.add(last)
        elif line.strip() and not line.startswith(("#", " ")):
            last = None  # an option line (--index-url ...) ends the previous pin's notes
    return pins, direct


def installed() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:  # a half-removed package can leave a dist-info without metadata
            out.setdefault(norm(name), []).append(dist.version)
    return out


def main() -> int:
    lock = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "requirements.lock"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    project = norm(pyproject["name"])
    wanted = {req_name(r) for r in pyproject.get("dependencies", [])}
    for extra in EXTRAS:
        wanted |= {req_name(r) for r in pyproject.get("optional-dependencies", {}).get(extra, [])}

    pins, direct = read_lock(lock, project)
    have = installed()
    problems = []
    for name in sorted(wanted - direct):
        problems.append(f"stale lock: {name} is in pyproject.toml but not a direct dependency in {lock.name}"
                        " (run `make lock`)")
    for name in sorted(direct - wanted):
        problems.append(f"stale lock: {name} is a direct dependency in {lock.name} but no longer in "
                        "pyproject.toml (run `make lock`)")
    for name, version in sorted(pins.items()):
        got = have.get(name)
        if not got:
            problems.append(f"missing: {name}=={version} is locked but not installed")
        elif got != [version]:
            problems.append(f"version differs: {name} installed {', '.join(got)}, locked {version}")
    for name in sorted(set(have) - set(pins) - TOOLS - {project}):
        problems.append(f"not in the lock: {name}=={', '.join(have[name])} is installed")
    if project not in have:
        problems.append(f"missing: the project {project} itself is not installed")

    if problems:
        print(f"check-lock: {sys.prefix} does not match {lock.name}:", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        if any(not p.startswith("stale lock") for p in problems):
            print("  (a stray or changed package: rebuild with `rm -rf .venv && make venv`)", file=sys.stderr)
        return 1
    print(f"check-lock: {sys.prefix} holds exactly the {len(pins)} packages of {lock.name} "
          f"(plus {', '.join(sorted(TOOLS))} and the project {project}); its {len(direct)} direct "
          "dependencies are those of pyproject.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
