"""Each provider's send API: the requests a plan becomes, and how its answers are classified.

Pure: ``requests(account, plan, event) -> [Call]`` and ``classify(status, headers, body) ->
Result``. The runner does the HTTP (or SMTP, or the web chat push) and the access tokens
(``egress/tokens.py``). ``PROVIDERS`` maps an accounts-file adapter name to its module.
"""

from __future__ import annotations

from types import ModuleType

from egress.providers import email, line, meta, rbm, telegram, twilio, viber, webchat, wechat

PROVIDERS: dict[str, ModuleType] = {
    "whatsapp": meta, "messenger": meta, "instagram": meta, "twilio": twilio, "telegram": telegram,
    "line": line, "viber": viber, "wechat": wechat, "rbm": rbm, "email": email, "webchat": webchat,
}
# which channels each provider sends on (a message's channel + account find the account)
CHANNELS: dict[str, tuple[str, ...]] = {
    "whatsapp": ("whatsapp",), "messenger": ("messenger",), "instagram": ("instagram",),
    "twilio": ("sms", "whatsapp"), "telegram": ("telegram",), "line": ("line",), "viber": ("viber",),
    "wechat": ("wechat",), "rbm": ("rbm",), "email": ("email",), "webchat": ("webchat",),
}
