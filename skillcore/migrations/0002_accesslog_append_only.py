"""On PostgreSQL the access trail refuses UPDATE and DELETE, whoever connects.

The one exception is the retention purge: a DELETE of rows older than the statutory
7 years, allowed only inside a transaction that set ``skillcore.access_log_purge_before``
(see skillcore.services.access_log_purge).
"""
from django.db import migrations

FORWARD = r"""
CREATE OR REPLACE FUNCTION skillcore_accesslog_append_only() RETURNS trigger AS $$
DECLARE
    purge_before timestamptz;
BEGIN
    IF TG_OP = 'TRUNCATE' AND current_setting('skillcore.allow_truncate', true) = 'on' THEN
        -- Only test databases set this (tests/conftest.py): Django's test runner empties
        -- tables with TRUNCATE between transactional tests.
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        purge_before := NULLIF(current_setting('skillcore.access_log_purge_before', true), '')::timestamptz;
        IF purge_before IS NOT NULL
           AND purge_before <= now() - interval '7 years'
           AND OLD.at < purge_before THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'skillcore_accesslog is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER skillcore_accesslog_append_only
    BEFORE UPDATE OR DELETE ON skillcore_accesslog
    FOR EACH ROW EXECUTE FUNCTION skillcore_accesslog_append_only();

CREATE TRIGGER skillcore_accesslog_no_truncate
    BEFORE TRUNCATE ON skillcore_accesslog
    FOR EACH STATEMENT EXECUTE FUNCTION skillcore_accesslog_append_only();
"""

BACKWARD = r"""
DROP TRIGGER IF EXISTS skillcore_accesslog_no_truncate ON skillcore_accesslog;
DROP TRIGGER IF EXISTS skillcore_accesslog_append_only ON skillcore_accesslog;
DROP FUNCTION IF EXISTS skillcore_accesslog_append_only();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("skillcore", "0001_initial")]
    operations = [migrations.RunPython(forward, backward)]
