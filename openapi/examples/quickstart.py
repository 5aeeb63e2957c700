"""Segments quickstart, written against the Python client generated from
openapi/openapi.json (see openapi/generate-sdk.sh).

Creates an attribute, a few contacts and a dynamic segment, then reads the
segment's count and members. Exits non-zero when what the server answers is
not what the calls should have produced, so CI catches a spec that
generates a broken client.

    SEGMENTS_URL=http://127.0.0.1:8080 SEGMENTS_API_KEY=seg_... \
        PYTHONPATH=target/sdk python openapi/examples/quickstart.py
"""

import os
import sys
import time
import uuid

from segments_client import AuthenticatedClient
from segments_client.api.attributes import create_attribute
from segments_client.api.contacts import create_contact
from segments_client.api.segments import create_segment, get_segment
from segments_client.api.segments import list_segment_members as list_members
from segments_client.models import (
    AttributeCondition,
    AttributeConditionType,
    AttributeInList,
    AttributeInListOp,
    AttributeInput,
    AttributeKind,
    ConditionAll,
    ContactInput,
    ContactInputAttributesType0,
    ContactPage,
    Problem,
    Segment,
    DynamicSegmentInput,
    DynamicSegmentInputKind,
    TagCondition,
    TagConditionParams,
    TagConditionParamsOp,
    TagConditionType,
)


def fail(message: str) -> None:
    print(f"quickstart: {message}", file=sys.stderr)
    sys.exit(1)


def expect(value, kind, what: str):
    """Returns `value` if it is a `kind`; a Problem or nothing fails the run."""
    if isinstance(value, kind):
        return value
    if isinstance(value, Problem):
        fail(f"{what}: {value.status} {value.title}: {value.detail}")
    fail(f"{what}: unexpected answer {value!r}")


def main() -> None:
    client = AuthenticatedClient(
        base_url=os.environ.get("SEGMENTS_URL", "http://127.0.0.1:8080"),
        token=os.environ["SEGMENTS_API_KEY"],
        raise_on_unexpected_status=True,
    )
    # Names of this run's own, so the example can run against any workspace.
    run = uuid.uuid4().hex[:8]
    tag = f"vip-{run}"
    plan = f"plan_{run}"

    with client as c:
        expect(
            create_attribute.sync(
                client=c, body=AttributeInput(key=plan, type_=AttributeKind.TEXT)
            ),
            object,
            "create attribute",
        )

        people = [
            ("Ada", [tag], "gold"),
            ("Grace", [tag, "newsletter"], "silver"),
            ("Linus", ["newsletter"], "gold"),
        ]
        ids = {}
        for name, tags, tier in people:
            contact = create_contact.sync(
                client=c,
                body=ContactInput(
                    name=name,
                    external_id=f"{run}-{name.lower()}",
                    tags=tags,
                    attributes=ContactInputAttributesType0.from_dict({plan: tier}),
                ),
            )
            ids[name] = expect(contact, object, f"create {name}").id
        print(f"created contacts {ids}")

        # The tree is typed from the spec: groups, and one class per
        # condition type with its own params (a misspelled operator is not
        # an enum member).
        conditions = ConditionAll(
            all_=[
                TagCondition(
                    type_=TagConditionType.TAG,
                    params=TagConditionParams(op=TagConditionParamsOp.HAS_ANY, tags=[tag]),
                ),
                AttributeCondition(
                    type_=AttributeConditionType.ATTRIBUTE,
                    params=AttributeInList(
                        key=plan, op=AttributeInListOp.IN, values=["gold", "silver"]
                    ),
                ),
            ]
        )
        segment = expect(
            create_segment.sync(
                client=c,
                body=DynamicSegmentInput(
                    name=f"VIPs {run}",
                    kind=DynamicSegmentInputKind.DYNAMIC,
                    conditions=conditions,
                ),
            ),
            Segment,
            "create segment",
        )
        print(f"created segment {segment.id}")

        # A materialized segment says it is building until its set exists.
        deadline = time.monotonic() + 30
        while True:
            current = expect(get_segment.sync(segment.id, client=c), Segment, "get segment")
            count = current.membership.count
            if isinstance(count, int):
                break
            if time.monotonic() > deadline:
                fail("the segment never finished building")
            time.sleep(0.2)
        print(f"segment {segment.id} has {count} member(s), read from {current.membership.source.value}")

        page = expect(list_members.sync(segment.id, client=c, limit=100), ContactPage, "members")
        members = sorted(contact.id for contact in page.items)
        expected = sorted([ids["Ada"], ids["Grace"]])
        if count != 2 or members != expected:
            fail(f"expected members {expected}, got count {count} and members {members}")
        print(f"members: {[contact.name for contact in page.items]}")


if __name__ == "__main__":
    main()
