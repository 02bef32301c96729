#!/usr/bin/env node
// Baseline D, the peer: the broadcast server a Node user writes with npm `ws`.
//
//   node bench/baselines/ws_broadcast.js --control FILE [--port 0] [--pools 2]
//
// Broadcasting is the `ws` README's loop: for every subscribed client that is open,
// `client.send(data, { binary: false })`; the event is JSON-encoded once and `ws` frames
// it for each client (no pre-framing). Requests get the fixed replies of common.py
// (auth -> a token, subscribe -> the names). Events and pacing follow the `bench`
// source (bench/plugins/sysadmd/plugins/bench_source.py) exactly: the same JSON, "t"
// from CLOCK_MONOTONIC (process.hrtime, as the load client reads it), the same control
// file polled every 50 ms, "t" the time an event was due when published at a rate, the same schedule (`rate` > 0: every event due at each
// wake-up, then sleep until the next is due; `rate` = 0: `burst` events per turn of the
// event loop, setImmediate between turns so sockets are written in between).
// Its one dependency, `ws`, is the load client's, pinned by ../client/package-lock.json.

'use strict';

const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');

const requireClient = createRequire(path.join(__dirname, '..', 'client', 'package.json'));
const { WebSocketServer, WebSocket } = requireClient('ws');

const TOKEN = '0'.repeat(64);
const CONTROL_POLL_MS = 50;
const SETTINGS_KEYS = ['rate', 'burst', 'count', 'duration', 'pools'];
const POOL = {
  size: '107G', alloc: '13.1G', free: '93.9G', frag: '6%', expandsz: '-', dedup: '1.00x',
  altroot: '-', capacity: '12%', health: 'ONLINE', priority: '2 - Information',
};

function parseArgs(argv) {
  const opts = { port: 0, control: null, pools: 2 };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in opts)) throw new Error(`unknown option --${key}`);
    opts[key] = key === 'control' ? argv[i + 1] : Number(argv[i + 1]);
  }
  if (!opts.control) throw new Error('--control FILE is required');
  return opts;
}

const seconds = () => Number(process.hrtime.bigint()) / 1e9;

// The bench source's event args, keys in the same order ("t" and "n" first).
function eventArgs(n, pools, t) {
  const zpools = {};
  for (let i = 0; i < pools; i++) zpools[`pool${i}`] = { ...POOL };
  return {
    t: t === undefined ? Number(process.hrtime.bigint()) : t, n, hostname: 'bench-host.example.org',
    hostnamechanged: 'false', zpools, priority: '2 - Information',
  };
}

// common.reply: [reply, subscribe?]
function reply(request) {
  const { namespace, name, id } = request;
  let args = {};
  let subscribe = false;
  if (namespace === 'rpc' && typeof name === 'string' && name.startsWith('auth')) {
    args = [TOKEN, 900];
  } else if (namespace === 'events' && name === 'subscribe') {
    const names = request.args;
    args = { subscribe: typeof names === 'string' ? [names] : names };
    subscribe = true;
  }
  return [{ namespace, name: 'response', id, args }, subscribe];
}

// The bench source's Pacer.
class Pacer {
  constructor(publish, settings) {
    this.publish = publish; this.settings = { ...settings };
    this.timer = null; this.run = null; this.published = 0;
  }

  startRun(changes) {
    this.stopRun();
    const s = { ...this.settings, ...changes };
    if (s.rate < 0) return;
    const now = seconds();
    this.run = {
      rate: Number(s.rate), burst: Math.max(1, s.burst | 0), count: s.count | 0, pools: s.pools | 0,
      end: s.duration > 0 ? now + s.duration : null, start: now, startNs: Number(process.hrtime.bigint()), sent: 0,
    };
    this.timer = setImmediate(() => this.tick());
  }

  stopRun() {
    if (this.timer !== null) { clearTimeout(this.timer); clearImmediate(this.timer); }
    this.timer = null; this.run = null;
  }

  tick() {
    this.timer = null;
    const run = this.run;
    const now = seconds();
    if (run.end !== null && now >= run.end) { this.stopRun(); return; }
    let n = run.rate > 0 ? Math.floor((now - run.start) * run.rate) + 1 - run.sent : run.burst;
    if (run.count) n = Math.min(n, run.count - run.sent);
    n = Math.max(n, 0);
    const first = this.published + 1;
    for (let k = 0; k < n; k++) {
      // At a rate, "t" is when the event was due (as in the bench source).
      const t = run.rate > 0 ? run.startNs + Math.floor((run.sent + k) * (1e9 / run.rate)) : undefined;
      this.publish(eventArgs(first + k, run.pools, t));
    }
    this.published += n; run.sent += n;
    if (run.count && run.sent >= run.count) { this.stopRun(); return; }
    if (run.rate > 0) {
      const delay = Math.max(0, run.start + run.sent / run.rate - seconds());
      this.timer = setTimeout(() => this.tick(), delay * 1000);
    } else {
      this.timer = setImmediate(() => this.tick());
    }
  }
}

function followControl(file, pacer) {
  let seen = null;
  setInterval(() => {
    let data;
    try { data = fs.readFileSync(file, 'utf8'); } catch (e) { return; }
    if (data === seen) return;
    let changes;
    try { changes = JSON.parse(data); } catch (e) { return; }
    seen = data;
    const picked = {};
    for (const key of SETTINGS_KEYS) if (key in changes) picked[key] = changes[key];
    pacer.startRun(picked);
  }, CONTROL_POLL_MS);
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const subscribers = new Set();
  const wss = new WebSocketServer({ host: '127.0.0.1', port: opts.port, maxPayload: 65536 });
  wss.on('connection', (ws) => {
    ws.on('error', () => {});
    ws.on('close', () => subscribers.delete(ws));
    ws.on('message', (data) => {
      const [frame, subscribe] = reply(JSON.parse(data));
      if (subscribe) subscribers.add(ws);
      ws.send(JSON.stringify(frame));
    });
  });

  // The README's broadcast.
  const publish = (args) => {
    const data = Buffer.from(JSON.stringify({ namespace: 'events', name: 'bench', id: 'none', args }));
    subscribers.forEach((client) => {
      if (client.readyState === WebSocket.OPEN) client.send(data, { binary: false });
    });
  };

  const pacer = new Pacer(publish, { rate: -1, burst: 10, count: 0, duration: 0, pools: opts.pools });
  wss.on('listening', () => {
    process.stdout.write(`listening on ws://127.0.0.1:${wss.address().port}/\n`);
    followControl(opts.control, pacer);
  });
  process.on('SIGTERM', () => process.exit(0));
}

main();
