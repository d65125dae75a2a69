"""What an agent's SQL may contain: explicit allow-lists of sqlglot node types, functions and types.

Everything not listed is refused. Lists name classes by string so a sqlglot release that renames or
drops one only makes the list shorter (safer), never longer. Nothing here reads files, settings,
the catalogue, or builds a huge value from a small input: no repeat, lpad, range or printf, and no
replace, whose output can be its input squared (three nested calls turn 16 bytes into 4 GB).
"""

from __future__ import annotations

from sqlglot import exp

# Structure of a query: clauses, operators, literals, references (Table and Column are checked further).
_NODES = """
Select Union Intersect Except Subquery With CTE TableAlias From Join Table Where Group Having Order
Ordered Limit Offset Distinct Qualify Window WindowSpec Alias Column Identifier Star Literal Boolean
Null Paren Neg Not Tuple Bracket Interval DataType DataTypeParam Var Values In Between Is Like ILike
Escape Add Sub Mul Div IntDiv Mod DPipe EQ NEQ GT GTE LT LTE NullSafeEQ NullSafeNEQ BitwiseAnd
BitwiseOr BitwiseXor BitwiseNot BitwiseLeftShift BitwiseRightShift Any All Filter WithinGroup IgnoreNulls
RespectNulls Lateral Slice Cube Rollup GroupingSets AtTimeZone Overlaps Glob SimilarTo JSONPath
JSONPathKey JSONPathRoot JSONPathSubscript JSONPathWildcard JSONPathSlice TableSample HavingMax Fetch
LimitOptions
"""

# Scalar, aggregate and window functions that compute on the rows they are given, and nothing else.
_FUNCTIONS = """
And Or Case If Cast TryCast Coalesce Nullif Greatest Least Exists Abs Sign Round Floor Ceil Sqrt Ln Log Exp
Pow Lower Upper Length Substring Trim Concat ConcatWs StrPosition Left Right Reverse Initcap
Contains StartsWith EndsWith RegexpLike RegexpILike RegexpExtract SplitPart Typeof Count
CountIf Sum Avg Min Max GroupConcat ArrayAgg AnyValue ArgMax ArgMin LogicalAnd LogicalOr Median
Stddev StddevPop StddevSamp Variance VariancePop Corr CovarPop CovarSamp PercentileCont PercentileDisc
ApproxDistinct Quantile RowNumber Rank DenseRank PercentRank CumeDist Ntile Lag Lead FirstValue LastValue
NthValue First Last CurrentDate CurrentTime CurrentTimestamp Extract DateTrunc TimestampTrunc TimeTrunc
DatetimeTrunc DateAdd DateSub DateDiff TimestampDiff TimestampAdd TimestampSub TsOrDsAdd TsOrDsDiff
TsOrDsToDate TsOrDsToTimestamp StrToTime StrToDate TimeToStr TimeToUnix UnixToTime TimeStrToTime Date
Datetime Timestamp Year Month Day Hour Minute Second Week Quarter DayOfWeek DayOfMonth DayOfYear
JSONExtract JSONExtractScalar JSONBExtract JSONBExtractScalar JSONFormat ParseJSON JSONType JSONObject
JSONArray Array ArraySize ArrayContains MD5 SHA SHA2 Hex Unicode Chr Ascii Grouping
"""

# Functions sqlglot does not model (parsed as Anonymous), by lower-case name: harmless and bounded.
ANONYMOUS = frozenset(
    """
    date_part datepart datetime julianday unixepoch epoch epoch_ms age length_bytes char_length
    character_length octet_length instr ifnull nvl position strpos json_extract_path_text
    json_array_length json_valid list_contains array_length cardinality
    """.split()
)

# Types a value may be cast to: plain data, never object identifiers or user-defined types.
_TYPES = """
BIGINT INT SMALLINT TINYINT UBIGINT UINT USMALLINT UTINYINT HUGEINT INT128 DOUBLE FLOAT DECIMAL BIGDECIMAL
TEXT VARCHAR CHAR NCHAR NVARCHAR NAME BOOLEAN DATE TIME TIMETZ TIMESTAMP TIMESTAMPTZ TIMESTAMP_S
TIMESTAMP_MS TIMESTAMP_NS DATETIME INTERVAL JSON JSONB UUID BLOB VARBINARY BINARY ARRAY LIST
"""

# Bare words a query may carry as sqlglot Vars: date parts, interval units and sample methods.
VARS = frozenset(
    """
    YEAR YEARS MONTH MONTHS WEEK WEEKS DAY DAYS HOUR HOURS MINUTE MINUTES SECOND SECONDS MILLISECOND
    MILLISECONDS MICROSECOND MICROSECONDS QUARTER DECADE CENTURY MILLENNIUM EPOCH DOW DOY ISODOW
    ISOYEAR DAYOFWEEK DAYOFYEAR WEEKDAY YEARWEEK TIMEZONE_HOUR TIMEZONE_MINUTE BERNOULLI SYSTEM
    RESERVOIR PERCENT ROWS
    """.split()
)


def _classes(names: str) -> frozenset[type[exp.Expression]]:
    return frozenset(c for c in (getattr(exp, n, None) for n in names.split()) if isinstance(c, type))


NODES = _classes(_NODES)
FUNCTIONS = _classes(_FUNCTIONS)
TYPES = frozenset(t for t in (getattr(exp.DataType.Type, n, None) for n in _TYPES.split()) if t is not None)
