// The official Node SDK against a running chatsync server (CHATSYNC_URL) with
// `--auth proxy`: each client names its user in the proxy header.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import OpenAI, { NotFoundError } from 'openai';

const baseURL = `${process.env.CHATSYNC_URL}/v1`;
const model = 'scripted';
const client = (user) =>
  new OpenAI({
    baseURL,
    apiKey: 'unused-with-proxy-auth',
    defaultHeaders: { 'X-Forwarded-User': user },
    maxRetries: 0,
  });
const alice = client('alice-node');
const bob = client('bob-node');

const deltas = (events) =>
  events
    .filter((e) => e.type === 'response.output_text.delta')
    .map((e) => e.delta)
    .join('');

async function eventually(fetch, done, what) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const value = await fetch();
    if (done(value)) return value;
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('models lists the scripted model', async () => {
  const models = await alice.models.list();
  assert.deepEqual(
    models.data.map((m) => m.id),
    [model],
  );
});

test('a response streams in a conversation', async () => {
  const conv = await alice.conversations.create({ metadata: { topic: 'sdk' } });
  const stream = alice.responses.stream({ model, input: 'hello node', conversation: conv.id });
  const events = [];
  for await (const event of stream) events.push(event);
  const final = await stream.finalResponse();
  assert.equal(events[0].type, 'response.created');
  assert.deepEqual(
    events.map((e) => e.sequence_number),
    events.map((_, i) => i),
  );
  assert.equal(final.status, 'completed');
  assert.equal(final.output_text, deltas(events));
  const items = await alice.conversations.items.list(conv.id, { order: 'asc' });
  assert.deepEqual(
    items.data.map((i) => i.role),
    ['user', 'assistant'],
  );
});

test('a stream resumes with starting_after', async () => {
  const stream = await alice.responses.create({ model, input: '/slow 20', stream: true });
  const seen = [];
  for await (const event of stream) {
    seen.push(event);
    if (seen.filter((e) => e.type === 'response.output_text.delta').length === 2) break;
  }
  const id = seen[0].response.id;
  const last = seen.at(-1).sequence_number;
  const rest = [];
  for await (const event of await alice.responses.retrieve(id, { stream: true, starting_after: last })) {
    rest.push(event);
  }
  assert.equal(rest[0].sequence_number, last + 1);
  assert.equal(rest.at(-1).type, 'response.completed');
  const whole = [...seen, ...rest];
  assert.deepEqual(
    whole.map((e) => e.sequence_number),
    whole.map((_, i) => i),
  );
  const text = rest.at(-1).response.output[0].content[0].text;
  assert.equal(deltas(whole), text);
  const resumed = alice.responses.stream({ response_id: id, starting_after: last });
  const again = [];
  for await (const event of resumed) again.push(event);
  assert.deepEqual(
    again.map((e) => e.sequence_number),
    rest.map((e) => e.sequence_number),
  );
  assert.equal((await resumed.finalResponse()).output_text, text);
});

test('background, polling and cancel', async () => {
  const slow = await alice.responses.create({ model, input: '/slow 100', background: true });
  assert.ok(['queued', 'in_progress'].includes(slow.status));
  await eventually(
    () => alice.responses.retrieve(slow.id),
    (r) => r.status === 'in_progress',
    'start',
  );
  const cancelled = await alice.responses.cancel(slow.id);
  assert.equal(cancelled.status, 'cancelled');
});

test('a function tool round trip', async () => {
  const tools = [
    { type: 'function', name: 'get_time', parameters: { type: 'object', properties: {} }, strict: false },
  ];
  const first = await alice.responses.create({ model, input: '/tool get_time {}', tools });
  const call = first.output.find((o) => o.type === 'function_call');
  assert.equal(call.name, 'get_time');
  const second = await alice.responses.create({
    model,
    previous_response_id: first.id,
    tools,
    input: [{ type: 'function_call_output', call_id: call.call_id, output: 'noon' }],
  });
  assert.match(second.output_text, /noon/);
});

test('an approval round trip', async () => {
  const first = await alice.responses.create({ model, input: '/tool calculator {"expression": "6*7"}' });
  const ask = first.output.find((o) => o.type === 'mcp_approval_request');
  const second = await alice.responses.create({
    model,
    previous_response_id: first.id,
    input: [{ type: 'mcp_approval_response', approval_request_id: ask.id, approve: true }],
  });
  assert.equal(second.output.find((o) => o.type === 'mcp_call').output, '42');
});

test('items page with after', async () => {
  const conv = await alice.conversations.create({
    items: [0, 1, 2].map((i) => ({ type: 'message', role: 'user', content: `n${i}` })),
  });
  const first = await alice.conversations.items.list(conv.id, { limit: 2, order: 'asc' });
  assert.equal(first.has_more, true);
  const second = await alice.conversations.items.list(conv.id, { limit: 2, order: 'asc', after: first.last_id });
  assert.deepEqual(
    second.data.map((i) => i.content[0].text),
    ['n2'],
  );
});

test('chat completions stream a tool call', async () => {
  const stream = await alice.chat.completions.create({
    model,
    messages: [{ role: 'user', content: '/tool lookup {"q": "z"}' }],
    tools: [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object' } } }],
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  const calls = chunks.flatMap((c) => c.choices.flatMap((ch) => ch.delta.tool_calls ?? []));
  assert.deepEqual(
    calls.map((c) => c.function.name),
    ['lookup'],
  );
  assert.ok(chunks.at(-1).usage.total_tokens > 0);
});

test('an idempotent retry returns the same response', async () => {
  const conv = await alice.conversations.create();
  const key = randomUUID();
  const body = { model, input: 'node once', conversation: conv.id };
  const first = await alice.responses.create(body, { headers: { 'Idempotency-Key': key } });
  const again = await alice.responses.create(body, { headers: { 'Idempotency-Key': key } });
  assert.equal(again.id, first.id);
  const items = await alice.conversations.items.list(conv.id);
  assert.equal(items.data.filter((i) => i.role === 'user').length, 1);
});

test("another user's conversation answers 404", async () => {
  const conv = await alice.conversations.create();
  await assert.rejects(bob.conversations.retrieve(conv.id), NotFoundError);
});
