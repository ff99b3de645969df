"""Process ancestry from /proc, so tests act only on processes they started (a shared machine runs others' too)."""

from __future__ import annotations

from pathlib import Path


def parent_pid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(") ", 1)[1].split()[1])


def descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        pid = parent_pid(pid)
    return False


def descendants(ancestor: int) -> list[int]:
    return [int(e.name) for e in Path("/proc").iterdir()
            if e.name.isdigit() and int(e.name) != ancestor and descends_from(int(e.name), ancestor)]
