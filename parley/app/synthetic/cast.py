"""The cast of the synthetic day: customers (with their id on every channel) and the agent roster.

Pure: everything derives from the ``random.Random`` passed in. The roster matches the queues of
``routing.example.toml`` (packaged in ``parley/app/demo/data``): each agent serves some of the queues
``general``, ``orders``, ``english``, ``billing`` (skill ``billing``), ``vip`` (skill ``vip``) and
``escalation`` (skill ``escalation``), in the languages they speak, with a capacity of 2 to 4
conversations, shifts and short breaks.
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
    tier: str  # standard | gold | platinum (the CRM's tiers; routing's VIP tiers are gold, platinum)
    phone: str  # E.164
    email: str
    channel: str  # the channel they usually write on
    handles: tuple[tuple[str, str], ...]  # (channel, their id on it)
    unhappy: bool = False
    logged_in: bool = False  # web chat with a login token carrying a verified e-mail

    def handle(self, channel: str) -> str:
        return dict(self.handles)[channel]

    @property
    def vip(self) -> bool:
        return self.tier in VIP_TIERS


VIP_TIERS = ("gold", "platinum")


@dataclass(frozen=True)
class Agent:
    id: str
    name: str
    languages: tuple[str, ...]
    skills: tuple[str, ...]
    capacity: int
    shifts: tuple[tuple[int, int], ...]  # local minutes of the day: (start, end)
    queues: tuple[str, ...] = ("general",)
    breaks: tuple[tuple[int, int], ...] = ()  # short pauses inside a shift (presence "away")

    @property
    def first_name(self) -> str:
        return self.name.split()[0]


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


def _m(h: int, m: int = 0) -> int:
    return h * 60 + m


# The roster at scale 1, in the order agents are added: the first three already cover every
# queue in both languages. Shifts and breaks are local times; the office opens 9:00-18:00, the
# VIP queue always: agents log in a little before the opening, the late shift covers VIPs.
ROSTER = (
    Agent("a-claire", "Claire Morel", ("fr", "en"), ("vip", "billing"), 3,
          ((_m(8, 45), _m(12, 30)), (_m(13, 30), _m(17, 45))), ("vip", "billing", "general", "english"),
          ((_m(10, 45), _m(11)),)),
    Agent("a-sofia", "Sofia Marchand", ("fr", "en"), ("escalation",), 3,
          ((_m(8, 45), _m(13)), (_m(14), _m(18, 15))), ("escalation", "general", "orders", "english"),
          ((_m(16), _m(16, 15)),)),
    Agent("a-noah", "Noah Bennett", ("en", "fr"), ("vip", "billing"), 3,
          ((_m(11, 45), _m(20)),), ("vip", "english", "billing", "orders"), ((_m(15, 30), _m(15, 45)),)),
    Agent("a-hugo", "Hugo Perrin", ("fr",), (), 4,
          ((_m(8, 45), _m(12)), (_m(13), _m(17, 30))), ("orders", "general"),
          ((_m(15), _m(15, 15)),)),
    Agent("a-emma", "Emma Collins", ("en",), (), 3,
          ((_m(8, 45), _m(12, 15)), (_m(13, 15), _m(16, 45))), ("english", "orders"),
          ((_m(10, 30), _m(10, 45)),)),
    Agent("a-lucas", "Lucas Renaud", ("fr",), (), 3,
          ((_m(10, 45), _m(14, 45)), (_m(15, 15), _m(19))), ("orders", "general")),
    Agent("a-ines", "Inès Haddad", ("fr",), ("billing",), 2,
          ((_m(8, 45), _m(12, 30)), (_m(13, 30), _m(16))), ("billing", "general")),
    Agent("a-lea", "Léa Fournier", ("fr", "en"), ("escalation",), 2,
          ((_m(12, 45), _m(18, 30)),), ("escalation", "general"), ((_m(16, 30), _m(16, 45)),)),
    Agent("a-james", "James Porter", ("en",), (), 3, ((_m(13, 15), _m(19)),),
          ("english", "orders")),
    Agent("a-tom", "Tom Girard", ("fr", "en"), (), 4,  # called in for the two bursts
          ((_m(9), _m(11)), (_m(14), _m(16))), ("orders", "general", "english")),
    Agent("a-chloe", "Chloé Lambert", ("fr", "en"), (), 3,
          ((_m(8, 45), _m(13)), (_m(14), _m(17))), ("orders", "general", "english"),
          ((_m(11), _m(11, 15)),)),
    Agent("a-omar", "Omar Benali", ("fr",), ("billing",), 3,
          ((_m(10), _m(14)), (_m(15), _m(19))), ("billing", "orders", "general")),
)


def agents_for(scale: float) -> list[Agent]:
    """Twelve agents per 300 conversations (at least three), copied beyond the roster."""
    n = max(3, round(len(ROSTER) * scale))
    out = []
    for i in range(n):
        a = ROSTER[i % len(ROSTER)]
        copy = i // len(ROSTER)
        out.append(a if not copy else Agent(f"{a.id}-{copy + 1}", a.name, a.languages, a.skills,
                                            a.capacity, a.shifts, a.queues, a.breaks))
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
    roll = rng.random()
    tier = "platinum" if roll < vip_rate / 4 else "gold" if roll < vip_rate else "standard"
    return Customer(key=f"cust-{i + 1:04d}", name=f"{first} {last}", language=lang, tier=tier,
                    phone=phone, email=email, channel=channel, handles=handles,
                    logged_in=rng.random() < 0.7)


def _ascii(name: str) -> str:
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
