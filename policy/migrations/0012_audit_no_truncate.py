"""On PostgreSQL, refuse TRUNCATE of the audit log too (issue 11, finding 4).

TRUNCATE fires no row triggers, so 0004's append-only trigger did not stop it. The statement
trigger reuses 0004's function, which refuses whatever operation fired it. A table owner can
still drop the triggers: run the app as a role that does not own the tables (docs/audit.md).
"""

from django.db import migrations

CREATE = """
CREATE TRIGGER policy_auditentry_no_truncate
    BEFORE TRUNCATE ON policy_auditentry
    FOR EACH STATEMENT EXECUTE FUNCTION policy_auditentry_append_only();
"""
DROP = "DROP TRIGGER IF EXISTS policy_auditentry_no_truncate ON policy_auditentry;"


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("policy", "0011_audit_actor_text_hmac")]

    operations = [migrations.RunPython(create_trigger, drop_trigger)]
