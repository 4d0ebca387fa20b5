"""A Django project that is not the testproject: it imports crunch and crunchclient as
any lab's project would, and runs the "Using crunch from Python" code of
docs/how-to/host-project.md (example.py)."""
