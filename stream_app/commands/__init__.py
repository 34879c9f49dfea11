"""One module per ``hookstream`` subcommand.

Each module defines ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed namespace and returning an exit code.
Heavy imports (torch, faust, kafka) happen inside ``run`` so that ``--help``
stays fast.
"""
