"""Realistic, seeded lead traffic: journeys of marketing and sales events, merged in time order.

Used by the bundled sample, the benchmark and ``leadflow demo``. Each lead gets a journey drawn from
weighted paths (nurtured, hand-raisers, slow reps, ping-pong, rejects, deals); a few messages are
duplicated or malformed on purpose, because real sources send both. On request (``TrafficShape``) some
sales touches reach Kafka late, as from a CRM that syncs logged calls in batches, and some reps put a
lead on hold before the first touch and resume it later (SPEC 9); these draws come from a random
stream of their own, so a journey is otherwise the same with them or without.

Each lead also has a profile (SPEC section 10): the channel that brought it (UTM source, medium and
campaign of its first form fill, or none for direct traffic) and its firmographics (employees, title,
country, industry), sent in form fills' ``fields`` a few at a time as progressive profiling does.
Fit steers sales: a poor fit is rejected or disqualified more often, so the report's by-channel and
by-grade tables differ the way real ones do. The profile has its own random stream, so the timing
and the paths of the journeys are those of a seed without profiles.
"""

from __future__ import annotations

import heapq
import json
import random
from dataclasses import dataclass
from typing import Iterator

from schemas.wire import format_time

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR

TEAMS = {"na": "na-rep", "emea": "emea-rep", "apac": "apac-rep"}
SOURCES = {
    "form_fill": "marketo",
    "email_engagement": "sendgrid",
    "sales_touch": "outreach",
    "lead_assigned": "salesforce",
    "sales_disposition": "salesforce",
    "deal_stage_change": "salesforce",
}
BAD_MESSAGES = (
    b'{"event_id": "broken", "event_type": "form_fill", "lead_id": ',
    b'{"event_id": "x-1", "event_type": "form_fill", "occurred_at": "2026-03-02T10:00:00Z", "form_type": "webinar"}',
    b'{"event_id": "x-2", "event_type": "fax_received", "lead_id": "L-x", "occurred_at": "2026-03-02T10:00:00Z"}',
    b'{"event_id": "x-3", "event_type": "email_engagement", "lead_id": "L-x", "occurred_at": "last tuesday", "action": "open"}',
    b"\xff\xfe not utf-8 at all",
)


#: (weight, utm_source, utm_medium, campaigns, how well the channel's leads fit, 0..1); None: direct.
CHANNELS: tuple[tuple[float, str | None, str | None, tuple[str, ...], float], ...] = (
    (0.24, "google", "cpc", ("brand-search", "competitor-search"), 0.65),
    (0.18, "linkedin", "paid_social", ("abm-enterprise", "webinar-promo"), 0.6),
    (0.12, "facebook", "paid_social", ("retargeting",), 0.25),
    (0.14, "google", "organic", (), 0.45),
    (0.08, "partner-portal", "referral", ("partner-program",), 0.8),
    (0.10, "g2", "review_site", ("g2-category",), 0.55),
    (0.14, None, None, (), 0.45),  # direct: no UTM, the form is the channel
)
TITLES_GOOD = ("VP Sales", "Head of Marketing", "Director of Revenue Operations", "Chief Revenue Officer",
               "VP Marketing", "Director, Demand Generation")
TITLES_OTHER = ("Marketing Manager", "Sales Development Rep", "Account Executive", "Founder", "Consultant",
                "Student", "Intern", "Software Engineer")
COUNTRIES_CORE = ("US", "US", "US", "GB", "DE", "CA", "FR", "NL")
COUNTRIES_OTHER = ("IN", "BR", "ES", "IT", "PL", "AU", "JP")
INDUSTRIES_CORE = ("software", "fintech", "healthcare")
INDUSTRIES_OTHER = ("retail", "education", "manufacturing", "media", "nonprofit")


