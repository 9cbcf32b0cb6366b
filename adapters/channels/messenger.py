"""Facebook Messenger (Messenger Platform webhooks, ``object: "page"``).

Facts relied on: see ``meta.py`` (shared with Instagram): ``entry[].messaging[]`` events with
PSID ``sender.id``, page ``recipient.id``, ms ``timestamp``; ``message.mid`` is the idempotency
key (statuses: mid + status); ``is_echo`` marks the page's own messages (skipped);
``message_deliveries``/``message_reads`` arrive as ``delivery``/``read`` with a watermark.
"""

from __future__ import annotations

from adapters.channels.meta import MetaMessagingAdapter

ADAPTER = MetaMessagingAdapter("messenger", "page")
