#!/usr/bin/env node
// The load client of `make bench` (driven by bench/run.py; see bench/README.md).
//
//   node load.js subscribe --url ws://127.0.0.1:PORT/ --n N [--stalled K] [--source bench]
//        [--user U --password P | --token T] [--concurrency C] [--deadline SECONDS]
//   node load.js dispatch --url ... --user U --password P --jobs 1000 --queue bench
//   node load.js replay --url ... --user U --password P --since 0 --expect 10000
//   node load.js follow --url ... --user U --password P [--dispatcher 1]
//
// `subscribe` opens N connections (plus K that stop reading once subscribed), signs each in
// (the first with rpc/auth, the others with rpc/auth_token and the first one's token, so
// the server's password hashing does not dominate setup), subscribes each to the source,
// prints {"event":"ready",...} and then obeys JSON commands on stdin, one a line:
//
//   {"cmd":"measure","warmup":S,"duration":S}   count events in a window after a warm-up
//                                               ("latency":false: count only, cheaper)
//   {"cmd":"measure","quiet":S,"timeout":S}     count until no event came for S seconds
//   {"cmd":"add","n":N}                         open N more subscribers
//   {"cmd":"resume_stalled","duration":S}       let stalled ones read again for S seconds
//   {"cmd":"quit"}
//
// `follow` signs one connection in (and subscribes it to `dispatcher` with --dispatcher 1),
// prints {"event":"ready"} and obeys:
//
//   {"cmd":"run","job_id":ID,"command":C}       rpc/dispatcher run; answers "started" (with
//                                               "wait":true once the job's finished event
//                                               came: --dispatcher 1)
//   {"cmd":"follow","job_id":ID,"offset":N}     subscribe to the job's output and check every
//                                               byte (output_gen.py's numbered lines); answers
//                                               "followed" at the eof event
//
// Each command's answer is one JSON line on stdout. Events carry "t", the publisher's
// CLOCK_MONOTONIC in ns, which process.hrtime reads too: latency is now - t. Only
// 127.0.0.1 is ever contacted, and the process exits by itself after --deadline seconds.

'use strict';

const WebSocket = require('ws');
const readline = require('readline');

const MAX_CONNECTIONS = 20000;

function parseArgs(argv) {
  const opts = {
    mode: argv[0], n: 1, stalled: 0, source: 'bench', concurrency: 50, deadline: 600,
    user: null, password: null, token: null, jobs: 1000, queue: null, command: 'true',
    since: -1, expect: 0, dispatcher: 0,
  };
  for (let i = 1; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in opts) && key !== 'url') throw new Error(`unknown option --${key}`);
    const value = argv[i + 1];
    opts[key] = typeof opts[key] === 'number' ? Number(value) : value;
  }
  const url = new URL(opts.url);
  if (url.hostname !== '127.0.0.1' && url.hostname !== 'localhost' && url.hostname !== '[::1]') {
    throw new Error(`refusing ${opts.url}: the bench client talks to loopback only`);
  }
  if (opts.n + opts.stalled > MAX_CONNECTIONS) throw new Error(`at most ${MAX_CONNECTIONS} connections`);
  return opts;
}

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const nowNs = () => Number(process.hrtime.bigint());

