"""Message templates per account: their definition (from the accounts file) and validation (pure).

A template is named, has a language, a category (utility, marketing, authentication) and a
number of body parameters ``{{1}}..{{n}}``; ``body`` is its text (used to degrade it on channels
without templates and to show it to agents), ``content_sid`` (Twilio) or ``template_id``
(WeChat) name it at the provider. A template call is checked before anything is sent: the name
and language must be configured for the account and the parameters must be exactly those the
template takes, none empty.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PLACEHOLDER = re.compile(r"\{\{(\d+)\}\}")


@dataclass(frozen=True)
class Template:
    name: str
    language: str = "en"
    category: str = "utility"
    parameters: int = 0
    body: str = ""
    provider_id: str | None = None  # Twilio ContentSid, WeChat template_id

    def fill(self, params: list[str]) -> str:
        """The body with its parameters in place."""
        return _PLACEHOLDER.sub(lambda m: params[int(m.group(1)) - 1] if int(m.group(1)) <= len(params)
                                else m.group(0), self.body)


class TemplateError(ValueError):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def names(templates: tuple[Template, ...]) -> list[str]:
    return sorted({f"{t.name} ({t.language})" for t in templates})


def validate(templates: tuple[Template, ...], name: str, language: str | None, params: list[str]) -> Template:
    """The configured template a call names, or ``TemplateError`` saying what is wrong."""
    same = [t for t in templates if t.name == name]
    if not same:
        known = ", ".join(names(templates)) or "none"
        raise TemplateError("template_unknown",
                            f"template {name!r} is not configured for this account (configured: {known})")
    chosen = next((t for t in same if t.language == (language or t.language)), None)
    if chosen is None:
        langs = ", ".join(sorted(t.language for t in same))
        raise TemplateError("template_language", f"template {name!r} has no language {language!r} (has: {langs})")
    if len(params) != chosen.parameters:
        raise TemplateError("template_parameters", f"template {name!r} takes {chosen.parameters} parameter(s), "
                                                   f"{len(params)} given")
    empty = [i + 1 for i, p in enumerate(params) if not str(p).strip()]
    if empty:
        raise TemplateError("template_parameters", f"template {name!r}: parameter(s) {empty} are empty")
    return chosen
