"""The official Python SDK against a running chatsync server (CHATSYNC_URL), with
`--auth proxy`: each client names its user in the proxy header. Plain asserts; prints
'N passed, N failed' and exits non-zero on a failure."""

import json
import os
import sys
import time
import traceback
import uuid

import openai
from openai import OpenAI

BASE = os.environ["CHATSYNC_URL"] + "/v1"
MODEL = "scripted"
DEADLINE_S = 30


def client(user):
    return OpenAI(
        base_url=BASE,
        api_key="unused-with-proxy-auth",
        default_headers={"X-Forwarded-User": user},
        max_retries=0,
        timeout=60,
    )


alice = client("alice-py")
bob = client("bob-py")


def eventually(fetch, done, what):
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = fetch()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {value}"
        time.sleep(0.05)


def deltas(events):
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


def test_models():
    assert [m.id for m in alice.models.list().data] == [MODEL]


def test_stream_a_response_in_a_conversation():
    conv = alice.conversations.create(metadata={"topic": "sdk"})
    assert conv.id.startswith("conv_")
    assert alice.conversations.retrieve(conv.id).metadata == {"topic": "sdk"}
    with alice.responses.stream(model=MODEL, input="hello there", conversation=conv.id) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert events[0].type == "response.created"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.status == "completed"
    assert final.output_text == deltas(events)
    assert "hello there" in final.output_text
    items = alice.conversations.items.list(conv.id, order="asc").data
    assert [(i.type, i.role) for i in items] == [("message", "user"), ("message", "assistant")]
    assert alice.responses.retrieve(final.id).output_text == final.output_text


def test_resume_mid_stream_with_starting_after():
    stream = alice.responses.create(model=MODEL, input="/slow 20", stream=True)
    seen = []
    for event in stream:
        seen.append(event)
        if len([e for e in seen if e.type == "response.output_text.delta"]) == 2:
            break
    stream.close()
    response_id = seen[0].response.id
    last = seen[-1].sequence_number
    # The raw stream, resumed after the last event seen.
    rest = list(alice.responses.retrieve(response_id, stream=True, starting_after=last))
    assert rest[0].sequence_number == last + 1
    assert rest[-1].type == "response.completed"
    whole = seen + rest
    assert [e.sequence_number for e in whole] == list(range(len(whole))), "gap-free"
    assert deltas(whole) == rest[-1].response.output_text
    assert rest[-1].response.output_text.startswith("chunk 1 chunk 2")
    # The high-level helper re-reads from 0 and skips what the client had.
    with alice.responses.stream(response_id=response_id, starting_after=last) as resumed:
        again = list(resumed)
        final = resumed.get_final_response()
    assert [e.sequence_number for e in again] == [e.sequence_number for e in rest]
    assert final.output_text == rest[-1].response.output_text
    # A replay from 0 names the same content under the same numbers.
    replay = list(alice.responses.retrieve(response_id, stream=True))
    assert [e.model_dump() for e in replay[: len(seen)]] == [e.model_dump() for e in seen]


def test_background_polling_and_cancel():
    quick = alice.responses.create(model=MODEL, input="in the background", background=True)
    assert quick.status in ("queued", "in_progress")
    done = eventually(lambda: alice.responses.retrieve(quick.id), lambda r: r.status == "completed", "completion")
    assert "in the background" in done.output_text
    slow = alice.responses.create(model=MODEL, input="/slow 100", background=True)
    eventually(lambda: alice.responses.retrieve(slow.id), lambda r: r.status == "in_progress", "start")
    cancelled = alice.responses.cancel(slow.id)
    assert cancelled.status == "cancelled", cancelled.status
    assert alice.responses.retrieve(slow.id).status == "cancelled"
    events = list(alice.responses.retrieve(slow.id, stream=True))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.status == "cancelled"


WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def test_function_tool_round_trip():
    first = alice.responses.create(
        model=MODEL, input='/tool get_weather {"city": "Paris"}', tools=[WEATHER]
    )
    calls = [o for o in first.output if o.type == "function_call"]
    assert first.status == "completed" and len(calls) == 1
    assert calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    second = alice.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21 C"}],
    )
    assert second.status == "completed"
    assert "sunny, 21 C" in second.output_text
    items = alice.responses.input_items.list(second.id).data
    assert [i.type for i in items] == ["function_call_output"]


