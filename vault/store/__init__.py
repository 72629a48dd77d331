"""The repository layer: SQLite settings and migrations (:mod:`.db`) and the queries of the tables
more than one domain writes (:mod:`.clients`, :mod:`.records`, :mod:`.outbox`). Functions take an
open connection, so callers choose the transaction; nothing here authorizes or audits."""
