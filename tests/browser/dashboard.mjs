// Browser scenarios for the sysadmd dashboard, run by test_dashboard_browser.py:
//
//     node dashboard.mjs '{"scenario": "run_job", "url": "http://127.0.0.1:PORT/", ...}'
//
// Each scenario drives Debian's Chromium (headless) with playwright-core, asserts with
// node:assert, and exits 0 on success. Every assertion on the page waits for its condition
// (`eventually`, `waitFor`, `waitForFunction`, up to WAIT): the page renders after its
// socket answers, so a one-shot read can run before the page has caught up (it did, under
// load: the signed-in user's name was read before it was shown). On failure it prints the error, the page's console
// and a screenshot path, and exits 1. Exit 3 means Chromium could not be launched at all.
// Any console error or CSP violation on the page fails the scenario.
//
// A scenario in which the test has a part to play (cutting the connection, restarting the
// daemon, running jobs) prints "STEP <name>" at each point and waits for the test's answer,
// one JSON line on stdin (`step`).
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { chromium } from "playwright-core";

const CHROMIUM = process.env.SYSADMD_CHROMIUM || "/usr/bin/chromium";
const FLAGS = [
  "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
const WAIT = 20000;

const params = JSON.parse(process.argv[2] || "{}");

async function launch() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "sysadmd-chromium-"));
  try {
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true, args: FLAGS, timeout: 60000,
      // The daemon's self-signed certificate, for the https/wss scenario.
      ignoreHTTPSErrors: String(params.url || "").startsWith("https:"),
    });
    return { context, profile };
  } catch (err) {
    fs.rmSync(profile, { recursive: true, force: true });
    console.error(`cannot launch ${CHROMIUM}: ${err.message.split("\n")[0]}`);
    process.exit(3);
  }
}

// --- helpers used by the scenarios ----------------------------------------------------

async function signIn(page, user, password) {
  await page.goto(params.url);
  await page.locator("#login").waitFor({ state: "visible" });
  await page.fill("#login-user", user);
  await page.fill("#login-password", password);
  await page.click("#login-form button[type=submit]");
  await page.locator("#main").waitFor({ state: "visible" });
  await page.waitForFunction(() => document.getElementById("conn").textContent === "connected");
  // Its subscriptions and first job listing done: a listing answered later would show
  // jobs the test starts after this (it did under a CPU hog).
  await page.waitForFunction(() => document.getElementById("main").dataset.loaded === "yes");
}

const jobRow = (id) => `#jobs tbody[data-job="${id}"]`;

// Records every state a job's row shows, from now on (a MutationObserver in the page).
async function recordStates(page, id) {
  await page.evaluate((jobId) => {
    window.__states = [];
    const note = () => {
      const body = document.querySelector(`#jobs tbody[data-job="${jobId}"]`);
      const state = body && body.dataset.state;
      if (state && window.__states[window.__states.length - 1] !== state) window.__states.push(state);
    };
    new MutationObserver(note).observe(document.getElementById("jobs"),
      { subtree: true, childList: true, attributes: true, attributeFilter: ["data-state"] });
  }, id);
}

async function waitForState(page, id, state) {
  await page.waitForFunction(([sel, want]) => {
    const body = document.querySelector(sel);
    return body && body.dataset.state === want;
  }, [jobRow(id), state], { timeout: WAIT });
}

async function runFromForm(page, id, commands) {
  await page.fill("#run-id", id);
  await page.fill("#run-commands", commands.join("\n"));
  await page.click("#run-form button[type=submit]");
  await page.waitForFunction((want) => document.getElementById("run-result").textContent === want,
    `Started ${id}.`);
}

const text = (page, selector) => page.locator(selector).first().textContent();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Runs `check` (which reads the page and asserts) until it passes, as @playwright/test's
// expect(...).toPass() does; after `timeout` ms the last assertion error is thrown.
async function eventually(check, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() >= deadline) throw err;
      await sleep(50);
    }
  }
}

// The first element matching `selector` has text matching `pattern` (a RegExp), or equal
// to it (a string), within WAIT.
async function expectText(page, selector, pattern) {
  await eventually(async () => {
    const actual = await text(page, selector);
    if (pattern instanceof RegExp) assert.match(actual, pattern, `${selector}: ${JSON.stringify(actual)}`);
    else assert.equal(actual, pattern, `${selector}`);
  });
}

// Every element matching `selector`, their texts deep-equal to `want`, within WAIT.
async function expectTexts(page, selector, want) {
  await eventually(async () => assert.deepEqual(await page.locator(selector).allTextContents(), want));
}

