"""The compute side: ``Worker`` claims datasets and runs their stages; the heartbeat,
the deadline, signals, the records in ``.crunch/`` and the workflow's process."""
