"""Set up Django for a benchmark against a scratch database, so bench scripts share one set-up.

Import this module before anything from Django: it points RELAYADMIN_VAR_DIR at a temporary
directory (secret key, SQLite file and the published relayd policy go there, never to var/).
`scratch_database()` then creates a fresh test database (a temporary SQLite file, or a throwaway
`test_…` database on the server that DATABASE_URL names) and drops it afterwards.
"""

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ["RELAYADMIN_VAR_DIR"] = tempfile.mkdtemp(prefix="relayadmin-bench-")
Path(os.environ["RELAYADMIN_VAR_DIR"], "static").mkdir()  # WhiteNoise warns about a missing STATIC_ROOT
# The real settings, with static files served from the source tree (no collectstatic step needed).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402


@contextmanager
def scratch_database() -> Iterator[None]:
    """Run the block against a fresh, migrated database that is dropped afterwards."""
    if connection.vendor == "sqlite":
        settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = os.path.join(
            os.environ["RELAYADMIN_VAR_DIR"], "bench.sqlite3"
        )
    old_name = connection.creation.create_test_db(verbosity=0)
    try:
        yield
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
