"""Content hashes that identify models, data and run specs."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

# What a repr says of the process, not of the object: a function's address ("<function f at
# 0x7f...>") and the folder a task's code was loaded from ("<class '/checkout/tasks/squad/utils.X'>",
# lm-eval names a task's utils module by its path)
_PROCESS_DETAILS = ((re.compile(r" at 0x[0-9a-fA-F]+>"), ">"), (re.compile(r"<class '[^'<>]*/"), "<class '"))


def canonical_json(obj: Any) -> str:
    """An object's canonical JSON: sorted keys, no whitespace, str() for the rest."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def json_sha256(obj: Any) -> str:
    """sha256 of an object's canonical JSON."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def config_sha256(config: Any) -> str:
    """json_sha256 of a task config, the same in every process and checkout: the addresses and
    folders that reprs of its functions and classes carry are left out (a config without them
    hashes as json_sha256 does)."""
    text = canonical_json(config)
    for pattern, replacement in _PROCESS_DETAILS:
        text = pattern.sub(replacement, text)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: str | os.PathLike, memo_dir: Path | None = None) -> str:
    """sha256 of a file; memoised on (path, size, mtime) in memo_dir so big weights hash once."""
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    memo_file = memo_dir / "file-hashes.json" if memo_dir else None
    memo: dict[str, str] = {}
    if memo_file and memo_file.exists():
        try:
            memo = json.loads(memo_file.read_text())
        except (OSError, ValueError):
            memo = {}  # a corrupt memo only costs a re-hash
        if key in memo:
            return memo[key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    sha = digest.hexdigest()
    if memo_file:
        memo[key] = sha
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_file.with_name(f"{memo_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo, indent=0))
        os.replace(tmp, memo_file)
    return sha
