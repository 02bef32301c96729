// The dashboard's Output panel: the output of one job at a time, streamed live by the
// daemon ("job-output" events, README.rst), stderr shown apart from stdout. app.js owns the
// jobs table and the connection; this file only follows the selected job.
//
// Where the page is in a job's output is a byte offset: the next_offset of the last
// job_output event shown. A subscription asks for the output from there, so after a
// reconnect the page picks up exactly where it was (no byte twice, none lost), and bytes
// the daemon no longer keeps come as a gap, shown as a marker line.
"use strict";

// eslint-disable-next-line no-unused-vars
const JobOutput = (() => {
  // Characters of output kept on the page per job: the daemon may keep far more (its
  // max_output_bytes), and a page holding hundreds of MB of text stops responding. Past
  // this the oldest are taken off the page, and the panel says so.
  const KEEP_CHARS = 4 * 1024 * 1024;
  const GAP_WHY = { dropped: "the job wrote more than the daemon keeps" };
  const FLAGS = ["killed", "timed_out", "interrupted"];

  function bytes(n) {
    if (n >= 1024 * 1024) return `${+(n / 1024 / 1024).toFixed(1)} MiB`;
    if (n >= 10240) return `${Math.round(n / 1024)} KiB`;
    return `${n} byte${n === 1 ? "" : "s"}`;
  }

  // The part of a chunk's text from byte `skip` on, `length` being its size in bytes; null
  // when the text is not those bytes (invalid UTF-8 the daemon replaced).
  function tail(text, skip, length) {
    const raw = new TextEncoder().encode(text);
    return raw.length === length ? new TextDecoder().decode(raw.subarray(skip)) : null;
  }

  // deps: {call(namespace, name, args) -> Promise, el(tag, props, ...children),
  //        showError(err, context), lookup(jobId): the jobs table's entry of a job ({id,
  //        state, commands, details}) or undefined, unavailable(jobId): the daemon cannot
  //        stream this job's output (an older daemon, or a job it no longer has)}.
  function follower(deps) {
    const { call, el, showError, lookup } = deps;
    let current = null;              // the followed job: see start()
    let queue = Promise.resolve();   // subscribe and unsubscribe calls, one after another

    // Calls go one after another, so that events of a follow that ended (arriving before
    // the reply to its unsubscribe) are never taken for those of the next one.
    function enqueue(op) {
      queue = queue.then(op).catch((err) => {
        if (err.code) showError(err, "Following the job's output");
        // code 0: the connection dropped; resume() subscribes again once it is back.
      });
    }

    function start(j) {
      const f = {
        id: j.id,
        next: 0,           // offset of the next byte to show
        live: false,       // its subscription was sent on the current connection
        lost: false,       // the connection dropped while it was followed
        eof: false,
        unavailable: false,
        codes: {},         // return codes by command index, from the final event
        flags: [],
        kept: 0,           // characters on the page
        trimmed: false,
        sections: [],      // per command: {head, rc, pre, any}
        last: null,        // the section that got the last chunk
        root: el("div", { className: "job-output", data: { job: j.id } }),
        trimNote: el("p", { className: "output-note muted", hidden: true }),
        status: el("p", { className: "output-status", role: "status" }),
      };
      f.root.append(f.trimNote, f.status);
      current = f;
      subscribe(f);
      return f;
    }

    function subscribe(f) {
      enqueue(async () => {
        if (f !== current || f.eof || f.unavailable) return;
        f.live = true;
        try {
          await call("events", "subscribe", [{ name: "job-output", job_id: f.id, offset: f.next }]);
          f.lost = false;
          render(f, lookup(f.id));
        } catch (err) {
          f.live = false;
          if (err.code !== 400 && err.code !== 404) throw err;
          f.unavailable = true;
          if (f === current) deps.unavailable(f.id);
        }
      });
    }

    function unsubscribe(f) {
      if (!f.live || f.eof) return;
      f.live = false;
      enqueue(() => call("events", "unsubscribe", [{ name: "job-output", job_id: f.id }]));
    }

    function section(f, index, j) {
      while (f.sections.length <= index) {
        const n = f.sections.length;
        const command = j && j.commands[n] !== undefined ? j.commands[n] : `command ${n + 1}`;
        const rc = el("span", { className: "rc" });
        const s = {
          head: el("div", { className: "cmd" }, el("code", { text: "$ " + command }), rc),
          rc,
          pre: el("pre", { className: "log" }),
          any: false,
        };
        f.root.insertBefore(s.head, f.status);
        f.root.insertBefore(s.pre, f.status);
        f.sections.push(s);
      }
      return f.sections[index];
    }

    // Runs `change` on `pre`, keeping the view at the bottom when it was there.
    function grow(pre, change) {
      const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 4;
      change();
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    }

    function addChunk(f, chunk, text) {
      const s = section(f, Number(chunk.command) || 0, lookup(f.id));
      const stream = chunk.stream === "stderr" ? "stderr" : "stdout";
      const last = s.pre.lastChild;
      grow(s.pre, () => {
        // Adjacent output of one stream is one span.
        if (last && last.dataset && last.dataset.stream === stream) last.append(text);
        else s.pre.append(el("span", { className: stream, data: { stream }, text }));
      });
      s.any = true;
      f.last = s;
      f.kept += text.length;
      if (f.kept > KEEP_CHARS) trim(f);
    }

    // Takes the oldest text off the page (a span holds a text node per chunk).
    function trim(f) {
      for (const s of f.sections) {
        while (f.kept > KEEP_CHARS && s.pre.firstChild) {
          const span = s.pre.firstChild;
          const node = span.firstChild;
          if (node) {
            f.kept -= node.textContent.length;
            node.remove();
          }
          if (!span.firstChild) span.remove();
        }
      }
      f.trimmed = true;
      f.trimNote.hidden = false;
      f.trimNote.textContent = `Earlier output is not shown: this page keeps the last ${bytes(KEEP_CHARS)} of it.`;
    }

    function marker(f, from, to, reason) {
      const s = f.last || section(f, 0, lookup(f.id));
      const text = s.pre.lastChild ? s.pre.lastChild.lastChild || s.pre.lastChild : null;
      const why = GAP_WHY[reason] || String(reason);
      const line = `[${bytes(to - from)} of output not shown (bytes ${from}-${to - 1}): ${why}]\n`;
      grow(s.pre, () => s.pre.append(el("span", { className: "dropped", data: { reason: String(reason) },
        text: (text && !text.textContent.endsWith("\n") ? "\n" : "") + line })));
    }

    // A job_output event's args.
    function onOutput(a) {
      const f = current;
      if (!f || a.job_id !== f.id || !f.live || f.eof || typeof a.next_offset !== "number") return;
      if (a.offset > f.next) {
        // Bytes dropped with no gap frame before (the event says where it starts).
        marker(f, f.next, a.offset, "dropped");
        f.next = a.offset;
      }
      const chunks = Array.isArray(a.chunks) ? a.chunks : [];
      chunks.forEach((chunk, i) => {
        const end = i + 1 < chunks.length ? chunks[i + 1].offset : a.next_offset;
        if (end <= f.next) return;  // shown already
        const text = chunk.offset < f.next ? tail(chunk.data, f.next - chunk.offset, end - chunk.offset) : chunk.data;
        if (text) addChunk(f, chunk, text);
        f.next = end;
      });
      f.next = Math.max(f.next, a.next_offset);
      if (a.eof) {
        f.eof = true;
        f.live = false;
        f.codes = a.return_codes || {};
        f.flags = FLAGS.filter((flag) => a[flag] === true);
      }
      render(f, lookup(f.id));
    }

    function onGap(a) {
      const f = current;
      if (!f || a.job_id !== f.id || !f.live || f.eof) return;
      if (a.missed_to <= f.next) return;
      marker(f, Math.max(a.missed_from, f.next), a.missed_to, a.reason);
      f.next = a.missed_to;
    }

    // Headings (return codes) and the status line, from the follow and what the jobs
    // table knows of the job.
    function render(f, j) {
      const d = (j && j.details) || {};
      const commands = j ? j.commands : [];
      if (commands.length) section(f, commands.length - 1, j);
      f.sections.forEach((s, i) => {
        const cmd = commands[i];
        let rc = f.codes[String(i)];
        if (rc === undefined && cmd !== undefined) rc = d["return_codes/" + cmd];
        s.rc.textContent = rc === undefined ? "" : ` exit ${rc}`;
        s.rc.className = rc === undefined || String(rc) === "0" ? "rc" : "rc failed";
        // A command that ended without a byte of output.
        if (f.eof && !s.any && !s.pre.firstChild) s.pre.textContent = "(no output)";
      });
      let text;
      let kind = "";
      if (f.eof) {
        const codes = Object.keys(f.codes).sort((x, y) => x - y).map((i) => f.codes[i]);
        text = `Finished: return code${codes.length === 1 ? "" : "s"} ${codes.join(", ") || "none"}`;
        if (f.flags.length) text += " · " + f.flags.map((flag) => flag.replace("_", " ")).join(", ");
        kind = codes.some((rc) => Number(rc) !== 0) || f.flags.length ? "failed" : "ok";
      } else if (j && j.state === "pending") {
        text = "Not started yet; its output will show here.";
      } else if (f.lost) {
        text = "Connection lost: the output goes on from where it was once the page reconnects.";
      } else {
        text = f.live ? "Following the output live…" : "Asking the daemon for the output…";
        kind = f.live ? "live" : "";
      }
      f.status.textContent = text;
      f.status.className = "output-status " + kind;
    }

    return {
      // Follow job `j`, ending the follow of any other.
      follow(j) {
        this.stop();
        render(start(j), j);
      },

      stop() {
        if (current) unsubscribe(current);
        current = null;
      },

      // Forget the follow without telling the daemon (signing out closes the connection).
      forget() {
        current = null;
      },

      following(id) {
        return current !== null && current.id === id;
      },

      // The panel's content for job `j`: the same node each time (app.js re-creates the
      // row around it), or null when the daemon cannot stream it.
      view(j) {
        const f = current;
        if (!f || f.id !== j.id || f.unavailable) return null;
        render(f, j);
        // Moving the node to the new row resets its scroll positions: put them back.
        const scrolls = f.sections.map((s) => s.pre.scrollTop);
        queueMicrotask(() => f.sections.forEach((s, i) => { s.pre.scrollTop = scrolls[i]; }));
        return f.root;
      },

      // The job was run again under the same id: its output starts again.
      restarted(j) {
        if (!this.following(j.id)) return;
        unsubscribe(current);
        start(j);
      },

      // After (re)connecting and signing in: the subscription is gone with the old
      // connection; ask again from where the page is.
      resume() {
        const f = current;
        if (!f || f.eof || f.unavailable) return;
        f.live = false;
        subscribe(f);
        render(f, lookup(f.id));
      },

      // The connection dropped: so does the subscription (resume() renews it).
      disconnected() {
        if (!current || !current.live) return;
        current.live = false;
        current.lost = true;
        render(current, lookup(current.id));
      },

      // An event frame; true when it is this panel's (a job_output event, or a gap of
      // job-output).
      onEvent(frame) {
        const a = frame.args || {};
        if (frame.name === "job_output") {
          onOutput(a);
          return true;
        }
        if (frame.name === "gap" && a.source === "job-output") {
          onGap(a);
          return true;
        }
        return false;
      },
    };
  }

  return { follower };
})();
