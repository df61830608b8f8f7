"""番号連携 through a drill: a clerk of one municipality's 税 asks another for a moved person's
income every second while the disaster happens, and afterwards every query that was answered must
be on record at both ends.

Before the drill a new person moves from the provider to the requester (lgcloud.ops.move_in);
during it the requester's office runs an 所得照会 errand (lgcloud.ops.drill.clerk); the linkage's
RTO is the longest time the office went without an answered query, from the injection on, and a
provided record is lost when a query the office was answered is missing from either side's
情報提供等記録 in the databases that serve afterwards."""

from __future__ import annotations

from ...model.naming import CHUKAN_DATABASE
from ..lab import Lab, LabError, Pair
from ..move_in import TAX_SYSTEM, move_person
from .clerk import REQUEST_ID, Attempt, Clerk, income_inquiry
from .measure import primary_of, recovery
from .report import LinkageResult

__all__ = ["LINKAGE_INTERVAL", "LinkageResult", "LinkageWatch"]

LINKAGE_INTERVAL = 1.0  # seconds between two queries
INCOME = 3_600_000


class LinkageWatch:
    """The requester's 所得照会 clerk, and the verdict on what the linkage kept."""

    def __init__(self, lab: Lab, requester: Pair, provider: Pair) -> None:
        self.lab, self.requester, self.provider = lab, requester, provider
        self.clerk: Clerk | None = None

    @classmethod
    def among(cls, lab: Lab, pairs: list[Pair]) -> LinkageWatch | None:
        """A watch between two synchronous municipalities of the drill that run 税 (no write of
        theirs may be lost), or None when there are not two."""
        eligible = [p for p in pairs if p.replication == "sync" and TAX_SYSTEM in lab.cfg.municipality(p.id).systems]
        return cls(lab, eligible[1], eligible[0]) if len(eligible) >= 2 else None

    def start(self) -> None:
        moved = move_person(self.lab, self.provider, self.requester, INCOME)
        errand = income_inquiry(moved.after["ref"], moved.income_year)
        self.clerk = Clerk(self.lab, self.requester.id, LINKAGE_INTERVAL, errand)
        self.clerk.start()

    def wait_served(self, since: float, timeout: float) -> bool:
        return self.clerk is not None and self.clerk.wait_served(since, timeout)

    def stop(self) -> list[Attempt]:
        """The clerk's attempts; once stopped, the watch has nothing more to give (a second stop is a no-op)."""
        clerk, self.clerk = self.clerk, None
        if clerk is None:
            return []
        try:
            return clerk.stop()
        except LabError:  # a terminal that cannot be reached: nothing of its clerk can be counted
            return []

    def judge(self, attempts: list[Attempt], injection: float, rto_target: float) -> LinkageResult:
        answered = [a.code for a in attempts if a.code]
        lost = sorted(set(answered) - (self._kept(self.requester, answered) & self._kept(self.provider, answered)))
        rto = recovery(attempts, injection)
        result = LinkageResult(
            self.requester.id,
            self.provider.id,
            len(attempts),
            len(answered),
            rto,
            rto_target,
            lost,
            passed=True,
        )
        if not answered:
            result.problems.append("no query was answered")
        if rto is None:
            result.problems.append("the linkage was not answering again by the end of the drill")
        elif rto > rto_target:
            result.problems.append(f"the linkage's RTO {rto:.2f} s is over the target {rto_target:g} s")
        if lost:
            result.problems.append(f"{len(lost)} answered queries missing from the 情報提供等記録")
        result.passed = not result.problems
        return result

    def _kept(self, pair: Pair, request_ids: list[str]) -> set[str]:
        """Which of the queries the tenant's records name, in the database that serves now."""
        if not request_ids:
            return set()
        if not all(REQUEST_ID.fullmatch(r) for r in request_ids):  # pasted into SQL run as postgres
            raise LabError(f"refusing to look up malformed request ids in {pair.id}'s records")
        listed = ",".join(f"'{r}'" for r in request_ids)
        found = self.lab.sql(
            primary_of(self.lab, pair),
            f"SELECT DISTINCT record::jsonb ->> 'request_id' FROM chukan.records"
            f" WHERE record::jsonb ->> 'request_id' IN ({listed}) AND record::jsonb ->> 'outcome' = 'provided'",
            database=CHUKAN_DATABASE,
            timeout=60,
        )
        return set(found.split())
