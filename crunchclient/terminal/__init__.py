"""The commands a person runs at a terminal: add, import, ls, status, why, files,
download, logs, retry, project, release, and ``loop --dry-run``."""
