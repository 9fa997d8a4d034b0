"""A party's exception is that party's error reply, never the server's crash, and only its category leaves
the party.

Flower's engines already turn an exception in a ``ClientApp`` into an error reply, but with the exception's
text -- under Ray its whole traceback: the party's file paths, the source line that failed (which may name
its private data file), its host. The server treats that text as hostile input and records it in
``metrics.jsonl``. :func:`contain_party_errors` (a Flower mod, outermost in :func:`.client_app.make_client_app`)
answers instead with the exception's class name only and logs the details where the party runs; the
in-process engine (:mod:`.inprocess`) does the same for a ``ClientApp`` without the mod, so one party's bug
or a poisoned operator ends that party's reply, not the federation.
"""

from __future__ import annotations

import logging

from flwr.app import Context, Error, Message
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.constant import ErrorCode

logger = logging.getLogger(__name__)


def error_category(error: BaseException) -> str:
    """What the server learns of a party's failure: the exception's class, nothing of its text."""
    return f"{type(error).__name__} (details in the party's log)"


def error_reply(message: Message, error: Exception) -> Message:
    """The error reply to ``message`` for ``error``, logged in full here (at the party)."""
    logger.error("the %s handler failed", message.metadata.message_type, exc_info=error)
    return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=error_category(error)), reply_to=message)


def contain_party_errors(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """A Flower mod: the wrapped app's reply, or its exception as an error reply of its category."""
    try:
        return call_next(message, context)
    except Exception as error:  # noqa: BLE001 - any failure of the party is its reply, whatever it is
        return error_reply(message, error)
