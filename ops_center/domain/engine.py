"""The rule engine: readings in, alert changes out. Pure and clock-free.

Per (sensor, metric) it keeps one small state per rule (machines, deques, ring buffers) and
feeds each batch of one series at once, so the common "nothing happens" case costs a
couple of C-level min()/max() calls per rule.

Time: every rule runs on READING time. A reading is late when its batch's ``sent_at`` minus
its ``ts`` exceeds ``lateness_s`` (from the message itself, never the wall clock), so a
simulated fleet on a fast clock that started in the past is evaluated as live; changes from
late readings carry ``late=True``. Readings older than the newest already evaluated for
their series (out of order, or a redelivered batch) are not evaluated again.

Freshness is judged against each gateway's own "live" horizon: the newest non-late reading
it sent, advanced in :meth:`RuleEngine.tick` by the wall time elapsed since that reading
arrived. A gateway draining a backlog therefore raises no silence alerts, and a fast
simulated clock is never compared with the wall clock.

The plans (which rules bind to which series, built once) and the pure one-rule
:func:`evaluate` are in ops_center/domain/engine_plan.py.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from contract.catalog import METRICS
from contract.registry import Registry
from ops_center.domain.alerts import AlertBook, AlertChange
from ops_center.domain.engine_plan import (
    Bound,
    EngineStats,
    GatewayPlan,
    Series,
    build_plans,
    evaluate,
    idle,
    rule_rank,
)
from ops_center.domain.maintenance import MaintenanceCalendar
from ops_center.domain.rules import RuleSet
from ops_center.domain.rules.base import Signal, fmt, level_title
from ops_center.domain.rules.quality import BoundsEvaluator, ClockSkewEvaluator

__all__ = ["EngineStats", "Reading", "RuleEngine", "evaluate"]

logger = logging.getLogger(__name__)

Reading = tuple[str, str, datetime, float, str]  # sensor, metric, ts, value, quality
SNAPSHOT_VERSION = 1


class RuleEngine:
    """Rules → alert changes for the sensors of ``registry``.

    Not thread-safe: one engine per worker (partition by site to scale out).
    """

    def __init__(self, rules: RuleSet, registry: Registry,
                 maintenance: MaintenanceCalendar | None = None) -> None:
        self.rules = rules
        self.registry = registry
        self.settings = rules.settings
        self.maintenance = maintenance if maintenance is not None else MaintenanceCalendar()
        self.book = AlertBook(reraise_hold_s=self.settings.reraise_hold_s)
        self.stats = EngineStats()
        self._series: dict[tuple[str, str], Series] = {}
        self._gateways: dict[str, GatewayPlan] = {}
        self._skip = frozenset(self.settings.skip_qualities)
        self._series, self._gateways = build_plans(rules, registry)

    # --- readings --------------------------------------------------------------------------

    def ingest(self, readings: Sequence[Reading], sent_at: datetime, gateway: str,
               received_at: datetime) -> list[AlertChange]:
        """Evaluate one telemetry batch of ``gateway``. ``received_at`` is the wall time it
        arrived (only used to age the gateway's live horizon in :meth:`tick`)."""
        gw = self._gateways.get(gateway)
        self.stats.readings += len(readings)
        if gw is None:
            self.stats.unknown += len(readings)
            return []
        sent = sent_at.timestamp()
        recv = received_at.timestamp()
        changes: list[AlertChange] = []
        gw.last_sent = sent if gw.last_sent is None else max(gw.last_sent, sent)
        gw.last_received = recv
        for _, ctx in gw.silent:
            ch = self.book.set_level(ctx, 0, sent)
            if ch is not None:
                changes.append(ch)

        groups: dict[tuple[str, str], tuple[list[float], list[float], list[str]]] = {}
        last_dt: datetime | None = None
        t = 0.0
        for sensor, metric, ts, value, quality in readings:
            if ts is not last_dt:  # readings of one instant usually share one datetime object
                last_dt, t = ts, ts.timestamp()
            g = groups.get((sensor, metric))
            if g is None:
                groups[(sensor, metric)] = ([t], [value], [quality])
            else:
                g[0].append(t)
                g[1].append(value)
                g[2].append(quality)

        late_cut = sent - self.settings.lateness_s
        live = gw.live_ts
        for key, (tss, vals, quals) in groups.items():
            s = self._series.get(key)
            if s is None or s.ref.gateway != gateway:
                self.stats.unknown += len(tss)
                continue
            self._feed(s, tss, vals, quals, sent, late_cut, changes)
            if s.last_ts is not None and s.last_ts >= late_cut and (live is None or s.last_ts > live):
                live = s.last_ts
        if live is not None and live != gw.live_ts:
            gw.live_ts, gw.live_received = live, recv
            if gw.baseline is None:
                gw.baseline = live
            if live >= gw.next_check:
                gw.next_check = live + self.settings.freshness_check_s
                self._check_freshness(gw, live, changes)
        return changes

    def _feed(self, s: Series, tss: list[float], vals: list[float], quals: list[str],
              sent: float, late_cut: float, changes: list[AlertChange]) -> None:
        n = len(tss)
        if n == 1:  # the live case: one reading per series per batch, usually nothing to filter
            t0 = tss[0]
            last0 = s.last_ts
            if (not s.flagged and not s.silent and quals[0] == "good" and (last0 is None or t0 > last0)
                    and t0 <= sent + s.max_ahead_s and s.lo <= vals[0] <= s.hi and self.maintenance.empty):
                s.last_ts = t0
                self._evaluate(s, tss, vals, sent, late_cut, changes)
                return
        elif tss != sorted(tss):
            order = sorted(range(n), key=tss.__getitem__)
            tss = [tss[i] for i in order]
            vals = [vals[i] for i in order]
            quals = [quals[i] for i in order]
        book = self.book
        if n == 1:
            v0 = vals[0]
            clean = not s.flagged and tss[0] <= sent + s.max_ahead_s and s.lo <= v0 <= s.hi
        else:
            clean = (not s.flagged and tss[-1] <= sent + s.max_ahead_s
                     and s.lo <= min(vals) and max(vals) <= s.hi)
        if not clean:
            tss, vals, quals = self._filter(s, tss, vals, quals, sent, late_cut, changes)
            if not tss:
                return
        # Not again: out of order or redelivered.
        last = s.last_ts
        if last is not None and tss and tss[0] <= last:
            cut = bisect_right(tss, last)
            self.stats.out_of_order += cut
            tss, vals, quals = tss[cut:], vals[cut:], quals[cut:]
        if not tss:
            return
        s.last_ts = tss[-1]
        if s.silent and s.fresh_ctx is not None:
            s.silent = False
            ch = book.set_level(s.fresh_ctx, 0, tss[0], late=tss[0] < late_cut)
            if ch is not None:
                changes.append(ch)
        # Qualities and maintenance.
        n = len(tss)
        if quals.count("good") != n:
            skip = self._skip
            keep = [i for i, q in enumerate(quals) if q not in skip]
            if len(keep) != n:
                self.stats.skipped_quality += n - len(keep)
                tss, vals = [tss[i] for i in keep], [vals[i] for i in keep]
        if tss and not self.maintenance.empty:
            covering = self.maintenance.covering
            ref = s.ref
            keep = [i for i, t in enumerate(tss) if covering(ref.site, ref.gateway, ref.id, t) is None]
            if len(keep) != len(tss):
                self.stats.in_maintenance += len(tss) - len(keep)
                tss, vals = [tss[i] for i in keep], [vals[i] for i in keep]
        if not tss:
            return
        self._evaluate(s, tss, vals, sent, late_cut, changes)

    def _evaluate(self, s: Series, tss: list[float], vals: list[float], sent: float, late_cut: float,
                  changes: list[AlertChange]) -> None:
        self.stats.evaluated += len(tss)
        for b in s.values:
            for sig in b.evaluator.feed(tss, vals, sent):
                self._emit(b, sig, tss[sig.index], late_cut, changes)
        if s.levels and (s.busy or min(vals) <= s.quiet_lo or max(vals) >= s.quiet_hi):
            for b in s.levels:
                for sig in b.evaluator.feed(tss, vals, sent):
                    self._emit(b, sig, tss[sig.index], late_cut, changes)
            s.busy = any(not idle(b) for b in s.levels)

    def _filter(self, s: Series, tss: list[float], vals: list[float], quals: list[str], sent: float,
                late_cut: float, changes: list[AlertChange]) -> tuple[list[float], list[float], list[str]]:
        """Clock skew (a reading from the future must not advance the series) and physical
        bounds (impossible values still prove the sensor talks, but are unusable)."""
        n = len(tss)
        flagged = False
        if s.skew is not None:
            ev = s.skew.evaluator
            assert isinstance(ev, ClockSkewEvaluator)
            for sig in ev.feed(tss, vals, sent):
                self._emit(s.skew, sig, tss[sig.index], late_cut, changes)
            flagged = ev.active
            mask = ev.mask
            if mask is not None:
                keep = [i for i, bad in enumerate(mask) if not bad]
                self.stats.withheld += n - len(keep)
                tss, vals, quals = [tss[i] for i in keep], [vals[i] for i in keep], [quals[i] for i in keep]
        if s.bounds is not None and tss:
            ev2 = s.bounds.evaluator
            assert isinstance(ev2, BoundsEvaluator)
            for sig in ev2.feed(tss, vals, sent):
                self._emit(s.bounds, sig, tss[sig.index], late_cut, changes)
            flagged = flagged or ev2.active
            mask = ev2.mask
            if mask is not None:
                quals = [("bad" if bad else q) for q, bad in zip(quals, mask, strict=True)]
                self.stats.withheld += sum(mask)
        s.flagged = flagged
        return tss, vals, quals

    def _emit(self, b: Bound, sig: Signal, at: float, late_cut: float, changes: list[AlertChange]) -> None:
        ctx = b.ctx
        unit = METRICS[ctx.metric].unit if ctx.metric is not None and ctx.metric in METRICS else ""
        vi, en = ctx.message_vi, ctx.message_en
        named = level_title(b.rule, sig.level)
        if named is not None:  # the level's words in place of the rule's title, the rest kept
            vi = named.vi + vi.removeprefix(b.rule.title.vi)
            en = named.en + en.removeprefix(b.rule.title.en)
        msg = (f"{vi} = {fmt(sig.value)} {unit} (ngưỡng {fmt(sig.limit)})",
               f"{en} = {fmt(sig.value)} {unit} (limit {fmt(sig.limit)})")
        ch = self.book.set_level(ctx, sig.level, at, value=sig.value, limit=sig.limit,
                                 late=at < late_cut, message=msg)
        if ch is not None:
            self.stats.by_rule[ctx.rule] = self.stats.by_rule.get(ctx.rule, 0) + 1
            changes.append(ch)

    # --- freshness and gateways ------------------------------------------------------------

    def _check_freshness(self, gw: GatewayPlan, horizon: float, changes: list[AlertChange]) -> None:
        if gw.online is False:
            return  # the gateway-offline alert speaks for its sensors
        covering = None if self.maintenance.empty else self.maintenance.covering
        active = self.book.active
        for s in gw.series:
            ctx = s.fresh_ctx
            if ctx is None or s.fresh is None or s.fresh_key in active:
                continue
            last = s.last_ts if s.last_ts is not None else gw.baseline
            if last is None or horizon - last <= s.silence_s:
                continue
            at = last + s.silence_s
            if covering is not None and covering(gw.site, gw.id, s.ref.id, horizon) is not None:
                continue
            silent_for = horizon - last
            msg = (f"{ctx.message_vi}: không có dữ liệu {fmt(silent_for / 60)} phút",
                   f"{ctx.message_en}: no data for {fmt(silent_for / 60)} min")
            ch = self.book.set_level(ctx, rule_rank(s.fresh), at, value=silent_for, limit=s.silence_s,
                                     message=msg)
            s.silent = True
            if ch is not None:
                changes.append(ch)

    def gateway_status(self, gateway: str, state: str, ts: datetime) -> list[AlertChange]:
        """A status message (retained) or the Last Will. For a Last Will, pass the time it was
        received as ``ts``: its payload was written when the gateway connected."""
        gw = self._gateways.get(gateway)
        if gw is None:
            return []
        t = ts.timestamp()
        if gw.status_ts is not None and t < gw.status_ts:
            return []  # an older status than the one we hold
        gw.status_ts = t
        gw.online = state == "online"
        changes: list[AlertChange] = []
        in_maint = (not self.maintenance.empty
                    and self.maintenance.covering(gw.site, gw.id, None, t) is not None)
        for rule, ctx in gw.offline:
            level = 0 if gw.online or in_maint else rule_rank(rule)
            ch = self.book.set_level(ctx, level, t)
            if ch is not None:
                changes.append(ch)
        if gw.online:
            # Silence counted from now on, not from before the outage.
            gw.next_check = float("-inf")
        return changes

    def tick(self, now: datetime) -> list[AlertChange]:
        """Time-driven checks: gateways silent for too long (wall time since their last
        batch), sensors silent against each gateway's live horizon, offline gateways whose
        maintenance window ended."""
        now_s = now.timestamp()
        changes: list[AlertChange] = []
        maint = self.maintenance
        for gw in self._gateways.values():
            if gw.last_received is None:
                continue  # never heard of: no alert storm when the ops center starts first
            elapsed = now_s - gw.last_received
            base = gw.last_sent if gw.last_sent is not None else now_s
            est = base + max(elapsed, 0.0)
            in_maint = not maint.empty and maint.covering(gw.site, gw.id, None, est) is not None
            for rule, ctx in gw.silent:
                if elapsed > rule.after_s and not in_maint and gw.online is not False:
                    ch = self.book.set_level(ctx, rule_rank(rule), base + rule.after_s, value=elapsed,
                                             limit=rule.after_s)
                    if ch is not None:
                        changes.append(ch)
            if gw.online is False and not in_maint:
                for orule, octx in gw.offline:
                    if octx.key not in self.book.active:
                        ch = self.book.set_level(octx, rule_rank(orule), est)
                        if ch is not None:
                            changes.append(ch)
            if gw.live_ts is not None and gw.live_received is not None:
                horizon = gw.live_ts + max(now_s - gw.live_received, 0.0)
                self._check_freshness(gw, horizon, changes)
        horizon_all = max((g.live_ts for g in self._gateways.values() if g.live_ts is not None),
                          default=None)
        if horizon_all is not None:
            self.book.forget_before(horizon_all)
        return changes

    # --- snapshot --------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state: restore it into an engine built from the same (or
        edited) rules so a restarted service does not re-raise what is already open."""
        series: dict[str, Any] = {}
        for (sensor, metric), s in self._series.items():
            if s.last_ts is None:
                continue
            series[f"{sensor}|{metric}"] = {
                "last": s.last_ts,
                "rules": {b.rule.id: b.evaluator.state() for b in s.rules},
            }
        gateways = {
            g.id: [g.online, g.status_ts, g.last_sent, g.last_received, g.live_ts, g.live_received,
                   g.baseline]
            for g in self._gateways.values()
        }
        return {"v": SNAPSHOT_VERSION, "series": series, "gateways": gateways, "book": self.book.snapshot()}

    def restore(self, snap: dict[str, Any]) -> None:
        if snap.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported engine snapshot version {snap.get('v')!r}")
        self.book.restore(snap["book"])
        for key, data in snap["series"].items():
            sensor, _, metric = key.partition("|")
            s = self._series.get((sensor, metric))
            if s is None:
                continue  # the sensor left the registry
            s.last_ts = float(data["last"])
            states = data["rules"]
            for b in s.rules:
                if b.rule.id in states:
                    try:
                        b.evaluator.load(states[b.rule.id])
                    except (KeyError, TypeError, ValueError, IndexError):
                        # The rule changed kind or shape since the snapshot: start it afresh.
                        logger.info("rule %s on %s: snapshot state not reusable", b.rule.id, key)
        active = self.book.active
        for s in self._series.values():
            s.silent = s.fresh_key is not None and s.fresh_key in active
            s.busy = any(not idle(b) for b in s.levels)
            s.flagged = any(getattr(b.evaluator, "active", False) for b in s.filters)
        for gid, vals in snap["gateways"].items():
            g = self._gateways.get(gid)
            if g is None:
                continue
            (g.online, g.status_ts, g.last_sent, g.last_received, g.live_ts, g.live_received,
             g.baseline) = vals
