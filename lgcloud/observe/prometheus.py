"""The lab's Prometheus, as the controller asks it: ``Prometheus(url).query(expr)``.

Where it listens is what the monitor role published at the last ``lgcloud configure``
(``lgcloud.state.facts``); Prometheus not answering, or refusing a query, is an operator's
matter (exit 3), never a traceback.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from ..errors import EXIT_NOT_EVALUATED, OperatorError

__all__ = ["Prometheus", "PrometheusError", "PrometheusRefused", "PrometheusUnreachable", "Sample", "Series"]

Sample = tuple[dict[str, str], float]  # a series' labels and its value
Series = tuple[dict[str, str], list[tuple[float, float]]]  # a series' labels and its (time, value) samples


class PrometheusError(OperatorError):
    """Prometheus could not give an answer; nothing asked of it can be evaluated."""

    exit_code = EXIT_NOT_EVALUATED


class PrometheusUnreachable(PrometheusError):
    """Prometheus did not answer."""


class PrometheusRefused(PrometheusError):
    """Prometheus answered with an error: the query, or Prometheus itself, is wrong."""


class Prometheus:
    """The HTTP query API of one Prometheus server."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """An instant query (at `at`, epoch seconds, or now): every series' labels and value."""
        return [(r["metric"], float(r["value"][1])) for r in self._ask("query", expr, at)]

    def samples(self, expr: str, at: float | None = None) -> list[Series]:
        """The raw samples of a range selector such as ``probe_success[1h]`` (ending at `at`)."""
        return [(r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in self._ask("query", expr, at)]

    def _ask(self, api: str, expr: str, at: float | None) -> list[dict]:
        # POST: the service-level queries name many spans of time and outgrow a URL.
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        request = urllib.request.Request(
            f"{self.url}/api/v1/{api}",
            data=urllib.parse.urlencode(params).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise PrometheusRefused(
                f"Prometheus at {self.url} refused {expr[:200]!r} (HTTP {exc.code}): {detail}",
                "check the Prometheus version on the monitor VM (`lgcloud configure`)",
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PrometheusUnreachable(
                f"Prometheus at {self.url} does not answer ({reason})", "is the stack up and configured (`make up`)?"
            ) from None
        result: list[dict] = body["data"]["result"]
        return result