def test_approval_round_trip():
    first = alice.responses.create(model=MODEL, input='/tool calculator {"expression": "2+3"}')
    asks = [o for o in first.output if o.type == "mcp_approval_request"]
    assert first.status == "completed" and len(asks) == 1 and asks[0].name == "calculator"
    second = alice.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[{"type": "mcp_approval_response", "approval_request_id": asks[0].id, "approve": True}],
    )
    calls = [o for o in second.output if o.type == "mcp_call"]
    assert len(calls) == 1 and calls[0].output == "5", second.output
    assert "5" in second.output_text


def test_items_paging_with_after():
    conv = alice.conversations.create(
        items=[{"type": "message", "role": "user", "content": f"note {i}"} for i in range(5)]
    )
    first = alice.conversations.items.list(conv.id, limit=2, order="asc")
    assert [i.content[0].text for i in first.data] == ["note 0", "note 1"]
    assert first.has_more
    second = alice.conversations.items.list(conv.id, limit=2, order="asc", after=first.last_id)
    assert [i.content[0].text for i in second.data] == ["note 2", "note 3"]
    every = [i.content[0].text for i in alice.conversations.items.list(conv.id, limit=2, order="asc")]
    assert every == [f"note {i}" for i in range(5)]
    newest = alice.conversations.items.list(conv.id, limit=1)
    assert newest.data[0].content[0].text == "note 4", "desc by default"


def test_chat_completions_streaming_with_a_tool_call():
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    chunks = list(
        alice.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": '/tool lookup {"q": "x"}'}],
            tools=tools,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    calls = [c for ch in chunks for choice in ch.choices for c in (choice.delta.tool_calls or [])]
    assert [c.function.name for c in calls] == ["lookup"]
    assert json.loads(calls[0].function.arguments) == {"q": "x"}
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    with alice.chat.completions.stream(
        model=MODEL, messages=[{"role": "user", "content": '/tool lookup {"q": "y"}'}], tools=tools
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.name == "lookup"
    plain = alice.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi there"}])
    assert "hi there" in plain.choices[0].message.content


def test_an_idempotent_retry_makes_one_turn():
    conv = alice.conversations.create()
    key = str(uuid.uuid4())
    first = alice.responses.create(
        model=MODEL, input="only once", conversation=conv.id, extra_headers={"Idempotency-Key": key}
    )
    again = alice.responses.create(
        model=MODEL, input="only once", conversation=conv.id, extra_headers={"Idempotency-Key": key}
    )
    assert again.id == first.id
    users = [i for i in alice.conversations.items.list(conv.id).data if getattr(i, "role", None) == "user"]
    assert len(users) == 1


def test_another_users_objects_answer_404():
    conv = alice.conversations.create()
    response = alice.responses.create(model=MODEL, input="mine", conversation=conv.id)
    for call in (
        lambda: bob.conversations.retrieve(conv.id),
        lambda: bob.conversations.items.list(conv.id),
        lambda: bob.responses.retrieve(response.id),
        lambda: bob.responses.create(model=MODEL, input="theirs", conversation=conv.id),
        lambda: bob.conversations.retrieve("conv_" + "0" * 32),
    ):
        try:
            call()
        except openai.NotFoundError as e:
            assert e.body["type"] == "invalid_request_error", e.body
        else:
            raise AssertionError("expected 404")


def test_bad_input_is_a_400_in_openais_shape():
    try:
        alice.responses.create(model=MODEL, input="x", conversation="conv_1", previous_response_id="resp_1")
    except openai.BadRequestError as e:
        assert e.body["type"] == "invalid_request_error"
        assert "param" in e.body
    else:
        raise AssertionError("expected 400")


def main():
    tests = [(name, f) for name, f in globals().items() if name.startswith("test_")]
    passed = failed = 0
    for name, test in tests:
        started = time.monotonic()
        try:
            test()
        except Exception:  # noqa: BLE001 - every failure is reported and counted
            failed += 1
            print(f"FAIL {name}")
            traceback.print_exc()
        else:
            passed += 1
            print(f"ok   {name} ({time.monotonic() - started:.1f} s)")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