// Latency histogram in microseconds: exact below 1024 us, then 64 sub-buckets per power
// of two (under 1.6 % error), so millions of samples cost a few KiB.
class Histogram {
  constructor() { this.counts = new Float64Array(1024 + 64 * 40); this.n = 0; this.max = 0; this.sum = 0; }
  add(us) {
    if (us < 0) us = 0;
    let i;
    if (us < 1024) i = us | 0;
    else {
      const e = Math.floor(Math.log2(us));
      i = 1024 + (e - 10) * 64 + Math.floor((us / 2 ** (e - 6)) - 64);
      if (i >= this.counts.length) i = this.counts.length - 1;
    }
    this.counts[i]++; this.n++; this.sum += us; if (us > this.max) this.max = us;
  }
  value(i) {
    if (i < 1024) return i;
    const e = Math.floor((i - 1024) / 64) + 10;
    return (64 + ((i - 1024) % 64) + 0.5) * 2 ** (e - 6);
  }
  quantile(q) {
    if (!this.n) return null;
    const target = q * this.n;
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i];
      if (seen >= target) return this.value(i);
    }
    return this.max;
  }
  // The non-empty buckets, [[index, count], ...]: bench/loadclient.py merges the
  // histograms of several client processes (and rounds) with them.
  buckets() {
    const out = [];
    for (let i = 0; i < this.counts.length; i++) if (this.counts[i]) out.push([i, this.counts[i]]);
    return out;
  }
  summary() {
    const ms = (v) => (v === null ? null : Math.round(v) / 1000);
    return {
      count: this.n, p50_ms: ms(this.quantile(0.5)), p90_ms: ms(this.quantile(0.9)),
      p99_ms: ms(this.quantile(0.99)), p999_ms: ms(this.quantile(0.999)),
      max_ms: ms(this.max), mean_ms: this.n ? ms(this.sum / this.n) : null,
    };
  }
}

// A connection: sign in, subscribe, then count events. The event frames of the bench
// source start with a fixed prefix, so "t" is read without parsing the JSON.
class Subscriber {
  constructor(client, index, stalled) {
    this.client = client; this.index = index; this.stalled = stalled;
    this.received = 0; this.dropped = 0; this.other = 0; this.ids = 0;
    this.pending = new Map(); this.ready = false;
  }

  open() {
    const { opts } = this.client;
    return new Promise((resolve, reject) => {
      const ws = this.ws = new WebSocket(opts.url, {
        perMessageDeflate: false, skipUTF8Validation: true, maxPayload: 64 * 1024 * 1024,
        handshakeTimeout: 30000,
      });
      ws.on('error', (e) => { if (!this.ready) reject(e); else this.client.errors++; });
      ws.on('close', () => { if (this.ready) this.client.closed++; });
      ws.on('message', (data) => this.onMessage(data));
      ws.on('open', async () => {
        try {
          let reply;
          if (this.client.token) {
            reply = await this.call('rpc', 'auth_token', { token: this.client.token });
          } else {
            reply = await this.call('rpc', 'auth', { username: opts.user, password: opts.password });
            this.client.token = reply.args[0];
          }
          if (reply.name !== 'response') throw new Error('auth failed: ' + JSON.stringify(reply));
          this.subscribedAt = nowNs();
          const subscription = opts.since >= 0 ? { name: opts.source, since: opts.since } : opts.source;
          reply = await this.call('events', 'subscribe', [subscription]);
          if (reply.name !== 'response') throw new Error('subscribe failed: ' + JSON.stringify(reply));
          this.ready = true;
          this.readRaw();
          if (this.stalled) ws.pause();
          resolve();
        } catch (e) { reject(e); }
      });
    });
  }

  // From now on this connection's frames are read here rather than by ws: frame headers
  // only, and the first bytes of each event, so that counting 10^6 events a second costs
  // the client little (ws still sends). The stream is quiet when this is called (the bench
  // source has not started), so no frame is split between the two readers.
  readRaw() {
    const ws = this.ws;
    if (ws._receiver._bufferedBytes !== 0) return; // mid-frame: stay with ws
    ws._socket.removeAllListeners('data');
    this.carry = null; this.skip = 0;
    ws._socket.on('data', (chunk) => this.onData(chunk));
  }

