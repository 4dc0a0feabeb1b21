"""kintone's query language: parsed, checked against the app's fields, and run over stored records."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import operator
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .directory import User
from .errors import KintoneError, query_error
from .schema import LIST_TYPES, AppSchema
from .values import as_text, minute_of, parse_datetime

if TYPE_CHECKING:
    from .records import StoredRecord


@dataclasses.dataclass(frozen=True)
class _Literal:
    kind: str  # "string", "number" or "function"
    text: str  # the value, or the function's upper-case name
    args: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class _Condition:
    field: str
    operator: str  # "=", "!=", ">", "<", ">=", "<=", "in", "not in", "like", "not like", "is empty", ...
    operands: tuple[_Literal, ...]


@dataclasses.dataclass(frozen=True)
class _Junction:
    operator: str  # "and" or "or"
    left: _Condition | _Junction
    right: _Condition | _Junction


@dataclasses.dataclass(frozen=True)
class ParsedQuery:
    where: _Condition | _Junction | None
    order_by: tuple[tuple[str, bool], ...]  # (field code, descending)
    limit: int | None
    offset: int | None


_TOKEN_PATTERN = re.compile(
    r'(?P<space>[ \t\r\n\u3000]+)|(?P<string>"(?:[^"\\\x00-\x1f]|\\[^\x00-\x1f])*")'
    r"|(?P<operator>!=|>=|<=|=|<|>)|(?P<open>\()|(?P<close>\))|(?P<comma>,)"
    r'|(?P<word>[^ \t\r\n\u3000()",=!<>]+)'
)
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r"}
_NUMBER_PATTERN = re.compile(r"-?\d+(\.\d+)?")
_CLAUSE_KEYWORDS = frozenset({"order", "limit", "offset"})


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        match = _TOKEN_PATTERN.match(text, position)
        if match is None:  # an unterminated string, a raw control character in one, or a stray "!"
            raise query_error()
        kind = match.lastgroup or ""
        if kind == "string":
            body = match.group()[1:-1]
            tokens.append(("string", re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], m[1]), body)))
        elif kind != "space":
            tokens.append((kind, match.group()))
        position = match.end()
    return tokens


class QueryParser:
    """``condition [and|or condition]... [order by field asc|desc, ...] [limit N] [offset N]``."""

    def __init__(self, text: str) -> None:
        self._tokens = _tokenize(text)
        self._position = 0

    def parse(self) -> ParsedQuery:
        where = None
        if self._peek() is not None and self._keyword() not in _CLAUSE_KEYWORDS:
            where = self._parse_or()
        order_by: tuple[tuple[str, bool], ...] = ()
        limit = offset = None
        while self._peek() is not None:
            keyword = self._keyword()
            self._position += 1
            if keyword == "order" and not order_by:
                self._expect_keyword("by")
                order_by = self._parse_order_items()
            elif keyword == "limit" and limit is None:
                limit = self._parse_count()
            elif keyword == "offset" and offset is None:
                offset = self._parse_count()
            else:
                raise query_error()
        return ParsedQuery(where, order_by, limit, offset)

    def _peek(self) -> tuple[str, str] | None:
        return self._tokens[self._position] if self._position < len(self._tokens) else None

    def _next(self) -> tuple[str, str]:
        token = self._peek()
        if token is None:
            raise query_error()
        self._position += 1
        return token

    def _keyword(self) -> str | None:
        token = self._peek()
        return token[1].lower() if token is not None and token[0] == "word" else None

    def _expect_keyword(self, keyword: str) -> None:
        if self._keyword() != keyword:
            raise query_error()
        self._position += 1

    def _parse_or(self) -> _Condition | _Junction:
        node = self._parse_and()
        while self._keyword() == "or":
            self._position += 1
            node = _Junction("or", node, self._parse_and())
        return node

    def _parse_and(self) -> _Condition | _Junction:
        node = self._parse_group()
        while self._keyword() == "and":
            self._position += 1
            node = _Junction("and", node, self._parse_group())
        return node

    def _parse_group(self) -> _Condition | _Junction:
        if self._peek() == ("open", "("):
            self._position += 1
            node = self._parse_or()
            if self._next() != ("close", ")"):
                raise query_error()
            return node
        return self._parse_condition()

    def _parse_condition(self) -> _Condition:
        kind, field = self._next()
        if kind != "word":
            raise query_error()
        token = self._next()
        keyword = token[1].lower() if token[0] == "word" else None
        if token[0] == "operator":
            return _Condition(field, token[1], (self._parse_value(),))
        if keyword == "not":
            keyword = f"not {self._next()[1].lower()}"
        if keyword in ("in", "not in"):
            return _Condition(field, keyword, self._parse_value_list())
        if keyword in ("like", "not like"):
            return _Condition(field, keyword, (self._parse_value(),))
        if keyword == "is":
            negated = self._keyword() == "not"
            self._position += negated
            self._expect_keyword("empty")
            return _Condition(field, "is not empty" if negated else "is empty", ())
        raise query_error()

    def _parse_value_list(self) -> tuple[_Literal, ...]:
        if self._next() != ("open", "("):
            raise query_error()
        values = [self._parse_value()]
        while self._peek() == ("comma", ","):
            self._position += 1
            values.append(self._parse_value())
        if self._next() != ("close", ")"):
            raise query_error()
        return tuple(values)

    def _parse_value(self) -> _Literal:
        kind, text = self._next()
        if kind == "string":
            return _Literal("string", text)
        if kind != "word":
            raise query_error()
        if _NUMBER_PATTERN.fullmatch(text):
            return _Literal("number", text)
        if self._peek() != ("open", "("):
            raise query_error()
        self._position += 1
        args: list[str] = []
        while self._peek() != ("close", ")"):
            if args and self._next() != ("comma", ","):
                raise query_error()
            arg_kind, arg = self._next()
            if arg_kind not in ("word", "string"):
                raise query_error()
            args.append(arg)
        self._position += 1
        return _Literal("function", text.upper(), tuple(args))

    def _parse_order_items(self) -> tuple[tuple[str, bool], ...]:
        items = []
        while True:
            kind, field = self._next()
            if kind != "word":
                raise query_error()
            direction = self._keyword()
            if direction in ("asc", "desc"):
                self._position += 1
            items.append((field, direction == "desc"))
            if self._peek() != ("comma", ","):
                return tuple(items)
            self._position += 1

    def _parse_count(self) -> int:
        kind, text = self._next()
        if kind != "word" or not text.isdigit():
            raise query_error()
        return int(text)


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}
_ORDERED = frozenset(_COMPARISONS)
_MEMBERSHIP = frozenset({"in", "not in"})
# Which operators kintone accepts on which field type; anything else is GAIA_IQ03.
_ALLOWED_OPERATORS: dict[str, frozenset[str]] = {
    "__ID__": _ORDERED | _MEMBERSHIP,
    "RECORD_NUMBER": _ORDERED | _MEMBERSHIP,
    "NUMBER": _ORDERED | _MEMBERSHIP,
    "CREATED_TIME": _ORDERED,
    "UPDATED_TIME": _ORDERED,
    "CREATOR": _MEMBERSHIP,
    "MODIFIER": _MEMBERSHIP,
    "SINGLE_LINE_TEXT": frozenset({"=", "!=", "like", "not like"}) | _MEMBERSHIP,
    "MULTI_LINE_TEXT": frozenset({"like", "not like", "is empty", "is not empty"}),
    "DROP_DOWN": _MEMBERSHIP,
    "CHECK_BOX": _MEMBERSHIP,
    "USER_SELECT": _MEMBERSHIP,
    "DATETIME": _ORDERED,
}
_DATE_PATTERN = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})(?:T(\d{2}):(\d{2})(?::(\d{2}))?(Z|[+-]\d{2}:?\d{2})?)?"
)
_DAY = dt.timedelta(days=1)

Predicate = Callable[["StoredRecord"], bool]


@dataclasses.dataclass(frozen=True)
class _CompiledQuery:
    predicate: Predicate
    sort_keys: tuple[tuple[Callable[[StoredRecord], Any], bool], ...]

    def sort(self, records: list[StoredRecord]) -> None:
        # Stable sorts from the last key to the first leave ties in record id order.
        for key, descending in reversed(self.sort_keys):
            records.sort(key=key, reverse=descending)


class QueryCompiler:
    """Checks a parsed query against the app's fields and turns it into Python predicates."""

    def __init__(self, schema: AppSchema, user: User, now: float) -> None:
        self._schema = schema
        self._user = user
        self._now = minute_of(now)
        self._system_types = schema.system_field_types()

    def compile(self, query: ParsedQuery) -> _CompiledQuery:
        predicate = self._node(query.where) if query.where is not None else (lambda _record: True)
        sort_keys = tuple((self._sort_key(code), descending) for code, descending in query.order_by)
        return _CompiledQuery(predicate, sort_keys)

    def _node(self, node: _Condition | _Junction) -> Predicate:
        if isinstance(node, _Condition):
            return self._condition(node)
        left, right = self._node(node.left), self._node(node.right)
        if node.operator == "and":
            return lambda record: left(record) and right(record)
        return lambda record: left(record) or right(record)

    def _field_type(self, code: str) -> str:
        if code == "$id":
            return "__ID__"
        if code in self._system_types:
            return self._system_types[code]
        spec = self._schema.field(code)
        if spec is None:
            raise KintoneError(400, "GAIA_IQ11", f"The field ({code}) was not found.")
        return spec.type

    def _getter(self, code: str, field_type: str) -> Callable[[StoredRecord], Any]:
        getters: dict[str, Callable[[StoredRecord], Any]] = {
            "__ID__": lambda record: decimal.Decimal(record.record_id),
            "RECORD_NUMBER": lambda record: decimal.Decimal(record.record_id),
            "CREATED_TIME": lambda record: minute_of(record.created_at),
            "UPDATED_TIME": lambda record: minute_of(record.updated_at),
            "CREATOR": lambda record: record.creator.code,
            "MODIFIER": lambda record: record.modifier.code,
            "NUMBER": lambda record: decimal_or_none(record.values.get(code)),
            "DATETIME": lambda record: parse_datetime(record.values.get(code) or ""),
            "USER_SELECT": lambda record: [user["code"] for user in record.values.get(code) or []],
        }
        return getters.get(field_type, lambda record: record.values.get(code))

    def _condition(self, condition: _Condition) -> Predicate:
        field_type = self._field_type(condition.field)
        if condition.operator not in _ALLOWED_OPERATORS[field_type]:
            raise KintoneError(
                400,
                "GAIA_IQ03",
                f"The operator {condition.operator} cannot be used on the field {condition.field}.",
            )
        getter = self._getter(condition.field, field_type)
        if field_type in ("__ID__", "RECORD_NUMBER", "NUMBER"):
            return self._numeric(condition, getter)
        if field_type in ("CREATED_TIME", "UPDATED_TIME", "DATETIME"):
            return self._datetime(condition, getter)
        if field_type == "USER_SELECT":
            users = {self._user_or_text(literal) for literal in condition.operands}
            expected = condition.operator == "in"
            return lambda record: bool(users.intersection(getter(record))) == expected
        if field_type == "CHECK_BOX":
            wanted = {self._text(literal) for literal in condition.operands}
            expected = condition.operator == "in"

            def selected(record: StoredRecord) -> bool:
                values = getter(record)
                return bool(wanted.intersection(values)) or (not values and "" in wanted)  # in ("") = none

            return lambda record: selected(record) == expected
        return self._textual(condition, lambda record: as_text(getter(record)))

    def _numeric(self, condition: _Condition, getter: Callable[[StoredRecord], Any]) -> Predicate:
        if condition.operator in _MEMBERSHIP:
            wanted = {self._number(literal) for literal in condition.operands}
            expected = condition.operator == "in"
            return lambda record: (getter(record) in wanted) == expected
        target = self._number(condition.operands[0])
        compare = _COMPARISONS[condition.operator]
        return lambda record: (value := getter(record)) is not None and compare(value, target)

    def _datetime(self, condition: _Condition, getter: Callable[[StoredRecord], Any]) -> Predicate:
        start, end = self._datetime_range(condition.operands[0])
        tests: dict[str, Callable[[dt.datetime], bool]] = {
            "=": lambda value: start <= value <= end,
            "!=": lambda value: not start <= value <= end,
            ">": lambda value: value > end,
            ">=": lambda value: value >= start,
            "<": lambda value: value < start,
            "<=": lambda value: value <= end,
        }
        test = tests[condition.operator]
        return lambda record: (value := getter(record)) is not None and test(value)

    def _textual(self, condition: _Condition, text_of: Callable[[StoredRecord], str]) -> Predicate:
        operands = [self._user_or_text(literal) for literal in condition.operands]
        match condition.operator:
            case "=" | "!=":
                expected = condition.operator == "="
                return lambda record: (text_of(record) == operands[0]) == expected
            case "in" | "not in":
                wanted, expected = set(operands), condition.operator == "in"
                return lambda record: (text_of(record) in wanted) == expected
            case "like" | "not like":
                needle, expected = operands[0].casefold(), condition.operator == "like"
                return lambda record: (needle in text_of(record).casefold()) == expected
            case _:
                expected = condition.operator == "is empty"
                return lambda record: (text_of(record).strip() == "") == expected

    def _sort_key(self, code: str) -> Callable[[StoredRecord], Any]:
        field_type = self._field_type(code)
        if field_type in LIST_TYPES:
            raise query_error()
        getter = self._getter(code, field_type)
        return lambda record: _sort_value(getter(record))

    def _text(self, literal: _Literal) -> str:
        if literal.kind == "function":
            raise query_error()
        return literal.text

    def _user_or_text(self, literal: _Literal) -> str:
        if literal.kind == "function" and literal.text == "LOGINUSER" and not literal.args:
            return self._user.code
        return self._text(literal)

    def _number(self, literal: _Literal) -> decimal.Decimal:
        number = decimal_or_none(self._text(literal))
        if number is None:
            raise query_error()
        return number

    def _datetime_range(self, literal: _Literal) -> tuple[dt.datetime, dt.datetime]:
        if literal.kind == "function":
            return self._function_range(literal)
        match = _DATE_PATTERN.fullmatch(literal.text)
        if match is None:
            raise query_error()
        year, month, day, hour, minute, second, zone = match.groups()
        try:
            if hour is None:
                day_start = dt.datetime(int(year), int(month), int(day), tzinfo=dt.UTC)
                return day_start, day_start + _DAY - dt.timedelta(microseconds=1)
            offset = dt.timedelta(0)
            if zone and zone != "Z":
                sign = -1 if zone[0] == "-" else 1
                digits = zone[1:].replace(":", "")
                offset = sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            moment = dt.datetime(
                int(year), int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=dt.UTC
            )
        except ValueError as error:  # a date that does not exist, such as 2026-02-30
            raise query_error() from error
        return moment - offset, moment - offset

    def _function_range(self, literal: _Literal) -> tuple[dt.datetime, dt.datetime]:
        today = self._now.replace(hour=0, minute=0)
        days = {"TODAY": 0, "YESTERDAY": -1, "TOMORROW": 1}
        if literal.text == "NOW" and not literal.args:
            return self._now, self._now
        if literal.text in days and not literal.args:
            day = today + days[literal.text] * _DAY
        elif literal.text == "FROM_TODAY" and len(literal.args) == 2:
            day = _shift_day(today, literal.args[0], literal.args[1])
        else:
            raise query_error()
        return day, day + _DAY - dt.timedelta(microseconds=1)


def _shift_day(day: dt.datetime, amount_text: str, unit: str) -> dt.datetime:
    if not re.fullmatch(r"-?\d+", amount_text):
        raise query_error()
    amount = int(amount_text)
    match unit.upper():
        case "DAYS":
            return day + amount * _DAY
        case "WEEKS":
            return day + 7 * amount * _DAY
        case "MONTHS" | "YEARS":
            months = amount * (12 if unit.upper() == "YEARS" else 1)
            year, month_index = divmod(day.month - 1 + months, 12)
            month = month_index + 1
            last_day = (dt.date(day.year + year + (month == 12), month % 12 + 1, 1) - dt.date.resolution).day
            return day.replace(year=day.year + year, month=month, day=min(day.day, last_day))
        case _:
            raise query_error()


def decimal_or_none(value: Any) -> decimal.Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = decimal.Decimal(str(value))
    except decimal.InvalidOperation:
        return None
    return number if number.is_finite() else None


def _sort_value(value: Any) -> tuple[int, Any]:
    # Empty values sort before every other value.
    return (0, 0) if value is None or value == "" else (1, value)
