"""Enrichment of customer messages: language, sentiment, intents."""
