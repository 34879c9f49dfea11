"""Errors of the command line and the broker connection, and the exit codes they map to.

``hookstream`` exits with

====  ==============================================================================
0     success
1     failure: an input could not be used (the others still ran), a bad config file or
      checkpoint, any other error hookstream reports on purpose
2     usage: an unknown flag, a missing argument, a flag value out of range (argparse)
3     the Kafka broker cannot be reached (nothing listens at the bootstrap address, or
      the connection fails); retry once it is up
130   interrupted (Ctrl-C)
====  ==============================================================================
"""

from __future__ import annotations

from models.errors import HookstreamError, InputError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_BROKER_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


class UsageError(InputError):
    """A command-line argument is wrong; the message names the flag. Exit code 2."""


class BrokerUnreachableError(HookstreamError):
    """No bootstrap server of the Kafka cluster answers. Exit code 3: start it, or fix the address."""


def exit_code(exc: BaseException) -> int:
    """The exit code for an exception that reached the command line."""
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    if isinstance(exc, BrokerUnreachableError):
        return EXIT_BROKER_UNREACHABLE
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_FAILURE
