"""Hooks for schemathesis (scripts/schemathesis.toml loads them).

positive_data_acceptance sends schema-valid requests and expects them
accepted. A few rules depend on what the workspace already holds, or compare two
fields, which no schema can state; a refusal under one of them is not a
contract failure.
Each is recognised by the problem the server answers, exactly, and only
when every error of that problem is one of them: any other refusal of a
schema-valid request still fails the run.
"""

import re

import schemathesis

# Problem codes whose refusal depends on stored data, with the rule.
DATA_DEPENDENT = {
    # A condition refers to a segment id that names no segment here.
    "unknown_segment",
    # A value for an attribute whose declared type is another
    # (PUT /v1/contacts/{id}/attributes/{key}, attribute conditions).
    "type_mismatch",
    # An attribute key this workspace has not declared.
    "undeclared_attribute",
    # An operator the attribute's declared type does not have.
    "operator_mismatch",
    # An order between two fields (`to` before `from`, `max` below `min`):
    # JSON Schema compares a value with constants, never with another field.
    "empty_range",
    # A condition tree deeper, or with more conditions, than the operator's
    # `[engine] max_depth` / `max_conditions` (5 and 100 by default): a
    # recursive schema can bound neither, and the limits are configuration.
    "too_deep",
    "too_many_conditions",
}

# A cursor is a token the server issued (`next_cursor`); any other string
# of the stated shape is refused with this detail.
FOREIGN_CURSOR = "not a cursor returned by this endpoint"


# Where an attribute's value sits: a contact's attributes, the body of
# PUT /v1/contacts/{id}/attributes/{key}, an attribute condition's operands.
ATTRIBUTE_VALUE = re.compile(r"^(/attributes/[^/]+|/value|.*/params/(value|min|max|values/[0-9]+))$")

# The value's schema is any scalar; the declared type decides the rest: a
# date attribute reads its text as an instant, in years 1000-9999.
ATTRIBUTE_VALUE_CODES = {"invalid_date", "out_of_range"}


def _data_dependent(error):
    if error.get("code") in DATA_DEPENDENT:
        return True
    at_value = ATTRIBUTE_VALUE.match(error.get("pointer") or "")
    if at_value and error.get("code") in ATTRIBUTE_VALUE_CODES:
        return True
    about_cursor = error.get("parameter") == "cursor" or error.get("pointer") == "/cursor"
    return about_cursor and error.get("detail") == FOREIGN_CURSOR


@schemathesis.hook
def filter_failure(ctx, failure, case, response):
    if failure.code != "ST202":
        return True
    try:
        problem = response.json()
    except Exception:
        return True
    errors = problem.get("errors") if isinstance(problem, dict) else None
    if not errors:
        return True
    return not all(_data_dependent(error) for error in errors)
