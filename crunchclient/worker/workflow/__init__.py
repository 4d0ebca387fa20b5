"""Running the workflow's process: relaying its output and hashing what it writes."""
