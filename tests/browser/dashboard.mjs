// Browser scenarios for the sysadmd dashboard, run by test_dashboard_browser.py:
//
//     node dashboard.mjs '{"scenario": "run_job", "url": "http://127.0.0.1:PORT/", ...}'
//
// Each scenario drives Debian's Chromium (headless) with playwright-core, asserts with
// node:assert, and exits 0 on success. On failure it prints the error, the page's console
// and a screenshot path, and exits 1. Exit 3 means Chromium could not be launched at all.
// Any console error or CSP violation on the page fails the scenario.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
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

// --- scenarios ------------------------------------------------------------------------

const scenarios = {
  // Just start Chromium and show a page: tells the tests whether they can run here.
  async probe(page) {
    await page.setContent("<p>ok</p>");
    assert.equal(await text(page, "p"), "ok");
  },

  // A wrong password is explained; then the pools, the current jobs and the Life
  // Preserver feed appear.
  async login_and_state(page) {
    await page.goto(params.url);
    await page.locator("#login").waitFor({ state: "visible" });
    assert.ok(await page.locator("#main").isHidden());
    await page.fill("#login-user", "admin");
    await page.fill("#login-password", "not-the-password");
    await page.click("#login-form button[type=submit]");
    await page.locator("#error").waitFor({ state: "visible" });
    const error = await text(page, "#error");
    assert.match(error, /Wrong user name or password/);
    assert.match(error, /\(401\)/);
    assert.ok(await page.locator("#main").isHidden());

    await page.fill("#login-password", params.password);
    await page.click("#login-form button[type=submit]");
    await page.locator("#main").waitFor({ state: "visible" });
    assert.ok(await page.locator("#error").isHidden(), "the old error stays after signing in");
    assert.match(await text(page, "#who"), /admin \(full access\)/);
    assert.ok(await page.locator("#run-form").isVisible(), "a full user sees the run form");

    // System state from the fake zpool.
    await page.locator('#pools tr[data-pool="tank"]').waitFor({ timeout: WAIT });
    assert.equal(await text(page, "#state-hostname"), params.hostname);
    assert.equal(await text(page, "#state-priority"), "9 - Urgent");
    const cells = (pool) => page.locator(`#pools tr[data-pool="${pool}"] td`).allTextContents();
    const tank = await cells("tank");
    assert.deepEqual([tank[0], tank[1], tank[3], tank[4], tank[5]], ["tank", "ONLINE", "107G", "13.1G", "93.9G"]);
    assert.match(tank[2], /12%/);
    assert.equal(tank[8], "0 - Information");
    const backup = await cells("backup");
    assert.equal(backup[1], "DEGRADED");
    assert.equal(backup[8], "9 - Urgent");
    // Health colours and capacity bars (the bar's width is set through the CSSOM, which
    // the CSP allows; a blocked style would leave it at 0).
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

    // The job that was running before the page loaded came from rpc/dispatcher list.
    await waitForState(page, params.preexisting, "running");
    assert.match(await text(page, `${jobRow(params.preexisting)} td.commands`), /sleep 30/);

    // The Life Preserver feed.
    await page.locator("#lp-feed li").first().waitFor({ timeout: WAIT });
    assert.match(await text(page, "#lp-feed li .message"), /New snapshot of tank\/data/);
    assert.equal(await text(page, "#lp-feed li .class"), "snapshot");
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
    assert.deepEqual(await page.evaluate(() => window.__states), ["pending", "running", "finished"]);
    assert.equal(await text(page, `${jobRow("hello")} td.result`), "ok");
    await page.waitForFunction((sel) => /hello/.test(document.querySelector(sel).textContent),
      `${jobRow("hello")} pre.log`, { timeout: WAIT });
    const commands = await page.locator(`${jobRow("hello")} .cmd`).allTextContents();
    assert.deepEqual(commands, ["$ echo hello exit 0", "$ sleep 2 exit 0"]);
    const logs = await page.locator(`${jobRow("hello")} pre.log`).allTextContents();
    assert.equal(logs[0], "hello\n");
    assert.equal(logs[1], "(no output)");

    // The same id again while a job holds it: the daemon's 409 is shown readably.
    await page.fill("#run-id", "blocker");
    await page.fill("#run-commands", "sleep 30");
    await page.click("#run-form button[type=submit]");
    await waitForState(page, "blocker", "running");
    await page.fill("#run-id", "blocker");
    await page.fill("#run-commands", "true");
    await page.click("#run-form button[type=submit]");
    await page.locator("#error").waitFor({ state: "visible" });
    assert.match(await text(page, "#error"), /Run blocker: Conflict \(409\)\./);
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
    assert.match(await text(page, `${jobRow("sleeper")} td.result`), /failed \(exit -15\).*killed/);
    assert.equal(await page.locator(`${jobRow("sleeper")} button.kill`).count(), 0);
  },

  // A limited user sees jobs, but no run form and no kill buttons.
  async limited_user(page) {
    await signIn(page, "viewer", params.password);
    assert.match(await text(page, "#who"), /viewer \(read-only access\)/);
    await waitForState(page, params.preexisting, "running");
    await page.locator('#pools tr[data-pool="tank"]').waitFor({ timeout: WAIT });
    assert.ok(await page.locator("#run-form").isHidden(), "the run form is shown to a limited user");
    assert.equal(await page.locator("#jobs button.kill").count(), 0);
    assert.equal(await page.locator("#jobs button.toggle").count(), 1);
  },

  // Served over https by an ssl: endpoint: the page uses wss:// (a ws:// socket from an
  // https page would be blocked as mixed content) and works as over http.
  async tls(page) {
    assert.match(params.url, /^https:/);
    await signIn(page, "admin", params.password);
    await page.locator('#pools tr[data-pool="tank"]').waitFor({ timeout: WAIT });
    await runFromForm(page, "secure", ["echo secure"]);
    await waitForState(page, "secure", "finished");
    assert.equal(await text(page, `${jobRow("secure")} td.result`), "ok");
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
    assert.ok(await page.locator("#login").isHidden(), "the page asked for the password again");
    assert.ok(await page.evaluate(() => /^[0-9a-f]{64}$/.test(sessionStorage.getItem("sysadmd.token"))));
    await runFromForm(page, "again", ["echo again"]);
    await waitForState(page, "again", "finished");
    assert.equal(await text(page, `${jobRow("again")} td.result`), "ok");

    // Signing out forgets the token: a reload asks for the password.
    await page.click("#logout");
    await page.locator("#login").waitFor({ state: "visible" });
    await page.reload();
    await page.locator("#login").waitFor({ state: "visible" });
    assert.equal(await page.evaluate(() => sessionStorage.getItem("sysadmd.token")), null);
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
