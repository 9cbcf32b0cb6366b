"""The cast of the synthetic day: customers (with their id on every channel) and the agent roster.

Pure: everything derives from the ``random.Random`` passed in.
"""

from __future__ import annotations

import random
import string
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Customer:
    key: str
    name: str
    language: str  # fr | en
    tier: str  # standard | vip
    phone: str  # E.164
    email: str
    channel: str  # the channel they usually write on
    handles: tuple[tuple[str, str], ...]  # (channel, their id on it)
    unhappy: bool = False
    logged_in: bool = False  # web chat with a login token carrying a verified e-mail

    def handle(self, channel: str) -> str:
        return dict(self.handles)[channel]


@dataclass(frozen=True)
class Agent:
    id: str
    name: str
    languages: tuple[str, ...]
    skills: tuple[str, ...]
    capacity: int
    shifts: tuple[tuple[int, int], ...]  # local minutes of the day: (start, end)
    queues: tuple[str, ...] = ("general",)

FIRST = {
    "fr": ("Camille", "Léa", "Manon", "Chloé", "Inès", "Zoé", "Juliette", "Louise", "Hugo",
           "Lucas", "Théo", "Nathan", "Mathis", "Étienne", "Antoine", "Julien", "Amélie",
           "François", "Sébastien", "Hélène", "Margaux", "Yanis", "Océane", "Noé"),
    "en": ("Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Jack", "Mia", "Emily",
           "James", "Sophie", "William", "Grace", "Thomas", "Chloe", "Daniel", "Hannah",
           "Wei", "Yuki", "Olena", "Hiroshi", "Mei", "Dmytro", "Aiko"),
}
LAST = {
    "fr": ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Petit", "Durand", "Leroy",
           "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "Faure", "Rousseau",
           "Fontaine", "Chevalier", "Girard", "Lambert"),
    "en": ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies",
           "Evans", "Walker", "Wright", "Clarke", "Chen", "Tanaka", "Kovalenko", "Wang",
           "Sato", "Shevchenko", "Hughes", "Green"),
}
DOMAINS = ("gmail.com", "orange.fr", "free.fr", "outlook.com", "yahoo.fr", "icloud.com",
           "hotmail.co.uk", "proton.me")
_B64 = string.ascii_letters + string.digits + "+/"
_OPENID = string.ascii_letters + string.digits + "_-"

# The agent roster at scale 1, in the order agents are added: the first three already cover
# both languages, VIP and escalation. Shifts are local times (minutes after midnight).
ROSTER = (
    ("a-claire", "Claire Morel", ("fr", "en"), ("vip", "refund", "billing"), 3,
     ((8 * 60, 12 * 60 + 30), (13 * 60 + 30, 17 * 60 + 30))),
    ("a-sofia", "Sofia Marchand", ("fr", "en"), ("escalation", "complaint"), 2,
     ((8 * 60 + 30, 13 * 60), (14 * 60, 18 * 60))),
    ("a-noah", "Noah Bennett", ("en", "fr"), ("billing", "vip"), 3, ((12 * 60, 20 * 60),)),
    ("a-hugo", "Hugo Perrin", ("fr",), ("delivery_problem", "order_status"), 3,
     ((8 * 60 + 30, 12 * 60), (13 * 60, 17 * 60 + 30))),
    ("a-emma", "Emma Collins", ("en",), ("vip", "refund"), 3,
     ((8 * 60, 12 * 60), (12 * 60 + 45, 16 * 60))),
    ("a-lucas", "Lucas Renaud", ("fr",), ("cancellation", "order_status"), 3,
     ((11 * 60, 15 * 60), (15 * 60 + 30, 20 * 60))),
    ("a-ines", "Inès Haddad", ("fr",), ("refund", "billing"), 2, ((8 * 60, 12 * 60),)),
    ("a-lea", "Léa Fournier", ("fr",), ("escalation", "complaint"), 2, ((13 * 60, 20 * 60),)),
    ("a-james", "James Porter", ("en",), ("delivery_problem", "cancellation"), 3,
     ((14 * 60, 20 * 60 + 30),)),
    ("a-tom", "Tom Girard", ("fr", "en"), ("order_status", "delivery_problem"), 4,
     ((9 * 60 + 40, 11 * 60), (14 * 60 + 40, 16 * 60))),  # called in when a burst builds up
)


def agents_for(scale: float) -> list[Agent]:
    """About ten agents per 300 conversations (at least three), copied beyond the roster."""
    n = max(3, round(len(ROSTER) * scale))
    out = []
    for i in range(n):
        id_, name, langs, skills, cap, shifts = ROSTER[i % len(ROSTER)]
        copy = i // len(ROSTER)
        out.append(Agent(id=f"{id_}{'-' + str(copy + 1) if copy else ''}", name=name,
                         languages=langs, skills=skills, capacity=cap, shifts=shifts))
    return out


def make_customer(rng: random.Random, i: int, mix: Mapping[str, Mapping[str, float]], *,
                  vip_rate: float) -> Customer:
    """Customer number ``i``: a name, a phone, an address and an id on every channel."""
    lang = "fr" if rng.random() < 0.65 else "en"
    first, last = rng.choice(FIRST[lang]), rng.choice(LAST[lang])
    if lang == "fr":
        phone = f"+33{rng.choice('67')}{rng.randint(0, 99_999_999):08d}"
    else:
        phone = f"+447{rng.randint(100_000_000, 999_999_999)}"
    email = f"{_ascii(first)}.{_ascii(last)}{rng.randint(1, 99)}@{rng.choice(DOMAINS)}"
    channels = list(mix[lang])
    channel = rng.choices(channels, weights=[mix[lang][c] for c in channels])[0]
    handles = (
        ("whatsapp", phone[1:]),  # wa_id: the number's digits without "+"
        ("messenger", str(rng.randint(10**15, 10**16 - 1))),  # page-scoped id (PSID)
        ("instagram", str(rng.randint(10**16, 10**17 - 1))),  # IGSID
        ("telegram", str(rng.randint(10**8, 7 * 10**9))),
        ("line", "U" + f"{rng.getrandbits(128):032x}"),
        ("viber", "".join(rng.choice(_B64) for _ in range(22)) + "=="),
        ("wechat", "o" + "".join(rng.choice(_OPENID) for _ in range(27))),  # OpenID
        ("rbm", phone),
        ("email", email),
        ("webchat", f"v-{rng.getrandbits(48):012x}"),
    )
    return Customer(key=f"cust-{i + 1:04d}", name=f"{first} {last}", language=lang,
                    tier="vip" if rng.random() < vip_rate else "standard", phone=phone,
                    email=email, channel=channel, handles=handles,
                    logged_in=rng.random() < 0.7)


def _ascii(name: str) -> str:
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
