"""Loaded by a qcluster that a fault test starts (SCHEDULING_EXTRA_JOB_MODULES): the real
data-archival job with a small batch (ARCHIVAL_TEST_BATCH rows), so a few hundred old rows
make several batches, each with its own checkpoint. No job of its own."""
from __future__ import annotations

import os

from scheduling.jobs import data_archival as archival

archival.BATCH_SIZE = int(os.environ.get("ARCHIVAL_TEST_BATCH", str(archival.BATCH_SIZE)))

JOBS: list = []