@dataclass(frozen=True)
class Profile:
    """Where a lead came from and who it is; ``fit`` (0..1) is how well it matches a typical ICP."""

    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    fields: dict[str, str | int]
    fit: float

    @classmethod
    def draw(cls, rng: random.Random) -> Profile:
        pick = rng.random() * sum(c[0] for c in CHANNELS)
        for weight, source, medium, campaigns, quality in CHANNELS:
            pick -= weight
            if pick <= 0:
                break
        campaign = rng.choice(campaigns) if campaigns else None
        good = rng.random() < quality
        employees = int(rng.lognormvariate(7.0 if good else 3.8, 1.0))
        title = rng.choice(TITLES_GOOD if good and rng.random() < 0.7 else TITLES_OTHER)
        country = rng.choice(COUNTRIES_CORE if good or rng.random() < 0.5 else COUNTRIES_OTHER)
        industry = rng.choice(INDUSTRIES_CORE if good or rng.random() < 0.3 else INDUSTRIES_OTHER)
        fit = (0.35 * (employees >= 1000) + 0.15 * (employees >= 100) + 0.3 * (title in TITLES_GOOD)
               + 0.1 * (country in COUNTRIES_CORE) + 0.1 * (industry in INDUSTRIES_CORE))
        if title in ("Student", "Intern"):
            fit = 0.0
        fields: dict[str, str | int] = {"employees": employees, "title": title, "country": country,
                                        "industry": industry}
        return cls(source, medium, campaign, fields, fit)


HOLD_REASONS = ("customer on holiday", "waiting for budget approval", "asked to call back next week")


@dataclass(frozen=True)
class TrafficShape:
    """Knobs of the generator; ``time_scale`` < 1 compresses every gap (the demo uses it)."""

    reps_per_team: int = 6
    slow_rep_share: float = 0.25  # reps who take a day to make the first touch
    duplicate_share: float = 0.01
    bad_share: float = 0.002
    time_scale: float = 1.0
    lagging_touch_share: float = 0.0  # touches that reach Kafka after they happened ...
    touch_lag: tuple[int, int] = (15 * MINUTE, 3 * HOUR)  # ... by this much (a CRM's batch sync)
    hold_share: float = 0.0  # assigned leads put on hold before the first touch, then resumed