async function expectHidden(page, selector, message) {
  await eventually(async () => assert.ok(await page.locator(selector).isHidden(), message || `${selector} is shown`));
}

async function expectVisible(page, selector, message) {
  await eventually(async () => assert.ok(await page.locator(selector).isVisible(), message || `${selector} is hidden`));
}

async function expectCount(page, selector, count) {
  await eventually(async () => assert.equal(await page.locator(selector).count(), count, `count of ${selector}`));
}

let answers = null;

// Tell the test that step `name` is reached; resolves with its answer (a JSON line).
async function step(name) {
  if (!answers) answers = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  console.log(`STEP ${name}`);
  const { value, done } = await answers.next();
  if (done) throw new Error(`the test went away at step ${name}`);
  return JSON.parse(value);
}

// Records every state each job's row shows, from now on: window.__jobs = {id: [states]}.
async function recordJobStates(page) {
  await page.evaluate(() => {
    window.__jobs = {};
    const note = () => {
      for (const body of document.querySelectorAll("#jobs tbody[data-job]")) {
        const states = (window.__jobs[body.dataset.job] ||= []);
        if (states[states.length - 1] !== body.dataset.state) states.push(body.dataset.state);
      }
    };
    note();
    new MutationObserver(note).observe(document.getElementById("jobs"),
      { subtree: true, childList: true, attributes: true, attributeFilter: ["data-state"] });
  });
}

// Records every text the connection status shows, from now on: window.__conn.
async function recordConn(page) {
  await page.evaluate(() => {
    window.__conn = [];
    const conn = document.getElementById("conn");
    new MutationObserver(() => window.__conn.push(conn.textContent))
      .observe(conn, { childList: true, characterData: true, subtree: true });
  });
}

// Every numbered event and every gap the page receives, in order, seen from outside the
// page (through every socket it opens). Call before the page loads.
function recordFrames(page) {
  const frames = [];
  page.on("websocket", (ws) => ws.on("framereceived", ({ payload }) => {
    let frame;
    try {
      frame = JSON.parse(String(payload));
    } catch (err) {
      return;
    }
    if (frame.namespace === "events" && (frame.seq !== undefined || frame.name === "gap")) frames.push(frame);
  }));
  return frames;
}

// The daemon's side of "none twice, none missing": within an epoch the page is sent the
// dispatcher's events one number apart, but after a gap (then from its head on).
function checkNumbering(frames) {
  let epoch = null;
  let last = null;
  for (const f of frames) {
    if (f.name === "gap" && f.args.source === "dispatcher") {
      [epoch, last] = [f.args.epoch, f.args.head];
    } else if (f.name === "dispatcher") {
      if (f.epoch === epoch) assert.equal(f.seq, last + 1, `dispatcher event ${f.seq} after ${last}`);
      [epoch, last] = [f.epoch, f.seq];
    }
  }
}

// The password prompt shown after a daemon restart (its tokens are gone): sign in again.
async function signInAgain(page) {
  await page.locator("#login").waitFor({ state: "visible" });
  await expectText(page, "#error", /session has ended/);
  await page.fill("#login-password", params.password);
  await page.click("#login-form button[type=submit]");
  await page.locator("#main").waitFor({ state: "visible" });
  await page.waitForFunction(() => document.getElementById("conn").textContent === "connected");
  // Its subscriptions and first job listing done: a listing answered later would show
  // jobs the test starts after this (it did under a CPU hog).
  await page.waitForFunction(() => document.getElementById("main").dataset.loaded === "yes");
}

const snapshotText = (dataset) => `New snapshot of ${dataset}`;

// Each job went pending, running, finished exactly once (a job shown again would have
// gone back to pending), and each snapshot is one entry of the Life Preserver feed. To be
// read once the page has shown an event that came after all of them.
async function expectEachOnce(page, ids, datasets) {
  const states = await page.evaluate(() => window.__jobs);
  for (const id of ids) assert.deepEqual(states[id], ["pending", "running", "finished"], `states of ${id}`);
  const messages = await page.locator("#lp-feed li:not(.gap) .message").allTextContents();
  for (const dataset of datasets) {
    assert.equal(messages.filter((m) => m === snapshotText(dataset)).length, 1, `entries of ${dataset}: ${messages}`);
  }
}

async function waitForFinished(page, ids) {
  for (const id of ids) await waitForState(page, id, "finished");
}

async function expectSnapshots(page, datasets) {
  await eventually(async () => {
    const messages = await page.locator("#lp-feed li:not(.gap) .message").allTextContents();
    for (const dataset of datasets) assert.ok(messages.includes(snapshotText(dataset)), `no entry of ${dataset}: ${messages}`);
  });
}

