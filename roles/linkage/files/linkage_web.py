"""What the broker and the 中間サーバー serve with alike: a Flask app whose every answer is JSON, whose
log names a request by its route only (a body or a query string could carry a person's data), and
the one refusal both raise."""

from __future__ import annotations

import datetime as dt
import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

__all__ = ["Answer", "json_app", "log", "now"]

log = logging.getLogger("gunicorn.error")  # one log stream with gunicorn's own messages


class Answer(Exception):
    """A request not carried out: its status, why, and what else the caller may be told."""

    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def json_app(name: str, failed: str) -> Flask:
    """The service's app; `failed`: what a caller is told when it fails unexpectedly (500)."""
    app = Flask(name)
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024

    @app.errorhandler(Answer)
    def answered(error: Answer):
        return jsonify({"error": error.message, **error.extra}), error.status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return jsonify({"error": error.description}), error.code or 500

    @app.errorhandler(Exception)
    def internal_error(error: Exception):
        # Neither the answer nor the log carries the error's text: it may quote a row.
        log.error(
            "%s %s: %s (SQLSTATE %s)", request.method, request.url_rule, type(error).__name__, getattr(error, "pgcode", "-")
        )
        return jsonify({"error": failed}), 500

    @app.after_request
    def access_log(response):
        log.info('%s "%s %s" %s', request.remote_addr, request.method, request.url_rule, response.status_code)
        return response

    return app
