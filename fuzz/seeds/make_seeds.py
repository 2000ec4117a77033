#!/usr/bin/env python3
"""Writes the seed corpus (fuzz/seeds/<target>/) from examples/sample_export.csv
and a few hand-made files. Run from the repository root: python3 fuzz/seeds/make_seeds.py
XLSX seeds are written with stored (uncompressed) zip entries, so that mutations
land in the XML rather than in deflate streams; one is deflated as Excel writes it."""
import csv, io, json, os, zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")


def put(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


with open(os.path.join(ROOT, "examples", "sample_export.csv"), encoding="utf-8") as f:
    lines = f.read().splitlines(keepends=True)
rows = list(csv.DictReader(lines[:13]))

# CSV: sample slices, other delimiters and encodings, quoting.
put("ingest_csv", "sample_12.csv", "".join(lines[:13]))
put("ingest_csv", "sample_semicolon.csv", "".join(lines[:6]).replace(",", ";"))
put("ingest_csv", "sample_tab_bom.csv", b"\xef\xbb\xbf" + "".join(lines[:6]).replace(",", "\t").encode())
put("ingest_csv", "sample_utf16.csv", b"\xff\xfe" + "".join(lines[:4]).encode("utf-16-le"))
put("ingest_csv", "quoted.csv",
    'Chat ID,Author-Type,BODY,sent_at\n"c1",customer,"multi\nline, with ""quotes""",1772362800\n'
    'c1,agent,ok,01/03/2026 11:00\nc2,visitor,=1+1,\n')

# JSON: rows, nested conversations, a wrapper object.
put("ingest_json", "rows.json", json.dumps(rows[:6], ensure_ascii=False, indent=1))
nested = {}
for r in rows:
    nested.setdefault(r["conversation_id"], []).append(
        {"sender": r["sender"], "message": r["message"], "timestamp": r["timestamp"]})
put("ingest_json", "nested.json",
    json.dumps([{"id": k, "messages": v} for k, v in nested.items()], ensure_ascii=False))
put("ingest_json", "wrapper.json", json.dumps(
    {"export": "x", "conversations": [{"ticket_id": 7, "messages": [
        {"role": "user", "text": "hi", "created_at": 1772362800},
        {"role": "agent", "text": True, "created_at": None}]}]}))
put("ingest_json", "late_id.json",
    '[{"messages":[{"from":"customer","body":"a"}],"chat_id":"late"}]')

# JSONL: one message per line, and a conversation per line.
put("ingest_jsonl", "rows.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[:8]))
put("ingest_jsonl", "mixed.jsonl",
    '{"chat_id":"a","role":"customer","text":"x"}\n\nnot json\n'
    '{"id":"b","messages":[{"role":"bot","text":"*977#"}]}\n[1,2]\n')


# XLSX: a minimal workbook by hand (shared strings, inline strings, numbers, a date).
def xlsx(cells, compression=zipfile.ZIP_STORED, shared=True):
    strings = []
    def col(i):
        return chr(ord("A") + i)
    xml_rows = []
    for r, row in enumerate(cells, start=1):
        out = []
        for c, v in enumerate(row):
            ref = f"{col(c)}{r}"
            if isinstance(v, (int, float)):
                out.append(f'<c r="{ref}"><v>{v}</v></c>')
            elif shared:
                strings.append(v)
                out.append(f'<c r="{ref}" t="s"><v>{len(strings) - 1}</v></c>')
            else:
                out.append(f'<c r="{ref}" t="inlineStr"><is><t>{v}</t></is></c>')
        xml_rows.append(f'<row r="{r}">{"".join(out)}</row>')
    sheet = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
             '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
             f'<dimension ref="A1:{col(len(cells[0]) - 1)}{len(cells)}"/>'
             f'<sheetData>{"".join(xml_rows)}</sheetData></worksheet>')
    sst = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
           f'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="{len(strings)}">'
           + "".join(f"<si><t>{s}</t></si>" for s in strings) + "</sst>")
    files = {
        "[Content_Types].xml": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
        '</Types>',
        "_rels/.rels": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
        '</Relationships>',
        "xl/workbook.xml": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>'
        '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>'
        '</Relationships>',
        "xl/worksheets/sheet1.xml": sheet,
        "xl/sharedStrings.xml": sst,
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, text in files.items():
            z.writestr(name, text)
    return buf.getvalue()


header = ["Conversation ID", "Sender Type", "Body", "Sent At"]
body = [[r["conversation_id"], r["sender"], r["message"], r["timestamp"]] for r in rows[:5]]
put("ingest_xlsx", "shared.xlsx", xlsx([header] + body))
put("ingest_xlsx", "inline.xlsx", xlsx([header] + body, shared=False))
put("ingest_xlsx", "numbers.xlsx", xlsx([header, [42, "customer", "hi", 46082.5], [42, "agent", 7, 1772362800]]))
put("ingest_xlsx", "deflated.xlsx", xlsx([header] + body, compression=zipfile.ZIP_DEFLATED))

# LLM replies: good, fenced, refused, cut, schema slips.
good = {"sentiment": {"label": "negative", "score": -0.6},
        "satisfaction": {"score": 2, "label": "dissatisfied"},
        "resolved": False, "summary": "Outage not fixed."}
def completion(content, finish="stop", refusal=None):
    return json.dumps({"id": "x", "choices": [{"index": 0, "message": {"role": "assistant",
        "content": content, "refusal": refusal}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 30}})
put("llm_reply", "good.json", completion(json.dumps(good)))
put("llm_reply", "fenced.json", completion("```json\n" + json.dumps(good) + "\n```"))
put("llm_reply", "refused.json", completion(None, refusal="I can't help with that"))
put("llm_reply", "cut.json", completion('{"sentiment":', finish="length"))
put("llm_reply", "slip.json", completion(json.dumps({**good, "satisfaction": {"score": 4.0000001, "label": "neutral"},
                                                      "sentiment": {"label": "positive", "score": 1.0000001}})))
put("llm_reply", "content_only.txt", json.dumps(good))

# Rate-limit headers, as OpenAI, Azure and a 429 send them.
put("rate_limit_headers", "openai.txt",
    "x-ratelimit-limit-requests:5000\nx-ratelimit-limit-tokens:800000\n"
    "x-ratelimit-remaining-requests:4999\nx-ratelimit-remaining-tokens:0\n"
    "x-ratelimit-reset-requests:12ms\nx-ratelimit-reset-tokens:6m0.5s\n")
put("rate_limit_headers", "retry.txt", "retry-after-ms:250\nretry-after:2\n")
put("rate_limit_headers", "date.txt", "retry-after:Wed, 25 Nov 2026 12:00:00 GMT\n")
put("rate_limit_headers", "azure.txt", "x-ratelimit-limit-requests:-1\nx-ratelimit-remaining-tokens:-1\n")
put("rate_limit_headers", "go_durations.txt", "x-ratelimit-remaining-requests:0\nx-ratelimit-reset-requests:1h2m3.5s\n")

# Config: the committed config.toml, and a small one.
with open(os.path.join(ROOT, "config.toml"), encoding="utf-8") as f:
    committed = f.read()
put("config_load", "committed.bin", committed.encode() + b"\x00")
put("config_load", "small.bin", b'[server]\ntoken = "abc"\n[analyzer]\nconcurrency = 7\n\x00')
# Then NUL-separated variables: a byte < 0x80 picks CONFIG_VARS (0 = POWERPULSE_TOKEN,
# 1 = OPENAI_BASE_URL, 3 = POWERPULSE__SERVER__TOKEN); 0x80 means POWERPULSE__NAME=value.
put("config_load", "env_token.bin", b'\x00\x00123456\x00\x03"quoted"\x00\x01http://127.0.0.1:9/v1')
put("config_load", "env_generic.bin",
    b'[analyzer]\nconcurrency = 3\n\x00\x80ANALYZER__OPENAI__REQUESTS_PER_MINUTE=500'
    b'\x00\x80SERVER__API_KEY=s3cr3t-value\x00\x80ANALYZER__OPENAI__API_VERSION=2024-06-01')
put("config_load", "env_prices.bin",
    b'[analyzer.openai.prices.m]\ninput_per_million = 1.0\noutput_per_million = 2.0\n'
    b'\x00\x80ANALYZER__OPENAI__PRICES__GPT_KEY=hunter2-hunter2')

# The exports of chat apps and helpdesks: the fixtures of tests/data/exports.
EXPORTS = os.path.join(ROOT, "tests", "data", "exports")


def export(name):
    with open(os.path.join(EXPORTS, name), "rb") as f:
        return f.read()


put("ingest_whatsapp", "android.txt", export("WhatsApp Chat with Ram Sharma.txt"))
put("ingest_whatsapp", "ios.txt", export("_chat.txt"))
put("ingest_whatsapp", "us_12h.txt",
    "3/18/22, 2:56 PM - Ram: hi\n3/18/22, 2:57 PM - Desk: hello\nmore\n3/19/22, 9:00 AM - Ram: \u200eimage omitted\n")
dialects = {  # the first byte picks the reader (fuzz/src/lib.rs: ingest_dialect)
    0: "messenger/messages/inbox/hari_gurung/message_1.json",
    1: "result.json",
    2: "intercom_conversations.json",
    3: "zendesk_tickets.json",
    4: "freshdesk_tickets.json",
    5: "chatwoot_conversations.json",
}
for pick, name in dialects.items():
    put("ingest_dialects", f"{pick}_{os.path.basename(name)}", bytes([pick]) + export(name))
put("ingest_dialects", "1_all_chats.json", bytes([1]) + export("telegram_all_chats.json"))
put("ingest_threads", "twcs.csv", export("twcs_sample.csv"))
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
    z.writestr("WhatsApp Chat with Ram Sharma.txt", export("WhatsApp Chat with Ram Sharma.txt"))
    z.writestr("IMG-20240403-WA0001.jpg", b"\xff\xd8\xff")
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_STORED) as zi:
        zi.writestr("_chat.txt", export("_chat.txt"))
    z.writestr("WhatsApp Chat - Sita Thapa.zip", inner.getvalue())
    z.writestr("messages/inbox/hari_gurung/message_1.json",
               export("messenger/messages/inbox/hari_gurung/message_1.json"))
put("ingest_zip", "chats.zip", buf.getvalue())
