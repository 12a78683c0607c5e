// bench/ws/client.mjs — the WebSocket load generator of bench/run.py (workloads ws-echo and
// ws-idle), built on the `ws` package so that the client stays well ahead of the Python servers.
//
//   node bench/ws/client.mjs echo --url ws://127.0.0.1:PORT/ws [--connections 32] [--size 64]
//                                 [--warmup 2] [--duration 10] [--binary]
//   node bench/ws/client.mjs idle --url ws://127.0.0.1:PORT/ws [--connections 2000]
//                                 [--concurrency 32] [--max-failures 100]
//
// echo: every connection sends one message, waits for its echo, checks it byte for byte and
// sends the next (one message in flight per connection). The warm-up runs on the same
// connections; only echoes received within the measured window are counted and timed.
// idle: opens the connections, at most --concurrency handshakes at a time, checks each one with
// a single echo, then holds them without traffic until stdin ends (or SIGTERM / SIGINT).
//
// stdout carries one JSON object a line, read by bench/run.py:
//   {"event": "measuring"}, {"event": "measured"}   echo: the measured window starts, ends
//   {"event": "holding", "opened": N, ...}          idle: every connection is open and checked
//   {"event": "result", ...}                        last line: counts, rate, latency, errors
// Errors are counted, never fatal: connect (the handshake failed or timed out), closed (a
// connection ended while it should have stayed open), mismatch (an echo that differs from what
// was sent, or of the other frame type), stalled (an echo missing for more than --stall
// seconds), unclosed (no closing handshake within 2 s), skipped (idle: connections not tried
// after --max-failures connect errors). The exit status is 0 unless the arguments are wrong.
// The client offers no extension (no permessage-deflate), so no server compresses.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';

const WS_VERSION = JSON.parse(
  readFileSync(new URL('./node_modules/ws/package.json', import.meta.url), 'utf8'),
).version;
const CLOSE_WAIT_MS = 2000;
const HISTOGRAM_STEP_MS = 0.01; // latency buckets of 10 µs, up to 10 s (the last one is open)
const HISTOGRAM_SIZE = 1_000_000;

const USAGE = `usage: node client.mjs echo|idle --url ws://HOST:PORT/PATH [options]
  --connections N    echo: 32, idle: 2000
  --size BYTES       echo: message size (default 64, at least 24)
  --binary           echo: binary messages instead of text
  --warmup S         echo: unmeasured seconds on the same connections (default 2)
  --duration S       echo: measured seconds (default 10)
  --concurrency N    idle: handshakes in flight at once (default 32)
  --max-failures N   idle: stop opening after N connect errors (default 100)
  --stall S          an echo missing for longer is an error (default 1 for echo, 10 for idle)
  --timeout S        handshake timeout (default 10)`;

