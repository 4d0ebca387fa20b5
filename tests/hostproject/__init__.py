"""A Django project that is not the testproject: it imports crunch and crunchclient as
any lab's project would, and runs the README's "Using crunch from Python" (example.py)."""