  onData(chunk) {
    let data = this.carry ? Buffer.concat([this.carry, chunk]) : chunk;
    this.carry = null;
    const c = this.client;
    const head = c.prefixLen + 24; // the prefix and "t"'s digits
    let pos = 0;
    const end = data.length;
    while (pos < end) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, end - pos);
        pos += n; this.skip -= n;
        continue;
      }
      if (end - pos < 2) break;
      const opcode = data[pos] & 0x0f;
      let len = data[pos + 1] & 0x7f;
      let hdr = 2;
      if (len === 126) {
        if (end - pos < 4) break;
        len = data.readUInt16BE(pos + 2); hdr = 4;
      } else if (len === 127) {
        if (end - pos < 10) break;
        len = Number(data.readBigUInt64BE(pos + 2)); hdr = 10;
      }
      const start = pos + hdr;
      // An event needs its first bytes here; any other frame needs all of it.
      let isEvent = false;
      if ((opcode === 1 || opcode === 2) && len > head) {
        if (end - start < head) break;
        isEvent = data.compare(c.prefix, 0, c.prefixLen, start, start + c.prefixLen) === 0;
      }
      if (!isEvent && end - start < len) break;
      if (isEvent) {
        this.countEvent(data, start + c.prefixLen);
      } else if (opcode === 1 || opcode === 2) {
        this.onMessage(data.subarray(start, start + len));
      } else if (opcode === 9) {
        this.ws.pong(data.subarray(start, start + len));
      }
      const have = Math.min(len, end - start);
      pos = start + have;
      this.skip = len - have;
    }
    if (pos < end) this.carry = Buffer.from(data.subarray(pos));
  }

  countEvent(data, i) {
    this.received++;
    const c = this.client;
    if (this.received === c.opts.expect) this.doneAt = nowNs();
    if (!c.measuring) return;
    c.inWindow++;
    c.lastEventAt = Date.now();
    if (!c.latency) return;
    let t = 0;
    for (; ; i++) {
      const d = data[i] - 48;
      if (d < 0 || d > 9) break;
      t = t * 10 + d;
    }
    c.hist.add((nowNs() - t) / 1000);
  }

  call(namespace, name, args) {
    const id = `${this.index}-${++this.ids}`;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.ws.send(JSON.stringify({ namespace, name, id, args }));
    });
  }

  onMessage(data) {
    const c = this.client;
    if (data.length > c.prefixLen && data.compare(c.prefix, 0, c.prefixLen, 0, c.prefixLen) === 0) {
      this.countEvent(data, c.prefixLen);
      return;
    }
    const msg = JSON.parse(data.toString());
    if (msg.namespace === 'events' && msg.name === 'dropped') { this.dropped += msg.args.count; return; }
    if (msg.namespace === 'events' && msg.name === 'gap' && msg.args.reason === 'overflow') {
      this.dropped += msg.args.missed_to - msg.args.missed_from + 1; return;
    }
    if (msg.namespace === 'events' && msg.name === 'heads') return;
    if (msg.namespace === 'events' && msg.name === 'gap') { this.gaps = (this.gaps || 0) + 1; return; }
    const resolve = this.pending.get(msg.id);
    if (resolve) { this.pending.delete(msg.id); resolve(msg); return; }
    this.other++;
  }
}

class Client {
  constructor(opts) {
    this.opts = opts; this.token = opts.token; this.subs = [];
    this.errors = 0; this.closed = 0; this.measuring = false; this.inWindow = 0;
    this.hist = new Histogram(); this.lastEventAt = 0;
    this.prefix = Buffer.from(`{"namespace":"events","name":"${opts.source}","id":"none","args":{"t":`);
    this.prefixLen = this.prefix.length;
  }

