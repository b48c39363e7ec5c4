"""Runs as the app and the CLI share them: the run store (`store`, `schema`), the job queue over it (`queue`), the
processes that train runs (`workers`), and the server's settings (`settings`)."""
