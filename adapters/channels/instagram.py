"""Instagram messaging (Messenger Platform for Instagram, ``object: "instagram"``).

Facts relied on: same envelope and signature as Messenger (see ``meta.py``); the sender is an
IGSID, the recipient the Instagram professional account id; attachments (image, video, audio,
file, share, story_mention, ig_reel...) carry ``payload.url``; ``messaging_seen`` arrives as
``read: {mid}``; ``is_echo`` and ``is_deleted`` messages are not inbound messages.
"""

from __future__ import annotations

from adapters.channels.meta import MetaMessagingAdapter

ADAPTER = MetaMessagingAdapter("instagram", "instagram")