  async connect(n, stalled) {
    const started = Date.now();
    const todo = [];
    for (let i = 0; i < n + stalled; i++) todo.push(new Subscriber(this, this.subs.length + i, i >= n));
    if (!this.token && todo.length) { await todo[0].open(); this.subs.push(todo.shift()); }
    let next = 0;
    const worker = async () => {
      while (next < todo.length) {
        const sub = todo[next++];
        await sub.open();
        this.subs.push(sub);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.opts.concurrency, todo.length) }, worker));
    return (Date.now() - started) / 1000;
  }

  normal() { return this.subs.filter((s) => !s.stalled); }

  async measure(cmd) {
    const subs = this.normal();
    const sleep = (s) => new Promise((r) => setTimeout(r, s * 1000));
    if (cmd.warmup) await sleep(cmd.warmup);
    const before = subs.map((s) => s.received);
    const droppedBefore = subs.reduce((a, s) => a + s.dropped, 0);
    this.hist = new Histogram(); this.inWindow = 0; this.lastEventAt = Date.now();
    this.latency = cmd.latency !== false;
    const cpu0 = process.cpuUsage(); const t0 = nowNs();
    this.measuring = true;
    if (cmd.duration) {
      await sleep(cmd.duration);
    } else {
      // Until quiet: the run is over once no event came for `quiet` seconds.
      const deadline = Date.now() + (cmd.timeout || 300) * 1000;
      const begun = Date.now();
      while (Date.now() < deadline) {
        await sleep(0.05);
        const idle = Date.now() - this.lastEventAt;
        if (this.inWindow > 0 && idle > cmd.quiet * 1000) break;
        if (this.inWindow === 0 && Date.now() - begun > (cmd.start_timeout || 10) * 1000) break;
      }
    }
    this.measuring = false;
    const elapsed = (nowNs() - t0) / 1e9;
    const cpu = process.cpuUsage(cpu0);
    const per = subs.map((s, i) => s.received - before[i]);
    const delivered = per.reduce((a, b) => a + b, 0);
    const active = cmd.duration ? elapsed : Math.max(1e-9, elapsed - (Date.now() - this.lastEventAt) / 1000);
    return {
      event: 'measured', subscribers: subs.length, elapsed_s: elapsed, active_s: active,
      delivered, rate: delivered / active,
      per_subscriber_min: Math.min(...per), per_subscriber_max: Math.max(...per),
      dropped: subs.reduce((a, s) => a + s.dropped, 0) - droppedBefore,
      latency: this.hist.summary(), buckets: this.hist.buckets(),
      client_cpu: (cpu.user + cpu.system) / 1e6 / elapsed,
      errors: this.errors, closed: this.closed,
    };
  }

  async resumeStalled(cmd) {
    const stalled = this.subs.filter((s) => s.stalled);
    const before = stalled.map((s) => s.received);
    for (const s of stalled) s.ws.resume();
    await new Promise((r) => setTimeout(r, (cmd.duration || 2) * 1000));
    return {
      event: 'resumed', stalled: stalled.length,
      received: stalled.reduce((a, s, i) => a + s.received - before[i], 0),
      dropped_notices: stalled.reduce((a, s) => a + s.dropped, 0),
      open: stalled.filter((s) => s.ws.readyState === WebSocket.OPEN).length,
    };
  }

  async handle(cmd) {
    switch (cmd.cmd) {
      case 'measure': return this.measure(cmd);
      case 'add': {
        const n = Math.min(cmd.n, MAX_CONNECTIONS - this.subs.length);
        const setup = await this.connect(n, 0);
        return { event: 'added', n, connections: this.subs.length, setup_s: setup };
      }
      case 'resume_stalled': return this.resumeStalled(cmd);
      case 'quit':
        for (const s of this.subs) s.ws.terminate();
        return { event: 'bye' };
      default: return { event: 'error', error: `unknown command ${cmd.cmd}` };
    }
  }
}

// Answers the bench's commands, one JSON line each on stdin, in order; `quit` (or the
// end of stdin) ends the process once the last answer is out.
function serveCommands(handle) {
  const rl = readline.createInterface({ input: process.stdin });
  let queue = Promise.resolve();
  rl.on('line', (line) => {
    if (!line.trim()) return;
    queue = queue.then(async () => {
      const cmd = JSON.parse(line);
      out(await handle(cmd));
      if (cmd.cmd === 'quit') process.exit(0);
    }).catch((e) => { out({ event: 'error', error: String(e && e.stack || e) }); });
  });
  rl.on('close', () => queue.then(() => process.exit(0)));
}

async function subscribeMode(opts) {
  const client = new Client(opts);
  const setup = await client.connect(opts.n, opts.stalled);
  out({ event: 'ready', connections: client.subs.length, setup_s: setup, token: client.token });
  serveCommands((cmd) => client.handle(cmd));
}

