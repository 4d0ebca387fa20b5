"""Every statement crunch writes by hand, in one place.

``queries.sql`` holds them, each named and described; ``queries`` loads them by name,
``rows`` runs them and loads their rows through ``Model.from_db``, ``statements`` gives
each one a typed function, and ``bulk`` writes registration's batches. Everything else in
crunch goes through the ORM.
"""
