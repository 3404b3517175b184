"""A small hand-built history of six leads, and the figures worked out by hand (see the comments).

A: new → mql (rep-1/emea) → sal +1h → sql +2d → opportunity +5d → customer +10d; a first-touch warning.
B: new → mql +1h, unassigned: `unassigned` breach, then assigned (first_touch starts +2h, rep-2/amer),
   the breach resolved; first_touch breached and never resolved. Stays in mql.
C: new → mql (rep-1/emea) → sal +2h → recycled +1d (reject, "no_budget"); nurture breached, open.
D: new → mql (rep-2/amer) → disqualified +3h with no reason (an instant `rejected_without_reason`).
E: new → opportunity +1d (skips engaged, mql, sal, sql; rep-1/emea) → recycled +3d (closed_lost).
F: new → engaged +1h → mql +1h unassigned → sal +3h, now owned by rep-2/amer; a ping_pong alert.

Attribution and grade (SPEC section 10), on every record of the lead: A cpc/brand grade A, won for
40 000; B cpc/brand C; C email/c1 B; D cpc/spring D; E none (it never met marketing), no grade;
F email/c1 B.
"""

from __future__ import annotations

from dataclasses import replace

from lifecycle.records import AlertRecord, LifecycleRecord
from tests.sinks.sample_records import DAY, HOUR, T0, make_alert, make_transition

MIN = 60_000
ATTRIBUTION = {
    "A": {"first_channel": "cpc", "first_campaign": "brand", "grade": "A"},
    "B": {"first_channel": "cpc", "first_campaign": "brand", "grade": "C"},
    "C": {"first_channel": "email", "first_campaign": "c1", "grade": "B"},
    "D": {"first_channel": "cpc", "first_campaign": "spring", "grade": "D"},
    "E": {},
    "F": {"first_channel": "email", "first_campaign": "c1", "grade": "B"},
}


def lifecycle_records() -> list[LifecycleRecord]:
    t = make_transition
    a = [
        t("A", None, "new", at=T0),
        t("A", "new", "mql", at=T0, owner_id="rep-1", team="emea", time_in_previous=0),
        t("A", "mql", "sal", at=T0 + HOUR, owner_id="rep-1", team="emea", time_in_previous=HOUR),
        t("A", "sal", "sql", at=T0 + HOUR + 2 * DAY, owner_id="rep-1", team="emea", time_in_previous=2 * DAY),
        t("A", "sql", "opportunity", at=T0 + HOUR + 7 * DAY, owner_id="rep-1", team="emea",
          time_in_previous=5 * DAY, event_type="deal_stage_change"),
        t("A", "opportunity", "customer", at=T0 + HOUR + 17 * DAY, owner_id="rep-1", team="emea",
          time_in_previous=10 * DAY, event_type="deal_stage_change", amount=40000.0),
    ]
    b = [t("B", None, "new", at=T0), t("B", "new", "mql", at=T0 + HOUR, time_in_previous=HOUR)]
    c = [
        t("C", None, "new", at=T0),
        t("C", "new", "mql", at=T0, owner_id="rep-1", team="emea", time_in_previous=0),
        t("C", "mql", "sal", at=T0 + 2 * HOUR, owner_id="rep-1", team="emea", time_in_previous=2 * HOUR),
        t("C", "sal", "recycled", at=T0 + 2 * HOUR + DAY, owner_id="rep-1", team="emea", time_in_previous=DAY,
          event_type="sales_disposition", reason="no_budget", score=0),
    ]
    d = [
        t("D", None, "new", at=T0),
        t("D", "new", "mql", at=T0, owner_id="rep-2", team="amer", time_in_previous=0),
        t("D", "mql", "disqualified", at=T0 + 3 * HOUR, owner_id="rep-2", team="amer", time_in_previous=3 * HOUR,
          event_type="sales_disposition"),
    ]
    e = [
        t("E", None, "new", at=T0),
        t("E", "new", "opportunity", at=T0 + DAY, owner_id="rep-1", team="emea", time_in_previous=DAY,
          skipped=("engaged", "mql", "sal", "sql"), event_type="deal_stage_change"),
        t("E", "opportunity", "recycled", at=T0 + 4 * DAY, owner_id="rep-1", team="emea",
          time_in_previous=3 * DAY, event_type="deal_stage_change"),
    ]
    f = [
        t("F", None, "new", at=T0),
        t("F", "new", "engaged", at=T0 + HOUR, time_in_previous=HOUR),
        t("F", "engaged", "mql", at=T0 + 2 * HOUR, time_in_previous=HOUR),
        t("F", "mql", "sal", at=T0 + 5 * HOUR, owner_id="rep-2", team="amer", time_in_previous=3 * HOUR,
          event_type="sales_touch"),
    ]
    records = [replace(r, **ATTRIBUTION[r.lead_id]) for r in a + b + c + d + e + f]
    return records + [records[2], records[11]]  # repeats of a[2], c[3] (at-least-once output) count once


