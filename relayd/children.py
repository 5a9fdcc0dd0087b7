"""Start relayd's helper processes (python -m relayd.<module>) so that they find this very relayd package."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

# The directory holding the relayd package, so a child imports the same code even when relayd
# was started from elsewhere (python -m relayd with PYTHONPATH, or a test run).
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


async def spawn(module: str, *args: str, **options) -> asyncio.subprocess.Process:
    """Start python -m module args in the same interpreter; options go to asyncio.create_subprocess_exec."""
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": _PACKAGE_ROOT + (os.pathsep + path if path else "")}
    return await asyncio.create_subprocess_exec(sys.executable, "-m", module, *args, env=env, **options)