// --- following a job's output (output.js) ---------------------------------------------

// What the page sends and receives about job output, seen from outside the page (through
// every socket it opens, numbered from 1): {sent: [{socket, frame}], received: [...]}, the
// events requests sent, and the job_output events, job-output gaps and replies received,
// in order. Call before the page loads.
function recordOutputFrames(page) {
  const log = { sockets: 0, sent: [], received: [] };
  const parse = (payload) => {
    try {
      return JSON.parse(String(payload));
    } catch (err) {
      return null;
    }
  };
  page.on("websocket", (ws) => {
    const socket = ++log.sockets;
    ws.on("framesent", ({ payload }) => {
      const frame = parse(payload);
      if (frame && frame.namespace === "events") log.sent.push({ socket, frame });
    });
    ws.on("framereceived", ({ payload }) => {
      const frame = parse(payload);
      if (frame && (frame.name === "job_output" || frame.name === "response" || frame.namespace === "error" ||
                    (frame.name === "gap" && frame.args.source === "job-output"))) {
        log.received.push({ socket, frame });
      }
    });
  });
  return log;
}

// The job-output subscriptions the page asked for, as [{socket, args}] (args: the
// job-output entry of the subscribe list).
const outputSubscribes = (log) => log.sent.flatMap(({ socket, frame }) => frame.name !== "subscribe" ? []
  : frame.args.filter((a) => a && a.name === "job-output").map((args) => ({ socket, args })));

// The text of a job's Output panel (every command's log, in order), and of its stderr.
const outputText = (page, id) => page.locator(`${jobRow(id)} .job-output pre.log`).evaluateAll(
  (pres) => pres.map((pre) => pre.textContent).join(""));
const stderrText = (page, id) => page.locator(`${jobRow(id)} .job-output pre.log .stderr`).evaluateAll(
  (spans) => spans.map((span) => span.textContent).join(""));


// --- scenarios ------------------------------------------------------------------------

