"""The command line, the outermost layer: ``starloom run|validate|nodes|node|schema|demo|cache|edit``.

Nothing imports it. A new command is a ``cmd_*`` function and its sub-parser in :mod:`.main`.
"""
