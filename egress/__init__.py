"""The egress: outbound messages delivered to each channel's provider (``parley egress``).

Pure logic first: ``capabilities`` (what each channel can show), ``content`` (the canonical
RichMessage of a MessageSent), ``windows`` (customer-service windows in event time),
``templates`` (per-account templates, validated), ``render`` (render and degrade per channel),
``plan`` (a message -> a send plan or a refusal), ``providers/`` (each provider's request and
how its answers are classified). Then the I/O around them: ``accounts`` (send credentials from
the accounts file), ``limits`` (per-account rate limits, retry back-off), ``state`` (what was
already attempted and sent, read back from ``parley.outbound``), ``runner`` (Kafka in, HTTP out,
outcomes to Kafka), ``webchat`` (the push hub the browser widgets connect to) and
``emulator`` (every provider's API on one local server, for tests, the benchmark and the demo).
"""
