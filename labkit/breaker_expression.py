"""Traefik's circuit-breaker expression grammar, checked before anything is written.

One malformed expression freezes Traefik's whole etcd provider, so an expression is parsed
here first and refused with a LabError naming what is valid.
"""

from __future__ import annotations

import re
from typing import NoReturn

from .errors import LabError

# Traefik's circuit-breaker grammar. Its type checks are strict (measured on 3.7): ratios
# compare with a decimal (0.5, not 1), latency with whole milliseconds, the quantile is a
# decimal and the status codes are whole numbers.
_EXPRESSION_HELP = (
    "valid: NetworkErrorRatio(), ResponseCodeRatio(from, to, dividedByFrom, dividedByTo) "
    "(whole status codes) or LatencyAtQuantileMS(quantile) (a decimal such as 50.0), "
    "compared with > < >= <= == != to a number (ratios: a decimal such as 0.5; latency: "
    "whole milliseconds), combined with && and || and parentheses; "
    "e.g. 'ResponseCodeRatio(500, 600, 0, 600) > 0.5 || LatencyAtQuantileMS(50.0) > 100'"
)
_LEX = re.compile(r"\s*(?:(\d+\.\d+|\d+)|([A-Za-z_]\w*)|(&&|\|\||>=|<=|==|!=|>|<)|([(),]))")


class _ExpressionParser:
    def __init__(self, text: str):
        self.tokens: list[str] = []
        position = 0
        text = text.rstrip()
        while position < len(text):
            match = _LEX.match(text, position)
            if not match:
                self.fail(f"unexpected character {text[position:].lstrip()[:1]!r}")
            self.tokens.append(match.group(match.lastindex or 0))
            position = match.end()
        self.index = 0

    def fail(self, reason: str) -> NoReturn:
        raise LabError(f"invalid circuit-breaker expression: {reason}; {_EXPRESSION_HELP}")

    def peek(self) -> str | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            self.fail(f"expected {expected or 'more'}, got {token or 'the end'}")
        self.index += 1
        return token

    def number(self, decimal: bool) -> None:
        token = self.take()
        if not re.fullmatch(r"\d+\.\d+" if decimal else r"\d+", token):
            self.fail(f"expected a {'decimal' if decimal else 'whole'} number, got {token}")

    def parse(self) -> None:
        self.disjunction()
        if self.peek() is not None:
            self.fail(f"unexpected {self.peek()}")

    def disjunction(self) -> None:
        self.conjunction()
        while self.peek() == "||":
            self.take()
            self.conjunction()

    def conjunction(self) -> None:
        self.comparison()
        while self.peek() == "&&":
            self.take()
            self.comparison()

    def comparison(self) -> None:
        if self.peek() == "(":
            self.take()
            self.disjunction()
            self.take(")")
            return
        is_ratio = self.metric()
        if self.take() not in (">", "<", ">=", "<=", "==", "!="):
            self.fail(f"expected a comparison after the metric, got {self.tokens[self.index - 1]}")
        self.number(decimal=is_ratio)

    def metric(self) -> bool:
        """Parse one metric call; True when it is a ratio (compared with a decimal)."""
        name = self.take()
        self.take("(")
        if name == "NetworkErrorRatio":
            pass
        elif name == "LatencyAtQuantileMS":
            self.number(decimal=True)
            if not 0 < float(self.tokens[self.index - 1]) <= 100:
                self.fail("the quantile must be above 0 and at most 100")
        elif name == "ResponseCodeRatio":
            codes = []
            for i in range(4):
                if i:
                    self.take(",")
                self.number(decimal=False)
                codes.append(int(self.tokens[self.index - 1]))
            if not (codes[0] < codes[1] and codes[2] < codes[3]):
                self.fail("each status-code range must run from low to high")
        else:
            self.fail(f"unknown metric {name!r}")
        self.take(")")
        return name != "LatencyAtQuantileMS"


def check_expression(expression: object) -> str:
    """The expression if Traefik's circuit breaker will accept it, else a LabError saying why."""
    if not isinstance(expression, str) or not expression.strip():
        raise LabError(f"the circuit-breaker expression must be a string; {_EXPRESSION_HELP}")
    _ExpressionParser(expression).parse()
    return expression.strip()
