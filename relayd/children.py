"""Start relayd's helper processes (python -m relayd.<module>) so that they find this very relayd package."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

# The directory holding the relayd package, so a child imports the same code even when relayd
# was started from elsewhere (python -m relayd with PYTHONPATH, or a test run).
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


async def spawn(module: str, *args: str, **options: Any) -> asyncio.subprocess.Process:
    """Start python -m module args in the same interpreter; options go to asyncio.create_subprocess_exec."""
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": _PACKAGE_ROOT + (os.pathsep + path if path else "")}
    return await asyncio.create_subprocess_exec(sys.executable, "-m", module, *args, env=env, **options)


def pipes(process: asyncio.subprocess.Process) -> tuple[asyncio.StreamWriter, asyncio.StreamReader]:
    """Return the stdin and stdout of a process spawned with both as pipes."""
    if process.stdin is None or process.stdout is None:
        raise ValueError("the process was spawned without stdin and stdout pipes")
    return process.stdin, process.stdout
