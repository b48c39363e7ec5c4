"""Runs as the app and the CLI share them: the run store (`store`, `schema`), the job queue over it (`queue`), the
processes that train runs (`workers`), the server's settings (`settings`), and a workshop's cells and teacher key
(`classroom`) with its runs pooled per net (`pooling`)."""