function usage(message) {
  process.stderr.write(`client.mjs: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function number(values, name, fallback, minimum) {
  if (values[name] === undefined) return fallback;
  const value = Number(values[name]);
  if (!Number.isFinite(value) || value < minimum) usage(`--${name} must be a number >= ${minimum}`);
  return value;
}

function options() {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        url: { type: 'string' },
        connections: { type: 'string' },
        size: { type: 'string' },
        binary: { type: 'boolean', default: false },
        warmup: { type: 'string' },
        duration: { type: 'string' },
        concurrency: { type: 'string' },
        'max-failures': { type: 'string' },
        stall: { type: 'string' },
        timeout: { type: 'string' },
      },
    });
  } catch (err) {
    usage(err.message);
  }
  const { values, positionals } = parsed;
  const mode = positionals[0];
  if (positionals.length !== 1 || (mode !== 'echo' && mode !== 'idle')) usage('mode: echo or idle');
  if (!values.url) usage('--url is required');
  const echo = mode === 'echo';
  return {
    mode,
    url: values.url,
    connections: Math.floor(number(values, 'connections', echo ? 32 : 2000, 1)),
    size: Math.floor(number(values, 'size', 64, 24)),
    binary: values.binary,
    warmup: number(values, 'warmup', 2, 0),
    duration: number(values, 'duration', 10, 0.1),
    concurrency: Math.floor(number(values, 'concurrency', 32, 1)),
    maxFailures: Math.floor(number(values, 'max-failures', 100, 1)),
    stallMs: number(values, 'stall', echo ? 1 : 10, 0.001) * 1000,
    timeoutMs: number(values, 'timeout', 10, 0.001) * 1000,
  };
}

// --- errors and output -------------------------------------------------------------------

const errors = { connect: 0, closed: 0, mismatch: 0, stalled: 0, unclosed: 0, skipped: 0 };
const errorDetails = {}; // the first message seen for each kind of error

function fail(kind, detail, count = 1) {
  errors[kind] += count;
  if (!(kind in errorDetails)) errorDetails[kind] = String(detail).slice(0, 200);
}

function emit(record) {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// --- connections -------------------------------------------------------------------------

// Resolves with a connection record once the handshake is done, or with null after counting a
// connect error. The record's `closing` is set when this client ends the connection itself;
// any other close counts as an error.
function connect(url, id, timeoutMs) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, {
      perMessageDeflate: false,
      handshakeTimeout: timeoutMs,
      skipUTF8Validation: true, // every echo is compared byte for byte anyway
    });
    const conn = { id, ws, closing: false, lastError: '', closed: null };
    let opened = false;
    conn.closed = new Promise((done) => {
      ws.on('close', (code, reason) => {
        if (!opened) {
          fail('connect', conn.lastError || `closed during the handshake (${code})`);
          resolve(null);
        } else if (!conn.closing) {
          const text = reason.length > 0 ? ` (${reason})` : '';
          const why = conn.lastError ? `, ${conn.lastError}` : '';
          fail('closed', `closed by the server or the network: code ${code}${text}${why}`);
        }
        done();
      });
    });
    ws.on('error', (err) => {
      conn.lastError = err.message;
    });
    ws.on('open', () => {
      opened = true;
      resolve(conn);
    });
  });
}

// Closes every connection that is still open; those whose closing handshake does not finish
// within CLOSE_WAIT_MS are counted and dropped.
async function closeAll(conns) {
  const open = conns.filter((c) => c.ws.readyState === WebSocket.OPEN);
  for (const c of open) {
    c.closing = true;
    c.ws.close(1000);
  }
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(resolve, CLOSE_WAIT_MS);
  });
  await Promise.race([Promise.all(open.map((c) => c.closed)), timeout]);
  clearTimeout(timer);
  for (const c of open) {
    if (c.ws.readyState !== WebSocket.CLOSED) {
      fail('unclosed', `no closing handshake within ${CLOSE_WAIT_MS / 1000} s`);
      c.ws.terminate();
    }
  }
}

// --- echo ----------------------------------------------------------------------------------

class Latency {
  constructor() {
    this.buckets = new Uint32Array(HISTOGRAM_SIZE);
    this.count = 0;
    this.sum = 0;
    this.max = 0;
  }

  add(ms) {
    const index = Math.min(Math.floor(ms / HISTOGRAM_STEP_MS), HISTOGRAM_SIZE - 1);
    this.buckets[index] += 1;
    this.count += 1;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
  }

  // The upper edge of the bucket holding the given fraction of the samples.
  percentile(fraction) {
    const target = Math.max(1, Math.ceil(fraction * this.count));
    let seen = 0;
    for (let i = 0; i < HISTOGRAM_SIZE; i += 1) {
      seen += this.buckets[i];
      if (seen >= target) return Math.min((i + 1) * HISTOGRAM_STEP_MS, this.max);
    }
    return this.max;
  }

  summary() {
    if (this.count === 0) return { avg: 0, p50: 0, p99: 0, max: 0 };
    return {
      avg: this.sum / this.count,
      p50: this.percentile(0.5),
      p99: this.percentile(0.99),
      max: this.max,
    };
  }
}

async function echo(opts) {
  const all = await Promise.all(
    Array.from({ length: opts.connections }, (_, i) => connect(opts.url, i, opts.timeoutMs)),
  );
  const conns = all.filter((c) => c !== null);
  const latency = new Latency();
  let phase = 'warmup';
  let start = 0;
  let end = 0;

  const sendNext = (c) => {
    c.seq += 1;
    c.payload.write(`${c.id}:${c.seq}:`, 0, 'latin1'); // seq only grows: no stale digits
    c.waiting = true;
    c.sentAt = performance.now();
    c.ws.send(c.payload, { binary: opts.binary });
  };
  const onMessage = (c, data, isBinary) => {
    const now = performance.now();
    if (!c.waiting || c.closing) return;
    c.waiting = false;
    if (isBinary !== opts.binary || !data.equals(c.payload)) {
      const kind = isBinary ? 'binary' : 'text';
      fail('mismatch', `connection ${c.id}: ${kind} echo of ${data.length} bytes differs`);
      c.closing = true;
      c.ws.terminate();
      return;
    }
    if (phase === 'measure') latency.add(now - c.sentAt);
    if (phase !== 'done') sendNext(c);
  };
  for (const c of conns) {
    c.payload = Buffer.alloc(opts.size, 'x');
    c.seq = 0;
    c.waiting = false;
    c.sentAt = 0;
    c.ws.on('message', (data, isBinary) => onMessage(c, data, isBinary));
  }

  if (conns.length > 0) {
    for (const c of conns) sendNext(c);
    await sleep(opts.warmup * 1000);
    phase = 'measure';
    start = performance.now();
    emit({ event: 'measuring' });
    await sleep(opts.duration * 1000);
    phase = 'done';
    end = performance.now();
    emit({ event: 'measured' });
    for (const c of conns) {
      const waited = end - c.sentAt;
      if (c.waiting && c.ws.readyState === WebSocket.OPEN && waited > opts.stallMs) {
        fail('stalled', `connection ${c.id}: no echo for ${(waited / 1000).toFixed(1)} s`);
      }
    }
  }
  const seconds = (end - start) / 1000;
  const summary = latency.summary();
  await closeAll(conns);
  emit({
    event: 'result',
    mode: 'echo',
    url: opts.url,
    connections: opts.connections,
    opened: conns.length,
    size: opts.size,
    binary: opts.binary,
    warmup_s: opts.warmup,
    seconds,
    messages: latency.count,
    messages_per_sec: seconds > 0 ? latency.count / seconds : 0,
    latency_avg_ms: summary.avg,
    latency_p50_ms: summary.p50,
    latency_p99_ms: summary.p99,
    latency_max_ms: summary.max,
    errors,
    error_details: errorDetails,
    node: process.version,
    ws: WS_VERSION,
  });
}

// --- idle ----------------------------------------------------------------------------------

function untilStdinEnds() {
  return new Promise((resolve) => {
    process.stdin.on('end', resolve);
    process.stdin.on('error', resolve);
    process.stdin.on('close', resolve);
    process.on('SIGTERM', resolve);
    process.on('SIGINT', resolve);
    process.stdin.resume();
  });
}

// One text message on each connection; resolves with the number whose echo did not come back
// (right) within stallMs.
async function checkEach(conns, stallMs) {
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(resolve, stallMs);
  });
  const answered = new Set();
  const checks = conns.map(
    (c) =>
      new Promise((resolve) => {
        const expected = Buffer.from(`idle ${c.id}`);
        c.ws.once('message', (data, isBinary) => {
          answered.add(c);
          if (isBinary || !data.equals(expected)) {
            fail('mismatch', `connection ${c.id}: the check message came back different`);
          }
          resolve();
        });
        c.ws.send(expected, { binary: false });
      }),
  );
  await Promise.race([Promise.all(checks), timeout]);
  clearTimeout(timer);
  const missing = conns.filter((c) => !answered.has(c) && c.ws.readyState === WebSocket.OPEN);
  if (missing.length > 0) {
    fail('stalled', `no echo of the check message within ${stallMs / 1000} s`, missing.length);
  }
}

async function idle(opts) {
  const conns = [];
  let next = 0;
  const began = performance.now();
  const opener = async () => {
    while (next < opts.connections && errors.connect < opts.maxFailures) {
      const id = next;
      next += 1;
      const conn = await connect(opts.url, id, opts.timeoutMs);
      if (conn !== null) conns.push(conn);
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, opts.connections) }, opener));
  const openSeconds = (performance.now() - began) / 1000;
  if (next < opts.connections) {
    fail('skipped', `gave up after ${errors.connect} connect errors`, opts.connections - next);
  }
  await checkEach(conns, opts.stallMs);
  emit({ event: 'holding', opened: conns.length, open_seconds: openSeconds, errors });
  const heldFrom = performance.now();
  await untilStdinEnds();
  const heldSeconds = (performance.now() - heldFrom) / 1000;
  const stillOpen = conns.filter((c) => c.ws.readyState === WebSocket.OPEN).length;
  await closeAll(conns);
  emit({
    event: 'result',
    mode: 'idle',
    url: opts.url,
    connections: opts.connections,
    opened: conns.length,
    still_open: stillOpen,
    open_seconds: openSeconds,
    held_seconds: heldSeconds,
    errors,
    error_details: errorDetails,
    node: process.version,
    ws: WS_VERSION,
  });
}

const opts = options();
await (opts.mode === 'echo' ? echo(opts) : idle(opts));
process.exit(0);
