"""On PostgreSQL, refuse UPDATE and DELETE of audit entries in the database itself.

The ORM already refuses them; the trigger also stops raw SQL and other clients. SQLite has
no such guard here: `verify_audit` catches tampering there.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION policy_auditentry_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit entries are append-only (% refused)', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER policy_auditentry_append_only
    BEFORE UPDATE OR DELETE ON policy_auditentry
    FOR EACH ROW EXECUTE FUNCTION policy_auditentry_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS policy_auditentry_append_only ON policy_auditentry;
DROP FUNCTION IF EXISTS policy_auditentry_append_only();
"""


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("policy", "0003_auditentry")]

    operations = [migrations.RunPython(create_trigger, drop_trigger)]
