"""What the client knows before it talks to the server: Django's settings for a
standalone client, the options of a command, the secrets to keep out of logs, and the
workflow kinds it can run. Imports nothing from the layers above (see setup.cfg)."""
