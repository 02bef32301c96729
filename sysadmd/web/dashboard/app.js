// The sysadmd dashboard: one WebSocket back to the daemon that served this page, the
// wire protocol of README.rst, and three live panels (a job's live output is output.js's).
// No framework, no build step.
// Everything from the daemon is put into the page as text (never as HTML).
"use strict";

(() => {
  const TOKEN_KEY = "sysadmd.token";
  const USER_KEY = "sysadmd.user";
  const SOURCES = ["dispatcher", "system-state", "life-preserver"];
  // Event frame name -> the source it comes from.
  const FRAME_SOURCE = { dispatcher: "dispatcher", system_state: "system-state", life_preserver: "life-preserver" };
  const LP_MAX = 100;          // Life Preserver entries kept
  const GAPS_MAX = 10;         // gap entries kept per panel
  const RECENT_MAX = 10000;    // numbers of the last events shown kept per source
  const FINISHED_MAX = 100;    // finished jobs kept
  const BACKOFF_MIN = 1000;
  const BACKOFF_MAX = 30000;
  const CALL_TIMEOUT = 30000;
  const STATE_RANK = { pending: 0, running: 1, finished: 2 };

  const $ = (id) => document.getElementById(id);

  // el("td", {className: "x", text: "y"}, child, ...)
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "text") node.textContent = value;
      else if (key === "data") Object.assign(node.dataset, value);
      else node[key] = value;
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  // ---- connection -------------------------------------------------------------------

  class RpcError extends Error {
    constructor(code, message, details) {
      super(details || message);
      this.code = code;
      this.title = message;
      this.details = details;
    }
  }

  let ws = null;
  let nextId = 1;
  const waiting = new Map();   // request id -> {resolve, reject, timer}
  let backoff = BACKOFF_MIN;
  let retryTimer = null;
  let keepAlive = null;
  let full = false;

  function wsUrl() {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
  }

  // Resolves once the socket is open (opening one if needed).
  function open() {
    if (ws && ws.readyState === WebSocket.OPEN) return Promise.resolve();
    if (!ws || ws.readyState !== WebSocket.CONNECTING) connect();
    const sock = ws;
    return new Promise((resolve, reject) => {
      sock.addEventListener("open", () => resolve(), { once: true });
      sock.addEventListener("close", () => reject(new RpcError(0, "Connection failed",
        "Cannot connect to the daemon: it is down, or refusing this address (too many failed sign-ins or connections).")), { once: true });
    });
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    setConn("connecting…", "busy");
    const sock = new WebSocket(wsUrl());
    ws = sock;
    sock.addEventListener("message", (m) => onFrame(m.data));
    sock.addEventListener("close", (e) => onClose(sock, e));
  }

  function call(namespace, name, args) {
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new RpcError(0, "Not connected", "Not connected to the daemon."));
    }
    const id = nextId++;
    ws.send(JSON.stringify({ namespace, name, id, args: args === undefined ? {} : args }));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new RpcError(0, "Timeout", "The daemon did not answer in time."));
      }, CALL_TIMEOUT);
      waiting.set(id, { resolve, reject, timer });
    });
  }

  function onFrame(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch (e) {
      return;
    }
    const pending = waiting.get(frame.id);
    if (pending && (frame.name === "response" || frame.namespace === "error")) {
      waiting.delete(frame.id);
      clearTimeout(pending.timer);
      if (frame.namespace === "error") {
        const a = frame.args || {};
        pending.reject(new RpcError(a.code, a.message, a.details));
      } else {
        pending.resolve(frame.args);
      }
      return;
    }
    if (frame.namespace === "error") {
      const a = frame.args || {};
      if (a.code === 401) {
        // The token expired: the daemon has ended our subscriptions.
        signOut("Your session expired. Sign in again.");
      } else {
        showError(new RpcError(a.code, a.message, a.details));
      }
      return;
    }
    if (frame.namespace === "events") onEvent(frame);
  }

  function onClose(sock, e) {
    if (sock !== ws) return;
    ws = null;
    stopKeepAlive();
    follower.disconnected();
    for (const [id, pending] of waiting) {
      clearTimeout(pending.timer);
      pending.reject(new RpcError(0, "Disconnected", "The connection was lost."));
      waiting.delete(id);
    }
    const why = closeReason(e);
    if (!sessionStorage.getItem(TOKEN_KEY)) {
      setConn("not connected", "down");
      return;
    }
    const delay = backoff;
    backoff = Math.min(backoff * 2, BACKOFF_MAX);
    setConn(`${why}; reconnecting in ${Math.round(delay / 1000)} s`, "down");
    retryTimer = setTimeout(resume, delay);
  }

  function closeReason(e) {
    switch (e.code) {
      case 1000: return "closed (idle)";
      case 1001: return "the daemon is shutting down";
      case 1008: return "closed by the daemon: " + (e.reason || "policy");
      case 1009: return "closed: message too big";
      case 1006: return "connection lost (daemon down, or refusing this address)";
      default: return `closed (${e.code}${e.reason ? ": " + e.reason : ""})`;
    }
  }

  // ---- signing in -------------------------------------------------------------------

  // On load and after a dropped connection: reuse the token of this browser tab.
  async function resume() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) {
      showLogin();
      return;
    }
    try {
      await open();
      const reply = await call("rpc", "auth_token", { token });
      await signedIn(reply);
    } catch (err) {
      if (err.code === 401) {
        signOut("Your session has ended. Sign in again.");
      } else if (err.code) {
        showError(err);
      }
      // code 0: the connection dropped; onClose schedules the next try.
    }
  }

  async function login(event) {
    event.preventDefault();
    const user = $("login-user").value.trim();
    const password = $("login-password").value;
    const button = $("login-form").querySelector("button");
    button.disabled = true;
    try {
      await open();
      const reply = await call("rpc", "auth", { username: user, password });
      sessionStorage.setItem(USER_KEY, user);
      $("login-password").value = "";
      await signedIn(reply);
    } catch (err) {
      showError(err, "Sign-in failed");
    } finally {
      button.disabled = false;
    }
  }

  async function signedIn(reply) {
    delete $("main").dataset.loaded;
    const [token, ttl] = reply;
    sessionStorage.setItem(TOKEN_KEY, token);
    backoff = BACKOFF_MIN;
    clearError();
    setConn("connected", "up");
    $("login").hidden = true;
    $("main").hidden = false;
    $("logout").hidden = false;
    // The token lives ttl seconds from the last request; an open dashboard keeps it.
    stopKeepAlive();
    keepAlive = setInterval(() => call("rpc", "query").then(applyAccess, () => {}),
      Math.max(5, ttl / 3) * 1000);
    applyAccess(await call("rpc", "query"));
    for (const source of SOURCES) {
      // One at a time: a source that is not enabled must not block the others.
      try {
        await subscribe(source);
      } catch (err) {
        if (err.code !== 400) throw err;
        note(source, "not enabled on this daemon");
      }
    }
    follower.resume();
    await refreshJobs();
    // Everything a fresh page shows is in: the browser tests wait for this.
    $("main").dataset.loaded = "yes";
  }

  function applyAccess(rights) {
    full = rights["rpc/dispatcher"] === "read/write";
    const user = sessionStorage.getItem(USER_KEY) || "";
    $("who").textContent = user ? `${user} (${full ? "full" : "read-only"} access)` : "";
    $("run-form").hidden = !full;
    if (full && !$("run-id").value) $("run-id").value = newJobId();
    renderAllJobs();
  }

  async function logout() {
    try {
      await call("rpc", "auth_clear");
    } catch (err) {
      // Signed out locally either way.
    }
    follower.forget();
    expanded.clear();
    signOut("");
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    stopKeepAlive();
    clearTimeout(retryTimer);
    full = false;
    if (ws) ws.close(1000);
    showLogin();
    if (message) showError(message);
  }

  function showLogin() {
    $("main").hidden = true;
    $("logout").hidden = true;
    $("who").textContent = "";
    $("login").hidden = false;
    $("login-user").value = $("login-user").value || sessionStorage.getItem(USER_KEY) || "";
    ($("login-user").value ? $("login-password") : $("login-user")).focus();
  }

  function stopKeepAlive() {
    clearInterval(keepAlive);
    keepAlive = null;
  }

  // ---- messages ---------------------------------------------------------------------

  const EXPLAIN = {
    400: "Bad request",
    401: "Wrong user name or password, or the session has ended",
    403: "Your account may not do this (read-only access)",
    404: "Unknown",
    409: "Conflict",
    429: "Too many failed sign-ins from this address; try again later",
    500: "The daemon failed (see its log)",
    503: "Unavailable",
  };

  function describe(err, context) {
    if (typeof err === "string") return err;
    const parts = [];
    if (context) parts.push(context + ":");
    if (err.code) parts.push(`${EXPLAIN[err.code] || err.title || "Error"} (${err.code}).`);
    // 401 and 429 details say nothing more (a failed login never says why).
    if (err.details && err.code !== 401 && err.code !== 429) parts.push(err.details);
    else if (!err.code) parts.push(err.message);
    return parts.join(" ");
  }

  function showError(err, context) {
    const box = $("error");
    box.textContent = describe(err, context);
    box.hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
    $("error").textContent = "";
  }

  function setConn(text, kind) {
    const conn = $("conn");
    conn.textContent = text;
    conn.className = "conn " + kind;
  }

  function note(source, text) {
    const target = { "system-state": "state-note", "life-preserver": "lp-empty" }[source];
    if (target) $(target).textContent = `(${source}: ${text})`;
  }

  // ---- resuming ---------------------------------------------------------------------

  // Per source, what this page has shown (README.rst, "Resuming after a reconnect"):
  // {epoch, seq: the newest shown, recent: the numbers of the last ones shown, holes: lost
  //  ranges being fetched again, state: the seq of the state event that may follow a gap}.
  const seen = new Map();

  function position(epoch, seq, state) {
    return { epoch, seq, recent: new Set(), holes: [], state };
  }

  // Subscribe to `source`, after the last event shown when there is one: the daemon
  // sends what was missed meanwhile, or a gap and the current state.
  async function subscribe(source) {
    const s = seen.get(source);
    if (!s) return call("events", "subscribe", [source]);
    const since = Math.min(s.seq, ...s.holes.map((h) => h.from - 1));
    try {
      return await call("events", "subscribe", [{ name: source, since, epoch: s.epoch }]);
    } catch (err) {
      if (err.code !== 400) throw err;
      // Not numbers this daemon knows (or the source is gone): start afresh.
      seen.delete(source);
      const reply = await call("events", "subscribe", [source]);
      showGap({ source, missed_from: since + 1, reason: "refused" }, "showing what comes from now on.");
      return reply;
    }
  }

  function shown(s, seq) {
    s.recent.add(seq);
    if (s.recent.size > RECENT_MAX) s.recent.delete(s.recent.values().next().value);
  }

  // Whether to show event `seq` of `epoch` from `source`: "new", "late" (a lost one
  // fetched again after newer ones) or null (shown already).
  function admit(source, seq, epoch) {
    let s = seen.get(source);
    if (!s || s.epoch !== epoch) {
      s = position(epoch, seq, null);
      seen.set(source, s);
      shown(s, seq);
      return "new";
    }
    if (s.recent.has(seq)) return null;
    const hole = s.holes.find((h) => seq >= h.from && seq <= h.to);
    let verdict = null;
    if (seq > s.seq) {
      s.seq = seq;
      verdict = "new";
    } else if (seq === s.state) {
      s.state = null;
      verdict = "new";
    } else if (hole) {
      verdict = "late";
    }
    if (!verdict) return null;
    shown(s, seq);
    if (hole && --hole.left <= 0) {
      s.holes.splice(s.holes.indexOf(hole), 1);
      hole.entry.settle(hole.done);
    }
    return verdict;
  }

  function onGap(gap) {
    const source = gap.source;
    let s = seen.get(source);
    if (gap.reason === "overflow") {
      // This page read too slowly: events from missed_from to missed_to were dropped (not
      // every one between, when a replay was going on), later ones come.
      if (!s || s.epoch !== gap.epoch) {
        s = position(gap.epoch, gap.missed_from - 1, null);
        seen.set(source, s);
      }
      const from = Math.max(gap.missed_from, gap.first_available);
      const to = gap.missed_to;
      let left = 0;
      for (let seq = from; seq <= to && left <= RECENT_MAX; seq++) if (!s.recent.has(seq)) left++;
      const partly = from > gap.missed_from;  // the oldest ones expired meanwhile
      if (!left) {
        showGap(gap, partly ? "they are no longer kept." : "they came after all.");
      } else {
        const entry = showGap(gap, partly
          ? `fetching ${range(from, to)} again (the others are no longer kept)…` : "fetching them again…");
        const done = partly ? `fetched ${range(from, to)} again (the others are no longer kept).` : "fetched again.";
        s.holes.push({ from, to, left, entry, done });
        fetchAgain(source, from - 1, gap.epoch);
      }
      if (partly && source === "dispatcher") refreshJobs().catch(() => {});
      return;
    }
    // expired or epoch_changed: the current state follows, then live events.
    if (s) for (const hole of s.holes) hole.entry.settle("they are no longer kept.");
    s = position(gap.epoch, gap.head, gap.head);
    seen.set(source, s);
    const first = gap.first_available;
    if (source === "life-preserver" && first <= gap.head) {
      // A feed's state is its entries: those still kept are fetched.
      const kept = range(first, gap.head);
      const entry = showGap(gap, `fetching ${kept} (still kept)…`);
      s.holes.push({ from: first, to: gap.head, left: gap.head - first + 1, entry, done: `${kept} (still kept) fetched.` });
      fetchAgain(source, first - 1, gap.epoch);
    } else {
      showGap(gap, "showing the current state.");
    }
    // The state of the dispatcher is its live jobs: the finished ones come from history.
    if (source === "dispatcher") refreshJobs().catch(() => {});
  }

  // Subscribe again to a source this connection follows: its stream starts again after
  // `since` (what is shown already is skipped).
  function fetchAgain(source, since, epoch) {
    call("events", "subscribe", [{ name: source, since, epoch }])
      .catch((err) => { if (err.code) showError(err, `Fetching the missed events of ${source}`); });
  }

  const GAP_WHY = {
    expired: "expired: no longer kept by the daemon",
    epoch_changed: "epoch changed: the daemon's event log was lost or reset",
    overflow: "overflow: this page fell behind",
    refused: "the daemon could not resume from there",
  };

  const range = (from, to) => (to > from ? `${from}-${to}` : `${from}`);

  function gapText(gap) {
    const from = gap.missed_from;
    // expired: those from first_available on are still kept (and described by the state).
    const to = gap.reason === "overflow" ? gap.missed_to
      : gap.reason === "expired" ? Math.min(gap.head, gap.first_available - 1) : undefined;
    const why = GAP_WHY[gap.reason] || String(gap.reason);
    // After epoch_changed, missed_from counts in the old numbering: no end to give.
    if (to === undefined) return `Missed events of ${gap.source} after event ${from - 1} (${why})`;
    return `Missed event${to > from ? "s" : ""} ${range(from, to)} of ${gap.source} (${why})`;
  }

  // A gap as an entry of the panel it concerns; returns {settle(tail)} to say what became
  // of the missed events.
  function showGap(gap, tail) {
    const text = gapText(gap);
    const message = el("span", { className: "message", text: `${text}; ${tail}` });
    const entry = el("li", { className: "gap", data: { source: gap.source, reason: gap.reason } },
      el("time", { text: new Date().toLocaleTimeString() }), message);
    const list = { dispatcher: "jobs-gaps", "system-state": "state-gaps", "life-preserver": "lp-feed" }[gap.source];
    if (list === "lp-feed" && gap.epoch) {
      // Its place in the feed's numbering: below the events fetched after it (those of a
      // new epoch all come after it).
      const at = gap.reason === "epoch_changed" ? 0 : gap.missed_from - 0.5;
      Object.assign(entry.dataset, { seq: String(at), epoch: gap.epoch });
    }
    if (list) {
      $(list).prepend(entry);
      const max = gap.source === "life-preserver" ? LP_MAX : GAPS_MAX;
      while ($(list).children.length > max) $(list).lastChild.remove();
      if (gap.source === "life-preserver") $("lp-empty").hidden = true;
    } else {
      showError(message.textContent);
    }
    return { settle: (end) => { message.textContent = `${text}; ${end}`; } };
  }

  // ---- events -----------------------------------------------------------------------

  function onEvent(frame) {
    if (follower.onEvent(frame)) return;
    const name = frame.name;
    const args = frame.args || {};
    if (name === "gap") {
      onGap(args);
      return;
    }
    // Numbered events are shown once: a resumed subscription may send some again. The
    // state sent after a gap may carry no number.
    let late = false;
    const source = FRAME_SOURCE[name];
    if (source && typeof frame.seq === "number" && typeof frame.epoch === "string") {
      const verdict = admit(source, frame.seq, frame.epoch);
      if (!verdict) return;
      late = verdict === "late";
    }
    if (name === "system_state") {
      if (!late) renderState(args);  // a late one is older than what is shown
    } else if (name === "life_preserver") addLifePreserver(args, frame.seq, frame.epoch, late);
    else if (name === "dispatcher") onDispatcher(args, late);
    else if (name === "dropped") {
      showError(`${args.count} events were dropped while this page was slow; refreshing jobs.`);
      refreshJobs().catch(() => {});
    }
  }

  function priorityLevel(priority) {
    const n = parseInt(String(priority || "0"), 10);
    return Number.isNaN(n) ? 0 : n;
  }

  function priorityBadge(priority) {
    const n = priorityLevel(priority);
    const kind = n >= 9 ? "urgent" : n >= 6 ? "critical" : n >= 3 ? "warning" : "info";
    return el("span", { className: "prio " + kind, text: priority || "–" });
  }

  function healthClass(health) {
    const h = String(health || "-").toUpperCase();
    if (h === "ONLINE") return "ok";
    if (h === "DEGRADED") return "warning";
    if (h === "-") return "unknown";
    return "bad";
  }

  function capacityCell(capacity) {
    const pct = parseFloat(String(capacity));
    const fill = el("span", { className: "fill" });
    const bar = el("span", { className: "bar" }, fill);
    if (!Number.isNaN(pct)) {
      // CSSOM, not a style attribute: allowed by style-src 'self'.
      fill.style.width = Math.max(0, Math.min(100, pct)) + "%";
      fill.classList.add(pct > 90 ? "critical" : pct > 80 ? "warning" : "ok");
    }
    return el("td", { className: "capacity" }, bar, el("span", { text: " " + capacity }));
  }

  function renderState(state) {
    $("hostname").textContent = state.hostname ? "· " + state.hostname : "";
    $("state-hostname").textContent = state.hostname || "–";
    $("state-priority").replaceWith(Object.assign(priorityBadge(state.priority), { id: "state-priority" }));
    $("state-note").textContent = (state.hostnamechanged === "true" ? "host name changed · " : "") +
      "updated " + new Date().toLocaleTimeString();
    const rows = Object.keys(state.zpools || {}).sort().map((name) => {
      const p = state.zpools[name];
      return el("tr", { data: { pool: name } },
        el("td", { text: name }),
        el("td", {}, el("span", { className: "health " + healthClass(p.health), text: p.health })),
        capacityCell(p.capacity),
        el("td", { text: p.size }), el("td", { text: p.alloc }), el("td", { text: p.free }),
        el("td", { text: p.frag }), el("td", { text: p.dedup }),
        el("td", {}, priorityBadge(p.priority)));
    });
    $("pools").tBodies[0].replaceChildren(...rows);
    $("pools-empty").hidden = rows.length > 0;
    $("pools-empty").textContent = "No ZFS pools on this machine.";
  }

  function addLifePreserver(args, seq, epoch, late) {
    const feed = $("lp-feed");
    const entry = el("li", { data: typeof seq === "number" ? { seq: String(seq), epoch } : {} },
      el("time", { text: new Date().toLocaleTimeString() }),
      priorityBadge(args.priority),
      el("span", { className: "class", text: args.class || "" }),
      el("span", { className: "message", text: args.message || "" }));
    if (late) {
      // Fetched again after newer ones: in its place among the numbered entries (newest
      // first; those of an earlier epoch are older).
      const older = [...feed.children].find((li) => li.dataset.seq !== undefined &&
        (li.dataset.epoch !== epoch || Number(li.dataset.seq) < seq));
      feed.insertBefore(entry, older || null);
    } else {
      feed.prepend(entry);
    }
    while (feed.children.length > LP_MAX) feed.lastChild.remove();
    $("lp-empty").hidden = true;
  }

  // ---- jobs -------------------------------------------------------------------------

  const jobs = new Map();      // id -> {id, state, queue, commands, details, position}
  const expanded = new Set();
  const queues = new Set();

  function job(id) {
    if (!jobs.has(id)) jobs.set(id, { id, state: "pending", commands: [], details: null });
    return jobs.get(id);
  }

  function onDispatcher(args, late) {
    const id = args.process_id;
    if (!id) return;
    const j = job(id);
    // A missed event fetched again after newer ones must not move its job back.
    if (late && STATE_RANK[args.state] < STATE_RANK[j.state]) return;
    if (args.state === "pending" && j.state === "finished") {
      // The same id, run again: a new job.
      Object.assign(j, { commands: [], details: null, queue: undefined });
      follower.restarted(j);
    }
    j.state = args.state;
    const details = args.process_details;
    if (details && typeof details === "object") {
      j.details = details;
      j.fullLog = false;
      if (Array.isArray(details.cmd_list)) j.commands = details.cmd_list;
    }
    renderJob(j);
  }

  // Merge what list and history say, never moving a job back to an earlier state.
  function merge(id, state, fields) {
    const j = job(id);
    if (STATE_RANK[state] >= STATE_RANK[j.state]) j.state = state;
    Object.assign(j, fields);
    return j;
  }

  async function refreshJobs() {
    const listing = await call("rpc", "dispatcher", { action: "list" });
    const live = new Set();
    for (const [queue, entries] of Object.entries(listing.jobs || {})) {
      queues.add(queue);
      for (const [id, entry] of Object.entries(entries)) {
        live.add(id);
        merge(id, entry.state, { queue, commands: entry.commands || [], position: entry.queue_position });
      }
    }
    const history = await call("rpc", "dispatcher", { action: "history", limit: 20 });
    for (const entry of (history.history || []).slice().reverse()) {
      const known = jobs.get(entry.process_id);
      if (live.has(entry.process_id)) continue;  // an older run of a live id
      if (known && known.details && known.details.time_finished) continue;
      merge(entry.process_id, "finished", {
        queue: entry.queue,
        commands: entry.cmd_list || [],
        details: known && known.details ? known.details : entry,
      });
    }
    // Jobs we saw running that are neither live nor in recent history (we were away).
    for (const j of jobs.values()) {
      if (j.state !== "finished" && !live.has(j.id)) fetchLog(j);
    }
    renderQueues();
    renderAllJobs();
  }

  async function fetchLog(j) {
    try {
      const details = await call("rpc", "dispatcher", { action: "log", job_id: j.id });
      j.details = details;
      if (details.state) j.state = details.state;
      if (Array.isArray(details.cmd_list)) j.commands = details.cmd_list;
      j.fullLog = true;
      renderJob(j);
    } catch (err) {
      if (err.code !== 404) showError(err, `Output of ${j.id}`);
    }
  }

  function renderQueues() {
    const select = $("run-queue");
    const current = select.value;
    select.replaceChildren(el("option", { value: "", text: "default" }),
      ...[...queues].sort().map((q) => el("option", { value: q, text: q })));
    select.value = current;
  }

  function returnCodes(j) {
    const d = j.details || {};
    return j.commands.map((cmd) => d["return_codes/" + cmd]).filter((rc) => rc !== undefined);
  }

  function resultText(j) {
    const d = j.details || {};
    const flags = ["killed", "timed_out", "interrupted"].filter((f) => d[f] === "true")
      .map((f) => f.replace("_", " "));
    if (j.state !== "finished") {
      return j.state === "pending" && j.position !== undefined ? `position ${j.position}` : "";
    }
    const rcs = returnCodes(j);
    const failed = rcs.find((rc) => rc !== "0");
    let text = failed === undefined ? "ok" : `failed (exit ${failed})`;
    if (flags.length) text += " · " + flags.join(", ");
    return text;
  }

  function renderJob(j) {
    const table = $("jobs");
    let body = table.querySelector(`tbody[data-job="${CSS.escape(j.id)}"]`);
    if (!body) {
      body = el("tbody", { data: { job: j.id } });
      // Newest first.
      table.insertBefore(body, table.tBodies[0] || null);
      pruneFinished();
    }
    body.dataset.state = j.state;
    const d = j.details || {};
    const started = d.time_started ? new Date(d.time_started).toLocaleTimeString() : "";
    const commands = j.state === "running" && d.current_cmd ? `▶ ${d.current_cmd}` : j.commands.join(" ; ");
    const toggle = el("button", {
      type: "button", className: "toggle",
      text: expanded.has(j.id) ? "Hide output" : "Output",
    });
    toggle.addEventListener("click", () => toggleOutput(j));
    const actions = el("td", { className: "actions" }, toggle);
    if (full && j.state !== "finished") {
      const kill = el("button", { type: "button", className: "kill", text: "Kill" });
      kill.addEventListener("click", () => killJob(j, kill));
      actions.append(kill);
    }
    const failed = j.state === "finished" && resultText(j) !== "ok";
    const row = el("tr", { className: "job" },
      el("td", { className: "id", text: j.id }),
      el("td", {}, el("span", { className: "state " + j.state, text: j.state })),
      el("td", { text: j.queue || "" }),
      el("td", { className: "commands", text: commands }),
      el("td", { text: started }),
      el("td", { className: failed ? "result failed" : "result", text: resultText(j) }),
      actions);
    const rows = [row];
    if (expanded.has(j.id)) {
      rows.push(el("tr", { className: "output" }, el("td", { colSpan: 7 }, follower.view(j) || output(j))));
    }
    body.replaceChildren(...rows);
    $("jobs-empty").hidden = true;
  }

  function output(j) {
    const d = j.details || {};
    const parts = [];
    for (const cmd of j.commands) {
      const rc = d["return_codes/" + cmd];
      parts.push(el("div", { className: "cmd" },
        el("code", { text: "$ " + cmd }),
        rc === undefined ? null : el("span", { className: rc === "0" ? "rc" : "rc failed", text: ` exit ${rc}` })));
      const log = d[cmd];
      parts.push(el("pre", { className: "log", text: typeof log === "string" && log ? log : "(no output)" }));
    }
    if (!parts.length) parts.push(el("p", { className: "muted", text: "Not started yet." }));
    return el("div", {}, ...parts);
  }

  // The output of one job at a time, streamed by the daemon (output.js); when it cannot
  // stream it (an older daemon), the logs of "log" are shown.
  const follower = JobOutput.follower({
    call, el, showError,
    lookup: (id) => jobs.get(id),
    unavailable: (id) => { if (jobs.has(id)) fetchLog(jobs.get(id)); },
  });

  function toggleOutput(j) {
    const open = expanded.has(j.id);
    for (const id of [...expanded]) {
      expanded.delete(id);
      if (id !== j.id && jobs.has(id)) renderJob(jobs.get(id));
    }
    if (open) {
      follower.stop();
    } else {
      expanded.add(j.id);
      follower.follow(j);
    }
    renderJob(j);
  }

  function renderAllJobs() {
    for (const j of jobs.values()) renderJob(j);
    const table = $("jobs");
    const bodies = [...table.tBodies].sort((a, b) => order(jobs.get(a.dataset.job), jobs.get(b.dataset.job)));
    for (const body of bodies) table.append(body);
  }

  // Live jobs first, then finished ones; newest first within each.
  function order(a, b) {
    const live = (j) => (j.state === "finished" ? 1 : 0);
    const started = (j) => Date.parse((j.details && j.details.time_started) || "") || Infinity;
    return live(a) - live(b) || started(b) - started(a) || 0;
  }

  function pruneFinished() {
    const finished = [...jobs.values()].filter((j) => j.state === "finished");
    for (const j of finished.slice(0, Math.max(0, finished.length - FINISHED_MAX))) {
      jobs.delete(j.id);
      expanded.delete(j.id);
      if (follower.following(j.id)) follower.stop();
      const body = $("jobs").querySelector(`tbody[data-job="${CSS.escape(j.id)}"]`);
      if (body) body.remove();
    }
  }

  async function killJob(j, button) {
    button.disabled = true;
    try {
      await call("rpc", "dispatcher", { action: "kill", job_id: j.id });
    } catch (err) {
      showError(err, `Kill ${j.id}`);
      button.disabled = false;
    }
  }

  function newJobId() {
    return "dash-" + new Date().toISOString().replace(/[-:Z]/g, "").replace(".", "-");
  }

  async function runJob(event) {
    event.preventDefault();
    const id = $("run-id").value.trim();
    const commands = $("run-commands").value.split("\n").map((c) => c.trim()).filter(Boolean);
    const queue = $("run-queue").value;
    const result = $("run-result");
    if (!id || !commands.length) {
      result.textContent = "A job id and at least one command are needed.";
      return;
    }
    if (id === "action" || id === "queue" || id === "timeout") {
      result.textContent = `"${id}" cannot be a job id.`;
      return;
    }
    const args = { action: "run", [id]: commands };
    if (queue) args.queue = queue;
    try {
      await call("rpc", "dispatcher", args);
      result.textContent = `Started ${id}.`;
      job(id).queue = queue || job(id).queue;
      if (!job(id).commands.length) job(id).commands = commands;
      renderJob(job(id));
      // A new id for the next job, unless the user is already typing one.
      if ($("run-id").value.trim() === id) $("run-id").value = newJobId();
    } catch (err) {
      result.textContent = "";
      showError(err, `Run ${id}`);
    }
  }

  // ---- start ------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", login);
    $("run-form").addEventListener("submit", runJob);
    $("logout").addEventListener("click", logout);
    $("error").addEventListener("click", clearError);
    resume();
  });
})();
