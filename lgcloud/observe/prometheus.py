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

__all__ = ["Prometheus", "PrometheusError", "PrometheusRefused", "PrometheusUnreachable", "Sample"]

Sample = tuple[dict[str, str], float]  # a series' labels and its value


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
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise PrometheusRefused(
                f"Prometheus at {self.url} refused {expr!r} (HTTP {exc.code}): {detail}",
                "check the Prometheus version on the monitor VM (`lgcloud configure`)",
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PrometheusUnreachable(
                f"Prometheus at {self.url} does not answer ({reason})", "is the stack up and configured (`make up`)?"
            ) from None
        return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]
