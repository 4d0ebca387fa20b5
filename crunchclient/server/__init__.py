"""The crunch API as the client sees it: ``Connection`` (one method per endpoint) and the
typed objects that go out and come back. Imports nothing from the layers above."""
