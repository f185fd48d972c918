"""Models and migrations agree: a model change without its migration fails here, not in a
district's deploy (where `migrate` would silently leave the column out)."""
from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_no_model_change_is_missing_a_migration():
    out = StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    except SystemExit as exit_:  # --check exits 1 when a migration would be written
        raise AssertionError(f"a model change has no migration:\n{out.getvalue()}") from exit_
