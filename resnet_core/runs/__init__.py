"""Runs as the app and the CLI share them: the run store (`store`, `schema`, its database and migrations:
`database`, `migrate`, `legacy`, `copy`), the job queue over it (`admission`, `dispatch`, `control`), the one
function that runs every job (`executor`) with the only writer of a job's records (`recorder`) and its lease
(`lease`), how jobs come to execute (`launchers`, `job`), the server's settings (`settings`), and a workshop's cells
and teacher key (`classroom`) with its runs pooled per net (`pooling`)."""
