"""What the server and the client must agree on, in one place both import.

Plain values only (no Django import): the standalone client imports this module too.
"""

from __future__ import annotations

LEASE_SECONDS = 300
"""Seconds a claim lives without a heartbeat: long enough to survive short outages."""

RECORDS = ".crunch"
"""Folder of crunch's own records inside each dataset's folder."""

WORKFLOW_LOG = "workflow.log"
"""The workflow's output (stdout and stderr, secrets masked), shown on the dataset's page."""
SETUP_CHECKSUMS = "setup_md5_checksums.json"
"""{relative path: MD5} of the files the dataset had when Setup finished."""
UPLOAD_CHECKSUMS = "upload_md5_checksums.json"
"""{relative path: MD5} of the files the dataset had when Upload finished."""
DELETED = "deleted.txt"
"""The files the workflow deleted, one a line (they stay in storage)."""
PARTIAL_MARK = ".crunch-partial-"
"""In the name of a file the client is still writing: never a result, never offered by a
page, removed by the dataset's next run."""
RESULTS_RECORD = "results.json"
"""What the workflow reports ($CRUNCH_RESULTS): a flat JSON object, sent with the Upload
Success and stored typed by the server (docs/how-it-works/results.md)."""
RESULTS_MAX_BYTES = 64 * 1024  # of the results file, and of the results as compact JSON
RESULTS_MAX_KEYS = 200
RESULT_KEY_MAX = 64  # characters of a result key
RESULT_KEY = rf"[A-Za-z_][A-Za-z0-9_]{{0,{RESULT_KEY_MAX - 1}}}"
"""A result key: an identifier, so that it is a column of every export."""
RESULT_RESERVED = frozenset({"dataset", "state", "slug"})  # the table's own columns
RESULT_TEXT_MAX = 1000  # characters of a text result
RESULT_TEXT_BYTES = 2000  # of a text in UTF-8: PostgreSQL indexes no entry past ~2,700 bytes
INT64 = (-(2**63), 2**63 - 1)  # the integers a result (and an attribute) may hold
DATASET_RECORD = "dataset.json"
PROJECT_RECORD = "project.json"
"""The dataset and project as the server sent them with the claim."""


def record_path(name: str) -> str:
    """A record's path relative to the dataset's folder: ``.crunch/workflow.log``."""
    return f"{RECORDS}/{name}"
