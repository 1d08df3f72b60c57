"""Building blocks of the synthetic dataset: scenarios, agents, session ids and prose.

Every function takes the random.Random it may draw from, so callers decide what a choice depends on.
"""

from __future__ import annotations

import random
import string
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from connector.fake_api import _bank

WINDOW_END = datetime(2026, 11, 1, tzinfo=UTC)
"""Every run starts in the 30 days before this instant (fixed so outputs never depend on today)."""
WINDOW = timedelta(days=30)


@dataclass(frozen=True)
class Criterion:
    """One judged question of a scenario turn."""

    id: str
    question: str
    criteria_type: str
    order_index: int
    few_shot_examples: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Turn:
    """One scripted user message of a scenario and the criteria the judge scores it on."""

    id: str
    order_index: int
    user_message: str
    required: bool
    criteria: tuple[Criterion, ...]


@dataclass(frozen=True)
class Scenario:
    """A scripted conversation: its turns are played in order against an agent."""

    id: str
    name: str
    description: str
    tags: tuple[str, ...]
    created_by_user_id: str
    created_at: str
    updated_at: str
    turns: tuple[Turn, ...]


@dataclass(frozen=True)
class Agent:
    """The agent under test in a session."""

    id: str
    name: str


def new_uuid(rng: random.Random) -> str:
    """A version-4 UUID drawn from rng, so it is reproducible."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z suffix, to the second, as the Piper API writes timestamps."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_scenarios(rng: random.Random) -> list[Scenario]:
    """8 to 12 scenarios with 1-10 turns of 1-6 criteria each."""
    llm_questions = [q for q, deterministic in _bank.QUESTIONS if not deterministic]
    det_questions = [q for q, deterministic in _bank.QUESTIONS if deterministic]
    author = new_uuid(rng)
    scenarios: list[Scenario] = []
    for name, description, tags in rng.sample(_bank.SCENARIOS, rng.randint(8, 12)):
        scenario_id = new_uuid(rng)
        created = WINDOW_END - WINDOW - timedelta(days=rng.uniform(5, 120))
        updated = created + timedelta(days=rng.uniform(0, 5))
        turn_count = min(10, max(1, round(rng.gauss(5, 2.5))))
        turns: list[Turn] = []
        for turn_index in range(turn_count):
            criteria_count = rng.choices(range(1, 7), weights=(2, 4, 4, 3, 2, 1))[0]
            seen: set[str] = set()
            criteria: list[Criterion] = []
            while len(criteria) < criteria_count:
                deterministic = rng.random() < 0.08
                question = rng.choice(det_questions if deterministic else llm_questions)
                if question in seen:
                    continue
                seen.add(question)
                examples: tuple[tuple[str, str], ...] = ()
                if rng.random() < 0.15:
                    examples = ((rng.choice(_bank.RESPONSE_SENTENCES), rng.choice(("PASS", "FAIL"))),)
                criteria.append(Criterion(
                    id=new_uuid(rng), question=question,
                    criteria_type="deterministic" if deterministic else "llm_evaluated",
                    order_index=len(criteria), few_shot_examples=examples,
                ))
            turns.append(Turn(
                id=new_uuid(rng), order_index=turn_index, user_message=rng.choice(_bank.USER_MESSAGES),
                required=rng.random() < 0.6, criteria=tuple(criteria),
            ))
        scenarios.append(Scenario(
            id=scenario_id, name=name, description=description, tags=tags, created_by_user_id=author,
            created_at=iso(created), updated_at=iso(updated), turns=tuple(turns),
        ))
    return scenarios


def build_agents(rng: random.Random) -> list[Agent]:
    """The three agents whose sessions the dataset holds."""
    names = ("Support Assistant v3", "Billing Bot", "Returns Concierge")
    return [Agent(id=new_uuid(rng), name=name) for name in names]


def _alnum(rng: random.Random, length: int) -> str:
    return "".join(rng.choices(string.ascii_uppercase + string.digits, k=length))


def _session_id(rng: random.Random) -> str:
    # Shapes real channels produce; the last three are rare and nasty on purpose (a literal %2F,
    # a query-looking id, a hash and a slash) so clients that do not encode one path segment fail.
    form = rng.choices(
        ("web", "sms", "slack", "voice", "whatsapp", "cafe", "email", "teams", "pct", "query", "kiosk"),
        weights=(30, 12, 12, 8, 8, 4, 6, 5, 1, 1, 1),
    )[0]
    n = rng.randrange(100_000)
    if form == "web":
        return f"web-{rng.getrandbits(48):012x}"
    if form == "sms":
        return f"sms:+1555{rng.randrange(10**7):07d}:2026-10-{rng.randint(2, 31):02d}"
    if form == "slack":
        return f"slack/C0{_alnum(rng, 7)}/{1_790_000_000 + rng.randrange(10**7)}.{rng.randrange(10**6):06d}"
    if form == "voice":
        return f"voice#call-{n}"
    if form == "whatsapp":
        return f"whatsapp:+44 7700 9{n:05d}"
    if form == "cafe":
        return f"web-café-{n:05d}"
    if form == "email":
        return f"email:{rng.choice(('jane.doe', 'li.wei', 'o.brien', 'zoë.m'))}+{n}@example.com"
    if form == "teams":
        return f"teams:19:{rng.getrandbits(64):016x}@thread.v2"
    if form == "pct":
        return f"legacy%2Fchat-{n}"
    if form == "query":
        return f"widget?ref=promo&n={n}"
    return f"kiosk #{rng.randint(1, 9)}/lobby {n}"


def build_session_ids(rng: random.Random, count: int) -> list[str]:
    """count distinct session ids in a fixed order; a longer list extends a shorter one."""
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < count:
        session_id = _session_id(rng)
        if session_id not in seen:
            seen.add(session_id)
            ids.append(session_id)
    return ids


CHANNELS: dict[str, tuple[str, str]] = {
    # id prefix -> (channel_type, channel_name)
    "web": ("web", "Website chat"),
    "sms": ("sms", "SMS (US short code)"),
    "slack": ("slack", "Slack #support"),
    "voice": ("voice", "Voice line"),
    "whatsapp": ("whatsapp", "WhatsApp Business"),
    "email": ("email", "Support inbox"),
    "teams": ("teams", "Microsoft Teams"),
    "legacy": ("web", "Legacy widget"),
    "widget": ("web", "Embedded widget"),
    "kiosk": ("kiosk", "Store kiosk"),
}


def channel_of(session_id: str) -> tuple[str, str]:
    """(channel_type, channel_name) guessed from the session id's prefix."""
    prefix = ""
    for char in session_id:
        if not char.isalpha() or not char.isascii():
            break
        prefix += char
    return CHANNELS.get(prefix, ("api", "API"))


def prose(rng: random.Random, bank: tuple[str, ...], n_chars: int) -> list[str]:
    """Sentences drawn from bank until they add up to at least n_chars characters."""
    sentences: list[str] = []
    total = 0
    while total < n_chars:
        sentence = bank[rng.randrange(len(bank))]
        if sentences and sentence == sentences[-1]:
            continue
        sentences.append(sentence)
        total += len(sentence) + 1
    return sentences


def join_prose(sentences: list[str]) -> str:
    """Sentences as paragraphs of four, the way a chat agent or an LLM judge writes them."""
    paragraphs = [" ".join(sentences[i : i + 4]) for i in range(0, len(sentences), 4)]
    return "\n\n".join(paragraphs)
