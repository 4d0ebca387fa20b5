"""The domain logic: plain functions the API, the admin, the pages and other projects call."""