// One full-access connection submits `jobs` jobs in one rpc/dispatcher run request and
// waits for every finished event.
async function dispatchMode(opts) {
  const client = new Client({ ...opts, source: 'dispatcher' });
  const sub = new Subscriber(client, 0, false);
  await sub.open();
  const ids = new Set();
  const args = { action: 'run' };
  if (opts.queue) args.queue = opts.queue;
  for (let i = 0; i < opts.jobs; i++) {
    const id = `bench-${String(i).padStart(5, '0')}`;
    ids.add(id); args[id] = opts.command;
  }
  let finishedAt = null; let failed = 0; let running = 0; let maxRunning = 0;
  const live = new Set();
  const done = new Promise((resolve) => {
    sub.onMessage = (data) => {
      const msg = JSON.parse(data.toString());
      if (msg.namespace === 'events' && msg.name === 'dispatcher') {
        const a = msg.args;
        if (!ids.has(a.process_id)) return;
        if (a.state === 'running' && !live.has(a.process_id)) {
          live.add(a.process_id); running++; maxRunning = Math.max(maxRunning, running);
        }
        if (a.state === 'finished') {
          if (live.delete(a.process_id)) running--;
          const rc = a.process_details && a.process_details[`return_codes/${opts.command}`];
          if (rc !== '0') failed++;
          ids.delete(a.process_id);
          if (ids.size === 0) { finishedAt = nowNs(); resolve(); }
        }
        return;
      }
      const resolve2 = sub.pending.get(msg.id);
      if (resolve2) { sub.pending.delete(msg.id); resolve2(msg); }
    };
  });
  const t0 = nowNs();
  const reply = await sub.call('rpc', 'dispatcher', args);
  const accepted = nowNs();
  if (reply.name !== 'response') throw new Error('run refused: ' + JSON.stringify(reply));
  await done;
  out({
    event: 'dispatched', jobs: opts.jobs, failed, max_running_seen: maxRunning,
    submit_s: (accepted - t0) / 1e9, elapsed_s: (finishedAt - t0) / 1e9,
    jobs_per_s: opts.jobs / ((finishedAt - t0) / 1e9),
  });
  sub.ws.terminate();
  process.exit(0);
}