def alert_records() -> list[AlertRecord]:
    al = make_alert
    unassigned = al("B", "handoff_broken", sla="assignment", reason="unassigned", owner_id=None, team=None,
                    started_at=T0 + HOUR, due_at=T0 + HOUR + 15 * MIN)
    records = [
        al("A", "sla_warning", sla="first_touch", level=0, owner_id="rep-1", team="emea", started_at=T0,
           due_at=T0 + 4 * HOUR, detected_at=T0 + 3 * HOUR),
        unassigned,
        al("B", "sla_resolved", sla="assignment", owner_id="rep-2", team="amer", started_at=T0 + HOUR,
           due_at=T0 + HOUR + 15 * MIN, detected_at=T0 + 2 * HOUR, resolves=unassigned.alert_id),
        al("B", "follow_up_overdue", sla="first_touch", owner_id="rep-2", team="amer", started_at=T0 + 2 * HOUR,
           due_at=T0 + 6 * HOUR),
        al("C", "handoff_broken", sla="nurture", reason="recycled_not_nurtured", stage="recycled",
           owner_id="rep-1", team="emea", started_at=T0 + 2 * HOUR + DAY, due_at=T0 + 2 * HOUR + 8 * DAY),
        al("D", "handoff_broken", sla=None, reason="rejected_without_reason", owner_id="rep-2", team="amer",
           started_at=T0 + 3 * HOUR, due_at=None),
        al("F", "handoff_broken", sla="first_touch", reason="ping_pong", owner_id="rep-2", team="amer",
           started_at=T0 + 4 * HOUR, due_at=None),
    ]
    return records + [records[1]]


LEADS = 6
TRANSITIONS = 22
ALERTS = 7
REACHED = {"new": 6, "engaged": 2, "mql": 6, "sal": 4, "sql": 2, "opportunity": 2, "customer": 1,
           "recycled": 2, "disqualified": 1}
CURRENT = {"new": 0, "engaged": 0, "mql": 1, "sal": 1, "sql": 0, "opportunity": 0, "customer": 1,
           "recycled": 2, "disqualified": 1}
# (from, to): (leads that reached from, of them reached to)
CONVERSIONS = {("mql", "sal"): (6, 4), ("sal", "sql"): (4, 2), ("sql", "opportunity"): (2, 2),
               ("opportunity", "customer"): (2, 1), ("mql", "customer"): (6, 1)}
# stage: (count, median ms, p90 ms); samples: new [0,0,0,1h,1h,1d], mql [1h,2h,3h,3h], sal [1d,2d] ...
TIME_IN_STAGE = {
    "new": (6, HOUR / 2, DAY),
    "engaged": (1, HOUR, HOUR),
    "mql": (4, 2.5 * HOUR, 3 * HOUR),
    "sal": (2, 1.5 * DAY, 2 * DAY),
    "sql": (1, 5 * DAY, 5 * DAY),
    "opportunity": (2, 6.5 * DAY, 10 * DAY),
}
NEW_HISTOGRAM = (3, 2, 0, 1, 0, 0, 0)  # <1h, 1–4h, 4h–1d, 1–3d, ...
# group: (met, late, open, in_progress)
BY_SLA = {"assignment": (1, 1, 0, 0),          # F met; B breached then resolved
          "first_touch": (4, 0, 1, 0),         # A, C, D met, F's (inferred: entered unassigned, left owned) met; B open
          "qualification": (2, 0, 0, 1),       # A, C met; F still in sal
          "opportunity": (1, 0, 0, 0),         # A (E skipped sql: no opportunity SLA)
          "nurture": (0, 0, 1, 1)}             # C breached, open; E in progress
BY_OWNER = {"(none)": (1, 1, 0, 0), "rep-1": (5, 0, 1, 1), "rep-2": (2, 0, 1, 1)}
BY_TEAM = {"(none)": (1, 1, 0, 0), "amer": (2, 0, 1, 1), "emea": (5, 0, 1, 1)}
REASONS = [("reject", "no_budget", 1), ("disqualify", "(none)", 1)]
LOST = [("mql", 0, 1), ("sal", 1, 0), ("opportunity", 1, 0)]
INSTANT = {"ping_pong": 1, "rejected_without_reason": 1}

# SPEC section 10. group: (leads, mqls, sals, rejected, disqualified, sqls, opportunities, customers, revenue,
# top reject reasons, median mql→sal ms). E jumped over mql and sal: no MQL, no SAL, but an SQL and an
# opportunity (reached by any path).
BY_CHANNEL = {
    "cpc": (3, 3, 1, 0, 1, 1, 1, 1, 40000.0, (), HOUR),                      # A, B, D
    "email": (2, 2, 2, 1, 0, 0, 0, 0, 0.0, (("no_budget", 1),), 2.5 * HOUR),  # C, F: mql→sal 2h, 3h
    "(none)": (1, 0, 0, 0, 0, 1, 1, 0, 0.0, (), None),                       # E
}
BY_CAMPAIGN_ORDER = ["brand", "c1", "spring", "(none)"]  # most leads first, then by name; none last
BY_CAMPAIGN = {
    "brand": (2, 2, 1, 0, 0, 1, 1, 1, 40000.0, (), HOUR),
    "c1": BY_CHANNEL["email"],
    "spring": (1, 1, 0, 0, 1, 0, 0, 0, 0.0, (), None),
    "(none)": BY_CHANNEL["(none)"],
}
BY_GRADE = {
    "A": (1, 1, 1, 0, 0, 1, 1, 1, 40000.0, (), HOUR),
    "B": BY_CHANNEL["email"],
    "C": (1, 1, 0, 0, 0, 0, 0, 0, 0.0, (), None),
    "D": (1, 1, 0, 0, 1, 0, 0, 0, 0.0, (), None),
    "(none)": BY_CHANNEL["(none)"],
}
# week: (MQL moves, of them accepted, first-touch met, first-touch decided): all in the week of T0
BY_WEEK = {"2026-W02": (5, 3, 4, 5)}
