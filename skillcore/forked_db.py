"""Database connections across ``fork()``: a child process never uses its parent's.

django-q2's cluster forks (multiprocessing's "fork" context): the sentinel forks the
workers, the monitor and the pusher, and forks a replacement whenever one dies. gunicorn
forks its workers the same way. Django's psycopg pool lives in a class attribute
(``DatabaseWrapper._connection_pools``), so a child forked after its parent opened the pool
inherits the pool object with its idle connections: the same sockets, hence the same server
sessions, as the parent's. Two processes speaking on one session interleave their protocol
messages ("lost synchronization with server", ``insufficient data in "D" message``). The
pool's worker threads (which open, check and reset connections) do not survive the fork
either, so a child's copy of the pool cannot even grow: once its inherited connection is
discarded, every ``getconn`` waits for a thread that does not exist (PoolTimeout).
django-q2 calls ``connections.close_all()`` before forking, but with a pool that only puts
the connection back into the parent's pool, still open.

``install()`` registers an ``os.register_at_fork(after_in_child=...)`` hook that, in the
child only, forgets the inherited pools and connections: Django then builds a new pool (its
own threads, its own sessions) on the child's first query. The inherited objects are NOT
closed: closing would send the server a Terminate message on the parent's socket and end
the parent's session. They are kept referenced for the child's lifetime so that no
garbage-collection path (psycopg's ``PGconn.__del__`` skips ``finish()`` after a fork, but
the pool's ``__del__`` does more) ever touches them; the child only holds copies of file
descriptors, which cost nothing and close when it exits.
"""
from __future__ import annotations

import os

# What each forked child inherited and must never use nor close (see above).
_inherited: list[object] = []
_installed = False


def forget_inherited_connections() -> None:
    """In a just-forked child: drop every inherited pool and open connection, unclosed."""
    from django.db import connections
    from django.db.backends.postgresql.base import DatabaseWrapper

    # Subclasses (django-prometheus's instrumented backend) share the base class's dict.
    pools = DatabaseWrapper._connection_pools
    _inherited.extend(pools.values())
    pools.clear()
    for wrapper in connections.all(initialized_only=True):
        if wrapper.connection is not None:
            _inherited.append(wrapper.connection)
            # As if closed: the next query opens (or checks out) the child's own.
            wrapper.connection = None


def install() -> None:
    """Register the after-fork hook once per process (children inherit registrations)."""
    global _installed
    if _installed:
        return
    _installed = True
    os.register_at_fork(after_in_child=forget_inherited_connections)