const scenarios = {
  // Just start Chromium and show a page: tells the tests whether they can run here.
  async probe(page) {
    await page.setContent("<p>ok</p>");
    await expectText(page, "p", "ok");
  },

  // A wrong password is explained; then the pools, the current jobs and the Life
  // Preserver feed appear.
  async login_and_state(page) {
    await page.goto(params.url);
    await page.locator("#login").waitFor({ state: "visible" });
    await expectHidden(page, "#main");
    await page.fill("#login-user", "admin");
    await page.fill("#login-password", "not-the-password");
    await page.click("#login-form button[type=submit]");
    await page.locator("#error").waitFor({ state: "visible" });
    await eventually(async () => {
      const error = await text(page, "#error");
      assert.match(error, /Wrong user name or password/);
      assert.match(error, /\(401\)/);
    });
    await expectHidden(page, "#main");

    await page.fill("#login-password", params.password);
    await page.click("#login-form button[type=submit]");
    await page.locator("#main").waitFor({ state: "visible" });
    await expectHidden(page, "#error", "the old error stays after signing in");
    await expectText(page, "#who", /admin \(full access\)/);
    await expectVisible(page, "#run-form", "a full user does not see the run form");

    // System state from the fake zpool.
    await page.locator('#pools tr[data-pool="tank"]').waitFor({ timeout: WAIT });
    await expectText(page, "#state-hostname", params.hostname);
    await expectText(page, "#state-priority", "9 - Urgent");
    const cells = (pool) => page.locator(`#pools tr[data-pool="${pool}"] td`).allTextContents();
    await eventually(async () => {
      const tank = await cells("tank");
      assert.deepEqual([tank[0], tank[1], tank[3], tank[4], tank[5]], ["tank", "ONLINE", "107G", "13.1G", "93.9G"]);
      assert.match(tank[2], /12%/);
      assert.equal(tank[8], "0 - Information");
      const backup = await cells("backup");
      assert.equal(backup[1], "DEGRADED");
      assert.equal(backup[8], "9 - Urgent");
    });
    // Health colours and capacity bars (the bar's width is set through the CSSOM, which
    // the CSP allows; a blocked style would leave it at 0).
    await eventually(async () => {
      const look = await page.evaluate(() => {
        const row = (p) => document.querySelector(`#pools tr[data-pool="${p}"]`);
        const fill = (p) => row(p).querySelector(".bar .fill");
        const ratio = (p) => fill(p).getBoundingClientRect().width / row(p).querySelector(".bar").getBoundingClientRect().width;
        const colour = (p) => getComputedStyle(row(p).querySelector(".health")).backgroundColor;
        return {
          tank: ratio("tank"), backup: ratio("backup"),
          tankColour: colour("tank"), backupColour: colour("backup"),
          backupFill: fill("backup").className,
        };
      });
      assert.ok(Math.abs(look.tank - 0.12) < 0.02, `tank bar ${look.tank}`);
      assert.ok(Math.abs(look.backup - 0.85) < 0.02, `backup bar ${look.backup}`);
      assert.notEqual(look.tankColour, look.backupColour);
      assert.equal(look.tankColour, "rgb(31, 138, 76)");
      assert.match(look.backupFill, /warning/);
    });

    // The job that was running before the page loaded came from rpc/dispatcher list.
    await waitForState(page, params.preexisting, "running");
    await expectText(page, `${jobRow(params.preexisting)} td.commands`, /sleep 30/);

    // The Life Preserver feed.
    await page.locator("#lp-feed li").first().waitFor({ timeout: WAIT });
    await expectText(page, "#lp-feed li .message", /New snapshot of tank\/data/);
    await expectText(page, "#lp-feed li .class", "snapshot");
  },

  // Run ["echo hello", "sleep 2"] from the form: pending, running, finished, with output.
  async run_job(page) {
    await signIn(page, "admin", params.password);
    await recordStates(page, "hello");
    await runFromForm(page, "hello", ["echo hello", "sleep 2"]);
    await waitForState(page, "hello", "running");
    // While it runs, its row names the current command.
    await page.waitForFunction((sel) => /▶ sleep 2/.test(document.querySelector(sel).textContent),
      `${jobRow("hello")} td.commands`, { timeout: WAIT });
    await page.click(`${jobRow("hello")} button.toggle`);
    await waitForState(page, "hello", "finished");
    await eventually(async () => assert.deepEqual(await page.evaluate(() => window.__states),
      ["pending", "running", "finished"]));
    await expectText(page, `${jobRow("hello")} td.result`, "ok");
    await page.waitForFunction((sel) => /hello/.test(document.querySelector(sel).textContent),
      `${jobRow("hello")} pre.log`, { timeout: WAIT });
    await expectTexts(page, `${jobRow("hello")} .cmd`, ["$ echo hello exit 0", "$ sleep 2 exit 0"]);
    await expectTexts(page, `${jobRow("hello")} pre.log`, ["hello\n", "(no output)"]);

    // The same id again while a job holds it: the daemon's 409 is shown readably.
    await page.fill("#run-id", "blocker");
    await page.fill("#run-commands", "sleep 30");
    await page.click("#run-form button[type=submit]");
    await waitForState(page, "blocker", "running");
    await page.fill("#run-id", "blocker");
    await page.fill("#run-commands", "true");
    await page.click("#run-form button[type=submit]");
    await page.locator("#error").waitFor({ state: "visible" });
    await expectText(page, "#error", /Run blocker: Conflict \(409\)\./);
  },

  // Kill a running `sleep 60` with its row's button.
  async kill_job(page) {
    await signIn(page, "admin", params.password);
    await runFromForm(page, "sleeper", ["sleep 60"]);
    await waitForState(page, "sleeper", "running");
    const started = Date.now();
    await page.click(`${jobRow("sleeper")} button.kill`);
    await waitForState(page, "sleeper", "finished");
    assert.ok(Date.now() - started < 15000);
    await expectText(page, `${jobRow("sleeper")} td.result`, /failed \(exit -15\).*killed/);
    await expectCount(page, `${jobRow("sleeper")} button.kill`, 0);
  },

  // A limited user sees jobs, but no run form and no kill buttons.
  async limited_user(page) {
    await signIn(page, "viewer", params.password);
    // The access is known (and applied) once the name shows it; only then do the
    // checks that something is absent mean anything.
    await expectText(page, "#who", /viewer \(read-only access\)/);
    await waitForState(page, params.preexisting, "running");
    await page.locator('#pools tr[data-pool="tank"]').waitFor({ timeout: WAIT });
    await expectHidden(page, "#run-form", "the run form is shown to a limited user");
    await expectCount(page, "#jobs button.toggle", 1);
    await expectCount(page, "#jobs button.kill", 0);
  },

  // Served over https by an ssl: endpoint: the page uses wss:// (a ws:// socket from an
  // https page would be blocked as mixed content) and works as over http.
  async tls(page) {
    assert.match(params.url, /^https:/);
    await signIn(page, "admin", params.password);
    await page.locator('#pools tr[data-pool="tank"]').waitFor({ timeout: WAIT });
    await runFromForm(page, "secure", ["echo secure"]);
    await waitForState(page, "secure", "finished");
    await expectText(page, `${jobRow("secure")} td.result`, "ok");
  },

  // The daemon closes idle connections quickly here: the page reconnects by itself,
  // signs in again with its token, subscribes again, and still gets job events.
  async reconnect(page) {
    await signIn(page, "admin", params.password);
    await page.evaluate(() => {
      window.__conn = [];
      const conn = document.getElementById("conn");
      new MutationObserver(() => window.__conn.push(conn.textContent))
        .observe(conn, { childList: true, characterData: true, subtree: true });
    });
    await page.waitForFunction(() => window.__conn.some((t) => /reconnecting in 1 s/.test(t)) &&
      document.getElementById("conn").textContent === "connected", null, { timeout: WAIT });
    await expectHidden(page, "#login", "the page asked for the password again");
    await eventually(async () => assert.ok(await page.evaluate(
      () => /^[0-9a-f]{64}$/.test(sessionStorage.getItem("sysadmd.token"))), "no token kept"));
    await runFromForm(page, "again", ["echo again"]);
    await waitForState(page, "again", "finished");
    await expectText(page, `${jobRow("again")} td.result`, "ok");

    // Signing out forgets the token: a reload asks for the password.
    await page.click("#logout");
    await page.locator("#login").waitFor({ state: "visible" });
    await page.reload();
    await page.locator("#login").waitFor({ state: "visible" });
    await eventually(async () => assert.equal(
      await page.evaluate(() => sessionStorage.getItem("sysadmd.token")), null));
  },

  // The page's connection is cut (the test drops it at a TCP proxy) while jobs run and
  // snapshots are made; after it reconnects each is shown exactly once. Then again across
  // a daemon restart (the events are kept on disk), and then the missed events are gone
  // (a log of 2 events, then a lost log): the page shows a gap (and fetches the snapshots
  // still kept).
  async resume(page) {
    const frames = recordFrames(page);
    await signIn(page, "admin", params.password);
    await recordJobStates(page);
    await recordConn(page);
    await step("signed-in");  // the test runs "before", snapshots tank/before
    await waitForState(page, "before", "finished");
    await expectSnapshots(page, ["tank/before"]);
    let ids = ["before"];
    let datasets = ["tank/before"];

    // 1. A network drop; the daemon stays up, the page reconnects with its token.
    await step("seen");  // the test cuts, runs drop-1 and drop-2, snapshots them, restores
    await waitForFinished(page, ["drop-1", "drop-2"]);
    await expectSnapshots(page, ["tank/drop-1", "tank/drop-2"]);
    assert.ok(await page.evaluate(() => window.__conn.some((t) => /connection lost/.test(t))),
      "the page never saw its connection drop");
    await step("resumed-1");  // the test runs live-1: all that was missed is in by its end
    await waitForState(page, "live-1", "finished");
    ids = [...ids, "drop-1", "drop-2", "live-1"];
    datasets = [...datasets, "tank/drop-1", "tank/drop-2"];
    await expectEachOnce(page, ids, datasets);
    await expectHidden(page, "#login", "the page asked for the password after a network drop");
    await expectCount(page, ".gap", 0);

    // 2. A daemon restart: "old" ran before it, tank/stopped was made while it was
    // stopped, "new" after it. Its tokens are gone: the page asks for the password.
    await step("checked-1");
    await signInAgain(page);
    await waitForFinished(page, ["old", "new"]);
    await expectSnapshots(page, ["tank/stopped"]);
    await step("resumed-2");  // the test runs live-2
    await waitForState(page, "live-2", "finished");
    ids = [...ids, "old", "new", "live-2"];
    datasets = [...datasets, "tank/stopped"];
    await expectEachOnce(page, ids, datasets);
    await expectCount(page, ".gap", 0);

    // 3. Restarted keeping 2 events per source, after 3 more jobs and 3 snapshots: the
    // events the page missed expired, but for the last 2 of each.
    await step("checked-2");
    await signInAgain(page);
    // (Playwright may tell of a frame after the page has shown it.)
    const expiredGap = (source) => eventually(async () => {
      const frame = frames.find((f) => f.name === "gap" && f.args.reason === "expired" && f.args.source === source);
      assert.ok(frame, `no expired gap of ${source} received`);
      return frame.args;
    });
    const expired = '#jobs-gaps .gap[data-source="dispatcher"][data-reason="expired"]';
    await expectCount(page, expired, 1);
    const gap = await expiredGap("dispatcher");
    assert.ok(gap.first_available - 1 > gap.missed_from && gap.head >= gap.first_available, JSON.stringify(gap));
    await expectText(page, `${expired} .message`, `Missed events ${gap.missed_from}-${gap.first_available - 1} ` +
      "of dispatcher (expired: no longer kept by the daemon); showing the current state.");
    await expectCount(page, "#jobs-gaps .gap", 1);
    // The feed fetches the snapshots still kept: the last 2.
    const lpExpired = '#lp-feed .gap[data-source="life-preserver"][data-reason="expired"]';
    await expectCount(page, lpExpired, 1);
    const lpGap = await expiredGap("life-preserver");
    await expectText(page, `${lpExpired} .message`, `Missed event ${lpGap.missed_from} of life-preserver ` +
      `(expired: no longer kept by the daemon); ${lpGap.first_available}-${lpGap.head} (still kept) fetched.`);
    await expectSnapshots(page, ["tank/expired-2", "tank/expired-3"]);
    // Newest first, the gap in its place (below the events fetched after it).
    await eventually(async () => assert.deepEqual(
      (await page.locator("#lp-feed li").evaluateAll((lis) => lis.map((li) => li.className || li.querySelector(".message").textContent)))
        .slice(0, 4),
      [snapshotText("tank/expired-3"), snapshotText("tank/expired-2"), "gap", snapshotText("tank/stopped")]));
    datasets = [...datasets, "tank/expired-2", "tank/expired-3"];
    // Their events are gone, but the jobs are not: the page asked for the history.
    await waitForFinished(page, ["expired-1", "expired-2", "expired-3"]);
    const states = await page.evaluate(() => window.__jobs);
    for (const id of ["expired-1", "expired-2", "expired-3"]) assert.deepEqual(states[id], ["finished"], id);
    await expectEachOnce(page, ids, datasets);
    await expectCount(page, `#lp-feed li:not(.gap) .message:text-is("${snapshotText("tank/expired-1")}")`, 0);

    // 4. Restarted without its event logs: every source has a new epoch.
    await step("gap-expired");
    await signInAgain(page);
    for (const [list, source] of [["#jobs-gaps", "dispatcher"], ["#state-gaps", "system-state"], ["#lp-feed", "life-preserver"]]) {
      const entry = `${list} .gap[data-source="${source}"][data-reason="epoch_changed"]`;
      await expectCount(page, entry, 1);
      await expectText(page, `${entry} .message`, new RegExp(`^Missed events of ${source} after event \\d+ ` +
        "\\(epoch changed: the daemon's event log was lost or reset\\); showing the current state\\.$"));
    }
    await waitForState(page, "new-epoch", "finished");
    for (const reason of ["expired", "epoch_changed"]) {
      await expectVisible(page, `#jobs-gaps .gap[data-reason="${reason}"]`, `the ${reason} gap is not shown`);
    }
    checkNumbering(frames);
  },

  // The Output panel follows a job that prints a few lines, then waits (for a file the
  // test makes). The page's connection is cut meanwhile, the job prints the rest and ends;
  // after the reconnect the page subscribes again from the last next_offset it got, and
  // shows the whole output once, stderr apart, and the return codes.
  async output_resume(page) {
    const frames = recordOutputFrames(page);
    await signIn(page, "admin", params.password);
    await recordConn(page);
    await step("signed-in");  // the test starts the job
    const id = params.job;
    await waitForState(page, id, "running");
    await page.click(`${jobRow(id)} button.toggle`);
    await eventually(async () => {
      const shown = await outputText(page, id);
      for (const line of params.first) assert.ok(shown.includes(line + "\n"), `${JSON.stringify(line)} not in ${JSON.stringify(shown)}`);
    });
    await expectText(page, `${jobRow(id)} .output-status`, "Following the output live…");
    // (Playwright may tell of a frame after the page has acted on it.)
    await eventually(async () => assert.deepEqual(outputSubscribes(frames),
      [{ socket: 1, args: { name: "job-output", job_id: id, offset: 0 } }]));
    // Where the page is: the end of the last event it got.
    const before = await eventually(async () => {
      const got = frames.received.filter((r) => r.frame.name === "job_output");
      assert.ok(got.length, "no job_output event seen");
      const text = got.flatMap((r) => r.frame.args.chunks.map((c) => c.data)).join("");
      assert.equal(text, await outputText(page, id));
      return got[got.length - 1].frame.args.next_offset;
    });
    assert.ok(before > 0);

    // The test cuts the connection, lets the job go on, waits for its end, and restores.
    const { output, stderr } = await step("following");
    await waitForState(page, id, "finished");
    assert.ok(await page.evaluate(() => window.__conn.some((t) => /connection lost/.test(t))),
      "the page never saw its connection drop");
    await expectText(page, `${jobRow(id)} .output-status`, "Finished: return codes 0, 3");
    assert.equal(await outputText(page, id), output);
    assert.equal(await stderrText(page, id), stderr);
    for (const line of output.split("\n").filter(Boolean)) {
      assert.equal(output.split("\n").filter((l) => l === line).length, 1, `${line} is not once in the output`);
    }
    await expectTexts(page, `${jobRow(id)} .job-output .cmd`, params.heads);
    // stderr looks unlike stdout.
    const colours = await page.locator(`${jobRow(id)} .job-output pre.log`).first().evaluate((pre) => {
      const colour = (stream) => getComputedStyle(pre.querySelector(`.${stream}`)).color;
      return [colour("stdout"), colour("stderr")];
    });
    assert.notEqual(colours[0], colours[1]);
    // One subscription per connection, the second from where the first one was.
    await eventually(async () => {
      const subscribes = outputSubscribes(frames);
      assert.equal(subscribes.length, 2, JSON.stringify(subscribes));
      assert.ok(subscribes[1].socket > 1);
      assert.deepEqual(subscribes[1].args, { name: "job-output", job_id: id, offset: before });
      const resumed = frames.received.filter((r) => r.socket === subscribes[1].socket && r.frame.name === "job_output");
      assert.ok(resumed.length && resumed[resumed.length - 1].frame.args.eof);
      assert.equal(resumed[0].frame.args.offset, before);
    });
    assert.equal(frames.received.filter((r) => r.frame.name === "gap").length, 0);
  },

  // Following one job, then another: the first one's row closes and the page unsubscribes
  // from it (nothing more of it comes); the second one's output (its middle dropped by the
  // daemon's max_output_bytes) shows its head, a marker line naming the lost bytes, and its
  // tail. Opened again, the first job's output shows whole, from the start.
  async output_switch(page) {
    const frames = recordOutputFrames(page);
    await signIn(page, "admin", params.password);
    // "waiting" runs, "big" ran; the test tells what the daemon kept of big's output.
    const { head, tail, from, to } = await step("signed-in");
    await waitForState(page, "waiting", "running");
    await waitForState(page, "big", "finished");
    await page.click(`${jobRow("waiting")} button.toggle`);
    await eventually(async () => assert.equal(await outputText(page, "waiting"), "first\n"));
    await expectText(page, `${jobRow("waiting")} .output-status`, "Following the output live…");

    await page.click(`${jobRow("big")} button.toggle`);
    await expectCount(page, `${jobRow("waiting")} tr.output`, 0);
    await expectText(page, `${jobRow("waiting")} button.toggle`, "Output");
    await expectText(page, `${jobRow("big")} .output-status`, "Finished: return code 0");
    // (Playwright may tell of a frame after the page has acted on it.)
    await eventually(async () => {
      const sent = frames.sent.map((s) => [s.frame.name, s.frame.args]);
      assert.deepEqual(sent.slice(-2), [
        ["unsubscribe", [{ name: "job-output", job_id: "waiting" }]],
        ["subscribe", [{ name: "job-output", job_id: "big", offset: 0 }]],
      ]);
      const gaps = frames.received.filter((r) => r.frame.name === "gap");
      assert.deepEqual(gaps.map((r) => r.frame.args),
        [{ source: "job-output", job_id: "big", missed_from: from, missed_to: to, reason: "dropped" }]);
    });
    const size = `${+((to - from) / 1024 / 1024).toFixed(1)} MiB`;
    // On a line of its own: the head may end mid-line.
    const marker = (head.endsWith("\n") ? "" : "\n") +
      `[${size} of output not shown (bytes ${from}-${to - 1}): the job wrote more than the daemon keeps]\n`;
    await expectTexts(page, `${jobRow("big")} pre.log .dropped`, [marker]);
    const shown = await outputText(page, "big");
    assert.ok(shown === head + marker + tail, `the output is not head + marker + tail (${shown.length} characters ` +
      `shown, ${head.length} + ${marker.length} + ${tail.length} expected)`);
    assert.ok(tail.endsWith("END\n"));

    await step("switched");  // the test lets "waiting" end
    await waitForState(page, "waiting", "finished");
    await page.click(`${jobRow("waiting")} button.toggle`);
    await expectText(page, `${jobRow("waiting")} .output-status`, "Finished: return code 0");
    assert.equal(await outputText(page, "waiting"), "first\nsecond\n");
    // Nothing of "waiting" came between the reply to its unsubscribe and its new follow
    // (all on one connection).
    await eventually(async () => {
      assert.deepEqual([...new Set(frames.sent.map((s) => s.socket))], [1]);
      const unsubscribeId = frames.sent.find((s) => s.frame.name === "unsubscribe").frame.id;
      const followAgain = frames.sent.filter((s) => s.frame.name === "subscribe").pop().frame;
      assert.deepEqual(followAgain.args, [{ name: "job-output", job_id: "waiting", offset: 0 }]);
      const received = frames.received.map((r) => r.frame);
      const unsubscribed = received.findIndex((f) => f.id === unsubscribeId);
      const followed = received.findIndex((f) => f.id === followAgain.id);
      assert.ok(unsubscribed >= 0 && followed > unsubscribed, `replies at ${unsubscribed} and ${followed}`);
      assert.deepEqual(received.slice(unsubscribed, followed)
        .filter((f) => f.name === "job_output" && f.args.job_id === "waiting"), []);
    });
  },

  // An overflow gap, as the daemon sends it to a page that read too slowly: the page's
  // socket (routed through Playwright) loses the events of two jobs, a third one comes
  // through, and the gap says which were lost. The page fetches them again, shows each
  // once, and the third one not twice.
  async overflow(page) {
    const state = { dropping: false, dropped: [], subscribes: [], toPage: null, epoch: null, last: 0 };
    await page.routeWebSocket(/\/ws$/, (ws) => {
      const server = ws.connectToServer();
      state.toPage = (frame) => ws.send(JSON.stringify(frame));
      ws.onMessage((message) => {
        const frame = JSON.parse(String(message));
        if (frame.name === "subscribe") state.subscribes.push(frame.args);
        server.send(message);
      });
      server.onMessage((message) => {
        const frame = JSON.parse(String(message));
        if (frame.name === "dispatcher" && frame.seq !== undefined) {
          state.epoch = frame.epoch;
          state.last = Math.max(state.last, frame.seq);
          if (state.dropping) {
            state.dropped.push(frame.seq);
            return;
          }
        }
        ws.send(message);
      });
    });
    await signIn(page, "admin", params.password);
    await recordJobStates(page);
    await step("signed-in");  // the test runs "before"
    await waitForState(page, "before", "finished");

    state.dropping = true;
    const { head } = await step("dropping");  // the test runs lost-1 and lost-2
    await eventually(async () => assert.equal(state.dropped[state.dropped.length - 1], head));
    state.dropping = false;
    await expectCount(page, `${jobRow("lost-1")}, ${jobRow("lost-2")}`, 0);
    await step("passing");  // the test runs "through"
    await waitForState(page, "through", "finished");

    const [from, to] = [state.dropped[0], state.dropped[state.dropped.length - 1]];
    state.toPage({
      namespace: "events", name: "gap", id: "none",
      args: { source: "dispatcher", epoch: state.epoch, missed_from: from, missed_to: to,
              first_available: 1, head: state.last, reason: "overflow" },
    });
    const entry = '#jobs-gaps .gap[data-source="dispatcher"][data-reason="overflow"]';
    await expectCount(page, entry, 1);
    await waitForFinished(page, ["lost-1", "lost-2"]);
    await expectText(page, `${entry} .message`,
      `Missed events ${from}-${to} of dispatcher (overflow: this page fell behind); fetched again.`);
    assert.deepEqual(state.subscribes[state.subscribes.length - 1],
      [{ name: "dispatcher", since: from - 1, epoch: state.epoch }]);
    await step("fetched");  // the test runs "after"
    await waitForState(page, "after", "finished");
    await expectEachOnce(page, ["before", "lost-1", "lost-2", "through", "after"], []);
  },
};

async function main() {
  const scenario = scenarios[params.scenario];
  if (!scenario) {
    console.error(`unknown scenario ${params.scenario}`);
    process.exit(2);
  }
  const { context, profile } = await launch();
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(WAIT);
  const problems = [];
  const consoleLines = [];
  page.on("console", (m) => {
    consoleLines.push(`${m.type()}: ${m.text()}`);
    if (m.type() === "error") problems.push(m.text());
  });
  page.on("pageerror", (e) => problems.push(`uncaught: ${e.message}`));
  let failed = null;
  try {
    await scenario(page);
    assert.deepEqual(problems, [], "the page logged errors (CSP violations show here too)");
  } catch (err) {
    failed = err;
  }
  if (failed) {
    console.error(failed.stack || String(failed));
    console.error("--- page console ---\n" + consoleLines.join("\n"));
    if (params.artifacts) {
      const shot = path.join(params.artifacts, `${params.scenario}.png`);
      await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
      console.error(`screenshot: ${shot}`);
    }
  }
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
  process.exit(failed ? 1 : 0);
}

main().catch((err) => {
  console.error(err.stack || String(err));
  process.exit(1);
});