class _Journey:
    """One lead's events, as (offset ms from the lead's start when sent, ... when it happened, fields).

    ``profile_rng`` draws the lead's channel and firmographics (SPEC 10) and ``clock_rng`` what SPEC 9
    adds (late touches, holds), each apart from ``rng``.
    """

    def __init__(self, rng: random.Random, lead_id: str, shape: TrafficShape, slow_reps: set[str],
                 profile_rng: random.Random | None = None, clock_rng: random.Random | None = None) -> None:
        self.rng = rng
        self.profile_rng = profile_rng if profile_rng is not None else random.Random(f"{lead_id}/profile")
        self.profile = Profile.draw(self.profile_rng)
        self._unsent = list(self.profile.fields)  # firmographics not yet asked for, in asking order
        self.clock_rng = clock_rng or random.Random(f"{lead_id}/clock")
        self.lead_id = lead_id
        self.shape = shape
        self.slow_reps = slow_reps
        self.t = 0
        self.events: list[tuple[int, int, dict]] = []
        self.n = 0

    def wait(self, low: int, high: int) -> None:
        self.t += int(self.rng.uniform(low, high) * self.shape.time_scale)

    def emit(self, event_type: str, lag: int = 0, **fields: object) -> None:
        """An event that happens now and is sent ``lag`` ms later."""
        self.n += 1
        body = {"event_id": f"{self.lead_id}-{self.n}", "event_type": event_type, "lead_id": self.lead_id}
        body.update({k: v for k, v in fields.items() if v is not None})
        body["source"] = SOURCES[event_type]
        self.events.append((self.t + lag, self.t, body))

    def form(self, form_type: str, form_id: str, *, acquisition: bool = False) -> None:
        """A form fill: the landing visit's UTM parameters on the first, an email's on a nurture
        click, none on direct visits; two firmographics not yet sent, or on a hand-raiser all."""
        p, prng = self.profile, self.profile_rng
        utm: dict[str, object] = {}
        if acquisition:
            utm = {"utm_source": p.utm_source, "utm_medium": p.utm_medium, "utm_campaign": p.utm_campaign}
        elif prng.random() < 0.4:
            utm = {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "nurture-2026"}
        ask = len(self._unsent) if form_type in ("demo_request", "contact_us", "pricing") else 2
        names, self._unsent = self._unsent[:ask], self._unsent[ask:]
        fields = {name: p.fields[name] for name in names}
        self.emit("form_fill", form_type=form_type, form_id=form_id, **utm, fields=fields or None)

    def maybe_hold(self) -> None:
        """Sometimes the rep pauses the lead's clock (the customer asked to wait), then resumes it."""
        clock = self.clock_rng
        if clock.random() >= self.shape.hold_share:
            return
        owner = self.events[-1][2].get("owner_id")
        self.t += int(clock.uniform(5 * MINUTE, 2 * HOUR) * self.shape.time_scale)
        self.emit("sales_disposition", decision="hold", reason=clock.choice(HOLD_REASONS), rep_id=owner)
        self.t += int(clock.uniform(HOUR, 8 * HOUR) * self.shape.time_scale)
        self.emit("sales_disposition", decision="resume", rep_id=owner)

    def touch(self, owner: str) -> None:
        """The first touch; sometimes logged in a CRM that syncs it to Kafka only later. The rep's
        next step comes after the sync, so the journey's later events stay in their order."""
        clock = self.clock_rng
        lag = 0
        if clock.random() < self.shape.lagging_touch_share:
            lag = int(clock.uniform(*self.shape.touch_lag) * self.shape.time_scale)
        channel = self.rng.choice(["call", "email", "meeting"])
        self.emit("sales_touch", lag=lag, rep_id=owner, channel=channel, outcome="connected")
        self.t += lag

    def build(self) -> list[tuple[int, int, dict]]:
        rng = self.rng
        if self.profile.utm_medium is not None or self.profile_rng.random() < 0.5:  # came in through a form
            self.form(self.profile_rng.choice(["content_download", "webinar"]), "f-landing", acquisition=True)
            self.t += int(self.profile_rng.uniform(MINUTE, DAY) * self.shape.time_scale)
        for _ in range(rng.randint(0, 3)):
            self.emit("email_engagement", action="delivered", campaign_id=f"c{rng.randint(1, 20)}")
            self.wait(5 * MINUTE, 2 * DAY)
            if rng.random() < 0.6:
                self.emit("email_engagement", action=rng.choice(["open", "open", "click", "reply"]), campaign_id="c1")
                self.wait(MINUTE, DAY)
        path = rng.random()
        if path < 0.35:  # stays in marketing: a few content downloads
            for _ in range(rng.randint(1, 2)):
                self.form(rng.choice(["content_download", "webinar"]), "f7")
                self.wait(HOUR, 3 * DAY)
            return self.events
        self.form(rng.choice(["demo_request", "contact_us", "pricing"]), "f1")
        team = rng.choice(list(TEAMS))
        reps = [f"{TEAMS[team]}-{i}" for i in range(1, self.shape.reps_per_team + 1)]
        if rng.random() < 0.08:  # nobody assigns it in time
            self.wait(20 * MINUTE, 3 * HOUR)
        else:
            self.wait(MINUTE, 12 * MINUTE)
        owner = rng.choice(reps)
        self.emit("lead_assigned", owner_id=owner, team=team)
        if rng.random() < 0.05:  # ping-pong between reps
            for other in rng.sample([r for r in reps if r != owner], 2):
                self.wait(10 * MINUTE, HOUR)
                self.emit("lead_assigned", owner_id=other, team=team)
                owner = other
        self.maybe_hold()
        if owner in self.slow_reps:
            self.wait(6 * HOUR, 2 * DAY)
        else:
            self.wait(10 * MINUTE, 3 * HOUR)
        self.touch(owner)
        self.wait(HOUR, 4 * DAY)
        decision = rng.random()
        misfit = 1.0 - self.profile.fit  # poor fits get rejected and disqualified more often
        reject, disqualify = 0.08 + 0.25 * misfit, 0.03 + 0.15 * misfit
        if decision < reject:
            reason = rng.choice(["no budget", "bad timing", None])
            self.emit("sales_disposition", decision="reject", reason=reason, rep_id=owner)
            self.wait(DAY, 10 * DAY)
            if rng.random() < 0.6:
                self.emit("email_engagement", action="click", campaign_id="nurture-1")
            return self.events
        if decision < reject + disqualify:
            self.emit("sales_disposition", decision="disqualify", reason=rng.choice(["student", "competitor"]), rep_id=owner)
            return self.events
        self.emit("sales_disposition", decision="qualify", rep_id=owner)
        self.wait(DAY, 12 * DAY)
        if rng.random() < 0.7:
            self.emit("deal_stage_change", deal_id=f"D-{self.lead_id}", stage="created", amount=rng.choice([5000, 12000, 40000]))
            self.wait(2 * DAY, 20 * DAY)
            self.emit("deal_stage_change", deal_id=f"D-{self.lead_id}", stage=rng.choice(["closed_won", "closed_lost"]))
        return self.events


