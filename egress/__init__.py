"""The egress: outbound messages delivered to each channel's provider (``parley egress``).

Pure logic first: ``capabilities`` (what each channel can show), ``content`` (the canonical
RichMessage of a MessageSent), ``windows`` (customer-service windows in event time),
``templates`` (per-account templates, validated), ``render`` (render and degrade per channel),
``plan`` (a message -> a send plan or a refusal), ``providers/`` (each provider's request and
how its answers are classified). ``events`` builds the delivery events, ``state`` folds them
(what was already attempted and sent), ``limits`` has the back-off and token buckets. Then the
I/O around them: ``accounts`` (send credentials and templates from the accounts file),
``lanes`` (per-account dispatch), ``runner`` (Kafka in, provider calls, outcomes to Kafka),
``sender`` (HTTP, SMTP, web chat push, access tokens), ``kafka_io``, ``webchat`` (the push hub
the browser widgets connect to) and ``main`` (the process). The providers' emulator (every
provider's API on one local server, for tests, the benchmark and the demo) is ``parley.app.emulator``.
``docs/EGRESS.md`` describes the whole.
"""