// One connection resumes `source` from `since` and times the arrival of `expect` events
// (the daemon's retained log replayed), from the subscribe request to the last one.
async function replayMode(opts) {
  const client = new Client(opts);
  const sub = new Subscriber(client, 0, false);
  await sub.open();
  const deadline = Date.now() + 120000;
  while (sub.doneAt === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
  // Anything beyond the expected count (there should be nothing) arrives within this.
  await new Promise((r) => setTimeout(r, 200));
  out({
    event: 'replayed', expected: opts.expect, received: sub.received, gaps: sub.gaps || 0,
    elapsed_s: sub.doneAt === undefined ? null : (sub.doneAt - sub.subscribedAt) / 1e9,
  });
  sub.ws.terminate();
  process.exit(0);
}

// -- follow: a job's live output (issue 17) -------------------------------------------

const crypto = require('crypto');

const LINE = 64; // output_gen.py: a 12-digit line number, a space, 50 letters, "\n"

// One follower's check of a job's output: every byte in offset order, hashed (sha256, to
// compare with the same command's output written to a file) and read as output_gen.py's
// numbered lines (so a misplaced byte is located, not only detected). A jump in offsets
// is a gap: "reported" when a gap frame or dropped_bytes announced it, "unreported"
// otherwise; either way the check resumes at the next line after it.
class OutputCheck {
  constructor(offset) {
    this.hash = crypto.createHash('sha256');
    this.bytes = 0; this.events = 0; this.chunks = 0; this.wire = 0; this.maxEvent = 0;
    this.otherStreams = 0; this.badLines = 0; this.firstBad = null; this.lines = 0;
    this.gapFrames = []; this.jumps = []; this.unreported = 0; this.overlaps = 0;
    this.chunkMismatch = 0; this.nextMismatch = 0; this.dropped = 0;
    this.announcedTo = null;
    this.resync(offset);
  }

  resync(offset) {
    this.pos = offset;
    this.tail = Buffer.alloc(0);
    this.lineSkip = (LINE - (offset % LINE)) % LINE;
    this.lineNo = Math.ceil(offset / LINE);
  }

  gap(args) {
    this.gapFrames.push([args.missed_from, args.missed_to, args.reason]);
    this.announcedTo = args.missed_to;
  }

  event(args, wireBytes) {
    this.events++; this.wire += wireBytes;
    if (wireBytes > this.maxEvent) this.maxEvent = wireBytes;
    if (args.offset !== this.pos) this.jump(args.offset, args.dropped_bytes);
    for (const chunk of args.chunks) {
      this.chunks++;
      if (chunk.stream !== 'stdout' || chunk.command !== 0) this.otherStreams++;
      if (chunk.offset !== this.pos) { this.chunkMismatch++; this.jump(chunk.offset, args.dropped_bytes); }
      const buf = Buffer.from(chunk.data, 'utf8');
      this.hash.update(buf);
      this.bytes += buf.length; this.pos += buf.length;
      this.lineCheck(buf);
    }
    if (args.next_offset !== this.pos) { this.nextMismatch++; this.resync(args.next_offset); }
    this.dropped = args.dropped_bytes || 0;
  }

  jump(to, droppedBytes) {
    const reported = (this.announcedTo === to) || (droppedBytes || 0) > this.dropped;
    this.jumps.push([this.pos, to, reported]);
    if (to < this.pos) this.overlaps++;
    else if (!reported) this.unreported++;
    this.announcedTo = null;
    this.resync(to);
  }

  lineCheck(buf) {
    let data = this.tail.length ? Buffer.concat([this.tail, buf]) : buf;
    let i = 0;
    if (this.lineSkip) { i = Math.min(this.lineSkip, data.length); this.lineSkip -= i; }
    for (; data.length - i >= LINE; i += LINE) {
      let n = 0; let ok = data[i + 12] === 32 && data[i + LINE - 1] === 10;
      for (let k = 0; k < 12 && ok; k++) {
        const d = data[i + k] - 48;
        if (d < 0 || d > 9) ok = false; else n = n * 10 + d;
      }
      if (!ok || n !== this.lineNo) {
        this.badLines++;
        if (this.firstBad === null) this.firstBad = this.lineNo * LINE;
      }
      this.lineNo++; this.lines++;
    }
    this.tail = Buffer.from(data.subarray(i));
  }

  summary() {
    return {
      bytes: this.bytes, end_offset: this.pos, sha256: this.hash.digest('hex'), events: this.events,
      chunks: this.chunks, wire_bytes: this.wire, max_event_bytes: this.maxEvent, lines: this.lines,
      bad_lines: this.badLines, first_bad_offset: this.firstBad, tail_bytes: this.tail.length,
      other_streams: this.otherStreams, gap_frames: this.gapFrames, jumps: this.jumps.slice(0, 20),
      unreported_jumps: this.unreported, overlaps: this.overlaps, chunk_offset_mismatches: this.chunkMismatch,
      next_offset_mismatches: this.nextMismatch, dropped_bytes: this.dropped,
    };
  }
}

async function followMode(opts) {
  const client = new Client(opts);
  const sub = new Subscriber(client, 0, false);
  let check = null; let onEof = null; let finishedAt = null; let jobId = null;
  const times = {};
  sub.open = function open() {
    return new Promise((resolve, reject) => {
      const ws = this.ws = new WebSocket(opts.url, {
        perMessageDeflate: false, skipUTF8Validation: true, maxPayload: 64 * 1024 * 1024,
        handshakeTimeout: 30000,
      });
      ws.on('error', (e) => { if (!this.ready) reject(e); else out({ event: 'error', error: String(e) }); });
      ws.on('close', () => { if (onEof) out({ event: 'error', error: 'connection closed before eof' }); });
      ws.on('message', (data) => this.onMessage(data));
      ws.on('open', async () => {
        try {
          const reply = await this.call('rpc', 'auth', { username: opts.user, password: opts.password });
          if (reply.name !== 'response') throw new Error('auth failed: ' + JSON.stringify(reply));
          if (opts.dispatcher) {
            const r = await this.call('events', 'subscribe', ['dispatcher']);
            if (r.name !== 'response') throw new Error('subscribe failed: ' + JSON.stringify(r));
          }
          this.ready = true;
          resolve();
        } catch (e) { reject(e); }
      });
    });
  };
  sub.onMessage = (data) => {
    const text = data.toString();
    const msg = JSON.parse(text);
    if (msg.namespace === 'events' && msg.name === 'job_output' && check && msg.args.job_id === jobId) {
      if (times.first === undefined && msg.args.chunks.length) times.first = nowNs();
      check.event(msg.args, data.length);
      if (msg.args.eof) {
        times.eof = nowNs();
        const done = onEof; onEof = null;
        if (done) done(msg.args);
      }
      return;
    }
    if (msg.namespace === 'events' && msg.name === 'gap' && check && msg.args.source === 'job-output') {
      check.gap(msg.args); return;
    }
    if (msg.namespace === 'events' && msg.name === 'dispatcher') {
      const a = msg.args;
      if (a.process_id === jobId && a.state === 'finished' && finishedAt === null) finishedAt = nowNs();
      return;
    }
    const resolve = sub.pending.get(msg.id);
    if (resolve) { sub.pending.delete(msg.id); resolve(msg); }
  };
  await sub.open();
  out({ event: 'ready' });

  const handle = async (cmd) => {
    switch (cmd.cmd) {
      case 'run': {
        jobId = cmd.job_id; finishedAt = null;
        const t0 = nowNs();
        const reply = await sub.call('rpc', 'dispatcher', { action: 'run', [cmd.job_id]: cmd.command });
        if (reply.name !== 'response') throw new Error('run refused: ' + JSON.stringify(reply));
        const replyAt = nowNs();
        if (cmd.wait) {
          const until = Date.now() + 600000;
          while (finishedAt === null && Date.now() < until) await new Promise((r) => setTimeout(r, 2));
        }
        return { event: 'started', t0_ns: t0, reply_ns: replyAt, finished_ns: finishedAt, reply: reply.args };
      }
      case 'follow': {
        jobId = cmd.job_id;
        check = new OutputCheck(cmd.offset || 0);
        delete times.first; delete times.eof;
        const eof = new Promise((resolve) => { onEof = resolve; });
        const cpu0 = process.cpuUsage();
        const t0 = nowNs();
        const reply = await sub.call('events', 'subscribe', [{ name: 'job-output', job_id: cmd.job_id, offset: cmd.offset || 0 }]);
        if (reply.name !== 'response') throw new Error('job-output subscribe failed: ' + JSON.stringify(reply));
        const last = await eof;
        const cpu = process.cpuUsage(cpu0);
        const elapsed = (times.eof - t0) / 1e9;
        // The dispatcher's finished event may come after the eof event.
        if (opts.dispatcher) {
          const until = Date.now() + 5000;
          while (finishedAt === null && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
        }
        return {
          event: 'followed', subscribe_ns: t0, first_byte_ns: times.first === undefined ? null : times.first,
          eof_ns: times.eof, job_finished_ns: finishedAt, elapsed_s: elapsed,
          cpu_s: (cpu.user + cpu.system) / 1e6, cpu: (cpu.user + cpu.system) / 1e6 / elapsed,
          eof_event: { state: last.state, return_codes: last.return_codes, killed: last.killed,
            timed_out: last.timed_out, interrupted: last.interrupted, dropped_bytes: last.dropped_bytes },
          ...check.summary(),
        };
      }
      case 'quit':
        sub.ws.terminate();
        return { event: 'bye' };
      default: return { event: 'error', error: `unknown command ${cmd.cmd}` };
    }
  };
  serveCommands(handle);
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  setTimeout(() => { out({ event: 'error', error: 'deadline reached' }); process.exit(3); }, opts.deadline * 1000).unref();
  const run = { dispatch: dispatchMode, replay: replayMode, follow: followMode }[opts.mode] || subscribeMode;
  run(opts).catch((e) => { out({ event: 'error', error: String(e && e.stack || e) }); process.exit(2); });
}

main();
