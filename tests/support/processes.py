"""Process-tree helpers for tests that check nothing is left running (Linux /proc)."""

from __future__ import annotations

from pathlib import Path


def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        # The command name (field 2) may contain spaces and parentheses: split after it.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(entry.name)):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def children(pid: int) -> set[int]:
    """The processes whose parent is `pid` (not their own children)."""
    return set(_children_by_parent().get(pid, []))


def descendants(pid: int) -> dict[int, str]:
    """Every live process below `pid`, with its command line."""
    children = _children_by_parent()
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            try:
                found[child] = (Path(f"/proc/{child}/cmdline").read_bytes()
                                .replace(b"\0", b" ").decode(errors="replace").strip())
            except OSError:
                continue
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    """True while `pid` runs; a zombie has exited (only its parent's bookkeeping is left)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"
