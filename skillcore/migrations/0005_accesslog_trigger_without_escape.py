"""The access trail's trigger without any escape a session can open.

0002's function let TRUNCATE through when the session said ``skillcore.allow_truncate = on``;
any role can set a custom setting, so the application's own connection could empty the
trail. This function refuses TRUNCATE and UPDATE always. DELETE passes only for the
retention purge, and only for rows the DATABASE's clock says are more than 7 years old:
``skillcore.access_log_purge_before`` (set by skillcore.services.access_log_purge) must
also name the row as due, but a session choosing a recent date gains nothing, because the
row must be older than both that date and ``now() - 7 years``.

The function pins its search_path: a role that can create objects in some schema could
otherwise put its own ``now()`` (or ``<`` operator) ahead of pg_catalog in the
session's search_path and move the 7-year line.

What is left to the roles (docs/deployment.md, "Two database roles"): the table's owner
and a superuser can still disable or drop the trigger, so the application must not connect
as either. Test databases disable only the TRUNCATE trigger, as their owner, for the test
runner's flush (tests/conftest.py); production's trigger has no switch.
"""
from django.db import migrations

FORWARD = r"""
CREATE OR REPLACE FUNCTION skillcore_accesslog_append_only() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    purge_before timestamptz;
BEGIN
    IF TG_OP = 'DELETE' THEN
        purge_before := NULLIF(current_setting('skillcore.access_log_purge_before', true), '')::timestamptz;
        -- now() is the transaction's start on the server's clock: nothing a session sets
        -- moves it. The setting only narrows what the purge may remove, never widens it.
        IF purge_before IS NOT NULL
           AND OLD.at < purge_before
           AND OLD.at < now() - interval '7 years' THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'skillcore_accesslog is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("skillcore", "0004_storedevent_occurred_index")]
    # Reverting keeps this function: going back a migration must not reopen the escape
    # (0002's reverse still drops the triggers and the function altogether).
    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