def journeys(leads: int, seed: int = 7, start: int = 1772442000000, span: int = 30 * DAY,
             shape: TrafficShape = TrafficShape(), first_lead: int = 1) -> Iterator[tuple[int, int, dict]]:
    """``(sent at ms, occurred_at ms, event dict without occurred_at)`` for ``leads`` leads, in the
    order they are sent (the order of time, but for late touches)."""
    rng = random.Random(seed)
    slow_reps = {
        f"{prefix}-{i}"
        for prefix in TEAMS.values()
        for i in range(1, shape.reps_per_team + 1)
        if rng.random() < shape.slow_rep_share
    }
    starts = sorted(start + int(rng.random() * span * shape.time_scale) for _ in range(leads))
    heap: list[tuple[int, int, int, list[tuple[int, int, dict]]]] = []
    index = 0
    seq = 0
    while index < len(starts) or heap:
        if index < len(starts) and (not heap or starts[index] <= heap[0][0]):
            lead_start = starts[index]
            lead_id = f"L-{first_lead + index:06d}"
            events = _Journey(random.Random(f"{seed}/{lead_id}"), lead_id, shape, slow_reps,
                              random.Random(f"{seed}/{lead_id}/profile"),
                              random.Random(f"{seed}/{lead_id}/clock")).build()
            index += 1
            if events:
                events.sort(key=lambda e: e[0])  # by when sent; stable: same-time events keep their order
                events.reverse()
                offset = events[-1][0]
                heapq.heappush(heap, (lead_start + offset, seq, lead_start, events))
                seq += 1
            continue
        at, _, lead_start, events = heapq.heappop(heap)
        _, occurred, body = events.pop()
        yield at, lead_start + occurred, body
        if events:
            heapq.heappush(heap, (lead_start + events[-1][0], seq, lead_start, events))
            seq += 1


def json_lines(leads: int, seed: int = 7, shape: TrafficShape = TrafficShape(), **kwargs) -> Iterator[bytes]:
    """The traffic as JSON lines (no newline), with a share of duplicates and malformed messages."""
    rng = random.Random(seed + 1)
    for _, occurred, body in journeys(leads, seed, shape=shape, **kwargs):
        body["occurred_at"] = format_time(occurred)
        line = json.dumps(body, separators=(",", ":")).encode()
        yield line
        if rng.random() < shape.duplicate_share:
            yield line
        if rng.random() < shape.bad_share:
            yield rng.choice(BAD_MESSAGES)
