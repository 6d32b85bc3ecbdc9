"""The server side: ``runjobs`` → :class:`Launcher` → :class:`Manager` → :class:`Processor`.

Only ``runjobs`` imports this package; web processes never load it.  See
``docs/internals.rst`` for the walk through the chain.
"""
