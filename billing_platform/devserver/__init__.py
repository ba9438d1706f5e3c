"""The development launcher behind `make run` and `make test`: finds or starts PostgreSQL and
Redis, writes local secrets, runs the server or the checks. Not part of the running application:
nothing imports it (an import-linter contract checks that)."""
