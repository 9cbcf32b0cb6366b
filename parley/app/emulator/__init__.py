"""Provider API emulators for tests, benchmarks and the demo (never used by a deployment).

``providers``: every channel's send API on one HTTP port (Graph API, Twilio, Telegram, LINE, Viber,
WeChat, RBM, web chat push), with faults and rate limits on demand; ``smtp``: an SMTP server;
``receipts``: delivery and read receipts sent back to the ingress as each provider signs them.
"""
