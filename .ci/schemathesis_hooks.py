"""Schemathesis hooks for `.ci/run`.

The OpenAPI document can say that an upload's body is bytes; it cannot say
that the bytes must form a readable chat export. So a schema-valid (positive)
upload (or estimate, or preview) is sent with a small real CSV instead of random
bytes, read as CSV (a generated `format` would ask to read those bytes as some
other tool's export): it is accepted, and the stateful phase follows the links
from a real `upload_id` (progress, conversations, summary, export, delete,
resume). Negative cases go out as generated.
"""

import schemathesis

CSV = (
    b"conversation_id,sender,message\n"
    b"c1,customer,My power has been out since morning\n"
    b"c1,agent,A crew is on the way\n"
    b"c1,customer,Thanks it works now\n"
    b"c2,customer,Still no power. Third time this week!\n"
)


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    # An estimate and a preview take the same body as an upload.
    if case.method.upper() != "POST" or case.operation.path not in (
        "/api/upload",
        "/api/estimate",
        "/api/preview",
    ):
        return
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    case.query = {**(case.query or {}), "filename": "chats.csv"}
    if "format" in case.query:
        case.query["format"] = "csv"
    if case.media_type == "multipart/form-data":
        # A JSON-schema string, as the form declares it (bytes would not validate).
        case.body = {"file": CSV.decode()}
    else:
        case.body = CSV
