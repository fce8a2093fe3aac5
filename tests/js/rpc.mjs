// Runs supabase-js calls against a PostgREST (here: the test suite's
// stand-in) and prints one JSON line per call: {name, data, error, count, status}.
// Usage: node rpc.mjs URL KEY CALLS_JSON, where CALLS_JSON is a list of
// {name, fn, args, options, then: [[method, ...arguments], ...]}.
import { createClient } from '@supabase/supabase-js';
import ws from 'ws';

const [url, key, callsJson] = process.argv.slice(2);
// Node 20 has no native WebSocket: without a transport createClient throws.
const client = createClient(url, key, { realtime: { transport: ws } });
for (const call of JSON.parse(callsJson)) {
  let request = client.rpc(call.fn, call.args, call.options ?? {});
  for (const [method, ...rest] of call.then ?? []) request = request[method](...rest);
  const { data, error, count, status } = await request;
  console.log(JSON.stringify({ name: call.name, data, error, count, status }));
}
