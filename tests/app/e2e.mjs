// End-to-end test of the real app binary through tauri-driver and WebKitWebDriver, under Xvfb.
// It clicks a demo resource of the embedded lab, watches the timeline fill with the real
// checkpoints of a real launch, sends bytes through the session's port, checks the tray menu
// after two launches, closes a session and sees it go, relaunches a resource and closes its
// session with real clicks on the tray icon docked in a tray host (trayer, started by
// scripts/test-app.sh) and on its menu's items, reads every launch's report back in the
// Support panel, opens an exported bundle dropped on the window (and refuses a damaged or
// foreign one), lists the lab gateway's pin with its fingerprint in Settings, asks before a launch
// to a gateway it removed the pin of (refused, then accepted), refuses a key changed by an
// imported profile naming both fingerprints, and takes screenshots for docs/.
//
// Usage: node tests/app/e2e.mjs APP_BINARY [SCREENSHOT_DIR]   (tauri-driver on :4444)
import net from "node:net";
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [app, shots] = process.argv.slice(2);
if (!app) throw new Error("usage: e2e.mjs APP_BINARY [SCREENSHOT_DIR]");
const DRIVER = process.env.WEBDRIVER_URL ?? "http://127.0.0.1:4444";
const ELEMENT = "element-6066-11e4-a52e-4f735466cecf";
let passed = 0;
let failed = 0;

async function wd(method, url, body) {
  const res = await fetch(DRIVER + url, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(`${method} ${url}: ${res.status} ${JSON.stringify(json.value ?? json)}`);
  return json.value;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, fn, timeoutMs = 30000) {
  const start = Date.now();
  let last;
  while (Date.now() - start < timeoutMs) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await sleep(150);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
}

async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok - ${name}`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}: ${e.message}`);
    throw e;
  }
}

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

const session = await wd("POST", "/session", {
  capabilities: { alwaysMatch: { browserName: "wry", "tauri:options": { application: app } } },
});
const sid = session.sessionId;
const find = async (css) => (await wd("POST", `/session/${sid}/element`, { using: "css selector", value: css }))[ELEMENT];
// Re-find and retry on a stale element: the UI re-renders panels as data arrives.
const click = async (css) =>
  waitFor(`a click on ${css}`, async () => {
    await wd("POST", `/session/${sid}/element/${await find(css)}/click`, {});
    return true;
  }, 10000);
// Reads go through one script, so a re-render cannot tear them.
const script = async (body, args = []) => wd("POST", `/session/${sid}/execute/sync`, { script: body, args });
const invoke = async (cmd, args = {}) =>
  wd("POST", `/session/${sid}/execute/async`, {
    script: "const done = arguments[arguments.length - 1]; window.__TAURI_INTERNALS__.invoke(arguments[0], arguments[1]).then(done, (e) => done({ error: e }));",
    args: [cmd, args],
  });
async function screenshot(name) {
  if (!shots) return;
  fs.mkdirSync(shots, { recursive: true });
  await sleep(1000); // the window's frame lags the DOM under Xvfb
  const png = await wd("GET", `/session/${sid}/screenshot`);
  fs.writeFileSync(path.join(shots, `${name}.png`), Buffer.from(png, "base64"));
}
// A file dropped on the window, as the drop handler receives it from a file manager.
async function dropFile(name, text) {
  await script(`const dt = new DataTransfer();
    dt.items.add(new File([arguments[1]], arguments[0], { type: 'application/json' }));
    window.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));`, [name, text]);
}
async function phasesShown() {
  return script(`return [...document.querySelectorAll('[data-testid="timeline"] [data-testid^="phase-"]')]
    .map((e) => e.dataset.testid.slice("phase-".length));`);
}
async function sessionRows() {
  return script(`return [...document.querySelectorAll('[data-testid^="session-"]:not([data-testid="session-port"])')]
    .map((r) => ({ id: r.dataset.testid.slice("session-".length),
                   resource: r.querySelector('td .strong')?.textContent.trim() ?? "",
                   port: r.querySelector('[data-testid="session-port"]')?.textContent.trim() ?? "" }));`);
}

// The tray as a user reaches it. The icon is found docked in the tray host's panel (the app's
// indicator falls back to XEmbed without a StatusNotifier host); a real right click on it (X
// input through xdotool) opens the GTK menu; tray_menu.py reads where GTK drew each of its lines
// (AT-SPI) and a real left click on a line chooses it.
const xdotool = (...args) => execFileSync("xdotool", args, { encoding: "utf8", timeout: 20000 }).trim();
const PYTHON = process.env.PYTHON ?? "/usr/bin/python3";
const TRAY_MENU = path.join(path.dirname(new URL(import.meta.url).pathname), "tray_menu.py");
const shownTrayMenu = () => JSON.parse(execFileSync(PYTHON, [TRAY_MENU], { encoding: "utf8", timeout: 20000 }));
const geometry = (window) =>
  Object.fromEntries(xdotool("getwindowgeometry", "--shell", window).split("\n").map((l) => l.split("=")).map(([k, v]) => [k, Number(v)]));
const inside = (g, host) => g.X >= host.X && g.Y >= host.Y && g.X + g.WIDTH <= host.X + host.WIDTH && g.Y + g.HEIGHT <= host.Y + host.HEIGHT;
function dockedTrayIcon() {
  const panel = geometry(xdotool("search", "--onlyvisible", "--class", "trayer").split("\n")[0]);
  for (const window of xdotool("search", "--onlyvisible", "--class", "tray-icon").split("\n")) {
    const g = geometry(window);
    if (g.WIDTH > 1 && inside(g, panel)) return g;
  }
  return null;
}
const clickAt = (x, y, button) => xdotool("mousemove", "--sync", String(Math.round(x)), String(Math.round(y)), "click", String(button));
async function closeTrayMenu() {
  for (let attempt = 0; attempt < 3 && shownTrayMenu().length; attempt++) {
    xdotool("key", "Escape");
    await waitFor("the tray menu to close", () => shownTrayMenu().length === 0, 2000).catch(() => clickAt(2, 876, 1));
  }
}
// The menu's lines as shown after a right click on the icon; retried, a click can be lost while
// the app rebuilds its menu.
async function openTrayMenu(ready = () => true) {
  const icon = await waitFor("the tray icon docked in the tray host", dockedTrayIcon);
  let last = [];
  for (let attempt = 0; attempt < 4; attempt++) {
    await closeTrayMenu();
    clickAt(icon.X + icon.WIDTH / 2, icon.Y + icon.HEIGHT / 2, 3);
    const lines = await waitFor("the tray menu", () => {
      last = shownTrayMenu();
      return last.some((l) => l.label === "Quit") && ready(last) ? last : null;
    }, 5000).catch(() => null);
    if (lines) return lines;
  }
  throw new Error(`the tray menu did not open as expected; shown: ${JSON.stringify(last.map((l) => l.label))}`);
}
async function chooseFromTray(prefix) {
  const lines = await openTrayMenu((shown) => shown.some((l) => l.enabled && l.label.startsWith(prefix)));
  const line = lines.find((l) => l.enabled && l.label.startsWith(prefix));
  const [x, y] = [line.x + line.width / 2, line.y + line.height / 2];
  console.log(`# tray: a click on "${line.label}" at ${x},${y}, in a menu of ${lines.length} lines`);
  clickAt(x, y, 1);
  await waitFor("the tray menu to close after the click", () => shownTrayMenu().length === 0, 10000);
  return line.label;
}
const textOf = async (css) => script("return document.querySelector(arguments[0])?.textContent ?? null;", [css]);
function echo(port, message) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write(message));
    let got = "";
    socket.on("data", (d) => {
      got += d;
      if (got.length >= message.length) {
        socket.end();
        resolve(got);
      }
    });
    socket.on("error", reject);
    setTimeout(() => reject(new Error("echo timed out")), 10000);
  });
}

// A key's fingerprint as SSH prints it: `SHA256:` and the unpadded base64 of the key's SHA-256.
const fingerprintOf = (key) =>
  "SHA256:" + crypto.createHash("sha256").update(Buffer.from(key, "base64")).digest("base64").replace(/=+$/, "");
// The pins Settings lists: gateway, fingerprint, and the key (the fingerprint's tooltip).
async function pinsShown() {
  return script(`return [...document.querySelectorAll('[data-testid="pin-list"] [data-testid="pin"]')].map((li) => ({
    gateway: li.querySelector('.pin-gateway').textContent.trim(),
    fingerprint: li.querySelector('.pin-fingerprint').textContent.trim(),
    key: li.querySelector('.pin-fingerprint').title }));`);
}
async function dismissShownError() {
  if (await textOf('[data-testid="error-banner"]')) await click('[aria-label="Dismiss error"]');
  await waitFor("no error shown", async () => (await textOf('[data-testid="error-banner"]')) === null, 5000);
}
async function typeInto(css, text) {
  const el = await find(css);
  await wd("POST", `/session/${sid}/element/${el}/clear`, {});
  await wd("POST", `/session/${sid}/element/${el}/value`, { text });
}
// The in-page question (a modal <dialog>) and its text, when shown.
const dialogShown = () => script(`const d = document.querySelector('[data-testid="confirm"]');
  return d && d.open ? d.textContent : null;`);
// A profile file chosen in Settings' picker: the file's path typed into the file input, as
// WebDriver uploads files; if this driver cannot, the file set on the input as a picker does.
async function pickProfile(file) {
  const input = await find('[data-testid="settings-import"]');
  try {
    await wd("POST", `/session/${sid}/element/${input}/value`, { text: file });
  } catch (e) {
    console.log(`# the driver does not upload files (${e.message.slice(0, 120)}); setting the input's files`);
    await script(`const dt = new DataTransfer();
      dt.items.add(new File([arguments[1]], arguments[0], { type: 'text/plain' }));
      const input = document.querySelector('[data-testid="settings-import"]');
      input.files = dt.files;
      input.dispatchEvent(new Event('change', { bubbles: true }));`, [path.basename(file), fs.readFileSync(file, "utf8")]);
  }
}

try {
  await check("the embedded lab's resources are listed", async () => {
    await waitFor("the demo-echo resource", () => find('[data-testid="connect-demo-echo"]'), 60000);
    await screenshot("resources");
  });

  await check("clicking a resource fills the timeline with the launch's real checkpoints", async () => {
    await click('[data-testid="connect-demo-echo"]');
    await waitFor("the ready checkpoint", async () => (await phasesShown()).includes("ready"));
    const phases = await phasesShown();
    for (const p of ["create_tube_ok", "websocket_registered", "gateway_offer_http_done", "answer_received",
      "webrtc_data_plane_connected", "local_listener_ready", "target_connected", "ready"]) {
      assert(phases.includes(p), `timeline lacks ${p}: ${phases}`);
    }
    assert(phases.indexOf("websocket_listener_started_early") < phases.indexOf("create_tube_ok"), `order: ${phases}`);
    assert(phases.indexOf("answer_received") < phases.indexOf("ready"), `order: ${phases}`);
    const total = await textOf('[data-testid="timeline-total"]');
    assert(/\d/.test(total), `total shown: ${total}`);
    await screenshot("timeline");
  });

  let echoSession;
  await check("the session appears with its port, and bytes flow through it", async () => {
    await click('[data-testid="nav-sessions"]');
    const rows = await waitFor("a session row", async () => {
      const r = await sessionRows();
      return r.length === 1 ? r : null;
    });
    echoSession = rows[0];
    const port = Number(echoSession.port);
    assert(port > 0, `port shown: ${port}`);
    const reply = await echo(port, "through the tube\n");
    assert(reply === "through the tube\n", `echo: ${JSON.stringify(reply)}`);
  });

  await check("the tray menu lists recent and active sessions after two launches", async () => {
    await click('[data-testid="nav-resources"]');
    await click('[data-testid="connect-demo-web"]');
    await click('[data-testid="nav-sessions"]');
    await waitFor("two session rows", async () => (await sessionRows()).length === 2);
    await sleep(300);
    const items = await invoke("tray_menu_items");
    assert(Array.isArray(items), `tray items: ${JSON.stringify(items)}`);
    const launches = items.filter((i) => i.startsWith("Launch "));
    const closes = items.filter((i) => i.startsWith("Close "));
    assert(launches[0] === "Launch demo-web" && launches[1] === "Launch demo-echo", `recent: ${items}`);
    assert(closes.length === 2 && closes.some((c) => c.startsWith("Close demo-echo (127.0.0.1:")), `active: ${items}`);
    assert(items.includes("Open Sallyport") && items.at(-1) === "Quit", `items: ${items}`);
    await screenshot("sessions");
  });

  await check("closing a session removes it, from the list and from the tray", async () => {
    await click(`[data-testid="close-${echoSession.id}"]`);
    await waitFor("the session to go", async () => !(await sessionRows()).some((r) => r.id === echoSession.id));
    const items = await waitFor("the tray to follow", async () => {
      const i = await invoke("tray_menu_items");
      return i.filter((x) => x.startsWith("Close ")).length === 1 ? i : null;
    });
    assert(!items.some((i) => i.startsWith("Close demo-echo")), `tray: ${items}`);
  });

  await check("the tray icon, docked in a tray host and clicked, relaunches a recent resource and closes its session", async () => {
    const before = await sessionRows();
    assert(before.length === 1 && before[0].resource === "demo-web", `sessions before: ${JSON.stringify(before)}`);
    const shown = (await openTrayMenu()).map((l) => l.label);
    assert(shown.includes("Launch demo-echo") && shown.includes("Launch demo-web"), `recent in the menu: ${shown}`);
    assert(shown.filter((l) => l.startsWith("Close ")).length === 1 && shown.includes(`Close demo-web (127.0.0.1:${before[0].port})`), `menu: ${shown}`);
    await closeTrayMenu();

    assert((await chooseFromTray("Launch demo-echo")) === "Launch demo-echo", "the relaunch line");
    const relaunched = await waitFor("the relaunched demo-echo session in the Sessions list", async () =>
      (await sessionRows()).find((r) => r.resource === "demo-echo" && Number(r.port) > 0));
    const reply = await echo(Number(relaunched.port), "relaunched from the tray\n");
    assert(reply === "relaunched from the tray\n", `echo: ${JSON.stringify(reply)}`);

    const closeLine = `Close demo-echo (127.0.0.1:${relaunched.port})`;
    assert((await chooseFromTray(closeLine)) === closeLine, "the close line");
    await waitFor("the session closed from the tray to leave the list", async () =>
      !(await sessionRows()).some((r) => r.id === relaunched.id));
    const after = (await openTrayMenu((l) => !l.some((x) => x.label.startsWith("Close demo-echo")))).map((l) => l.label);
    assert(after.includes(`Close demo-web (127.0.0.1:${before[0].port})`), `menu after: ${after}`);
    await closeTrayMenu();
  });

  let bundlePath;
  await check("history keeps the three launches (two from the window, one from the tray) with their timelines", async () => {
    const history = await invoke("history");
    assert(history.length === 3 && history.every((h) => h.outcome === "ok"), JSON.stringify(history).slice(0, 300));
    assert(history[0].checkpoints.at(-1).phase === "ready", "a history timeline ends with ready");
    const bundle = await invoke("export_bundle", { launch_id: history[0].launch_id });
    assert(typeof bundle === "string" && fs.existsSync(bundle), `bundle: ${JSON.stringify(bundle)}`);
    const content = fs.readFileSync(bundle, "utf8");
    assert(content.includes("webrtc_data_plane_connected") && content.includes("WEBSOCKET_BACKEND_DELAY"), "bundle content");
    bundlePath = bundle;
  });

  await check("the Support panel lists every launch the router was told of, each opens in the Timeline", async () => {
    await click('[data-testid="nav-support"]');
    const history = await invoke("history");
    await waitFor("every launch as reported", async () => {
      await click('[data-testid="support-refresh"]');
      const ids = await script(`return [...document.querySelectorAll('[data-testid^="support-launch-"]')]
        .map((r) => r.dataset.testid.slice("support-launch-".length));`);
      return history.every((h) => ids.includes(h.launch_id));
    });
    await waitFor("the chart's fleet and lab rows", async () =>
      (await textOf('[data-testid="support-fleet"]')) && (await textOf('[data-testid="support-group-lab"]')));
    const table = await textOf('[data-testid="support-launches"]');
    assert(table.includes("lab-user") && table.includes("demo-echo") && table.includes("demo-web"), `table: ${table}`);
    await screenshot("support");
    // A cell: WebKitWebDriver finds no point to click on a table row itself.
    await click(`[data-testid="support-launch-${history[0].launch_id}"] td`);
    await waitFor("the reported launch on the Timeline", () => textOf('[data-testid="timeline-reported"]'));
    const phases = await phasesShown();
    assert(phases.includes("answer_received") && phases.at(-1) === "ready", `phases: ${phases}`);
  });

  await check("a bundle dropped on the window opens in the Timeline, marked imported", async () => {
    await dropFile(path.basename(bundlePath), fs.readFileSync(bundlePath, "utf8"));
    await waitFor("the imported bundle", () => textOf('[data-testid="timeline-imported"]'));
    const integrity = await textOf('[data-testid="bundle-integrity"]');
    assert(integrity.includes("digest verified"), `integrity: ${integrity}`);
    const tunables = await textOf('[data-testid="bundle-tunables"]');
    assert(tunables.includes("WEBSOCKET_BACKEND_DELAY"), `tunables: ${tunables}`);
    const phases = await phasesShown();
    assert(phases.includes("webrtc_data_plane_connected") && phases.at(-1) === "ready", `phases: ${phases}`);
    await screenshot("bundle");
  });

  await check("a damaged or foreign bundle is an error with its code, never a view", async () => {
    const text = fs.readFileSync(bundlePath, "utf8");
    for (const [name, content, code, why] of [
      ["cut.json", text.slice(0, text.length / 2), "bundle_damaged", "truncated"],
      ["changed.json", text.replace('"ready"', '"reedy"'), "bundle_damaged", "digest"],
      ["newer.json", text.replace("diagnostic-bundle/v2", "diagnostic-bundle/v9"), "bundle_unsupported", "v9"],
    ]) {
      if (await textOf('[data-testid="error-banner"]')) await click('[aria-label="Dismiss error"]');
      await waitFor("no error shown", async () => (await textOf('[data-testid="error-banner"]')) === null, 5000);
      await dropFile(name, content);
      await waitFor(`the ${code} error for ${name}`, async () => (await textOf('[data-testid="error-code"]')) === code, 10000);
      const message = await textOf('[data-testid="error-message"]');
      assert(message.includes(why), `${name}: ${message}`);
      assert(await textOf('[data-testid="error-hint"]'), `${name}: no hint`);
      const phases = await phasesShown();
      assert(!phases.includes("reedy"), `${name} was drawn: ${phases}`);
    }
  });
  let labPin;
  await check("Settings lists the embedded lab's gateway pinned, with its SHA256 fingerprint", async () => {
    await dismissShownError();
    await click('[data-testid="nav-settings"]');
    const pins = await waitFor("the pinned gateways", async () => {
      const p = await pinsShown();
      return p.length ? p : null;
    });
    assert(pins.length === 1 && pins[0].gateway === "lab", `pins: ${JSON.stringify(pins)}`);
    labPin = pins[0];
    assert(/^SHA256:[A-Za-z0-9+/]{43}$/.test(labPin.fingerprint), `fingerprint: ${labPin.fingerprint}`);
    assert(labPin.fingerprint === fingerprintOf(labPin.key), `${labPin.fingerprint} is not the key's ${fingerprintOf(labPin.key)}`);
    const service = await invoke("pinned_gateways");
    assert(service.length === 1 && service[0].fingerprint === labPin.fingerprint, `service: ${JSON.stringify(service)}`);
    await screenshot("pins");
  });

  await check("without its pin, a launch asks with the gateway's fingerprint: refused, nothing starts; accepted, it launches and is pinned", async () => {
    await click('[data-testid="pin-remove"]');
    await waitFor("the pin to go", async () => (await pinsShown()).length === 0 && (await textOf('[data-testid="pin-list"]')).includes("none"));
    assert((await invoke("pinned_gateways")).length === 0, "the service still pins the lab gateway");
    const echoSessions = async () => (await sessionRows()).filter((r) => r.resource === "demo-echo").length;
    await click('[data-testid="nav-sessions"]');
    const before = await echoSessions();

    await click('[data-testid="nav-resources"]');
    await click('[data-testid="connect-demo-echo"]');
    const asked = await waitFor("the pin dialog", dialogShown);
    assert(asked.includes(labPin.fingerprint) && asked.includes('"lab"'), `dialog: ${asked}`);
    await screenshot("pin-dialog");
    await click('[data-testid="confirm-no"]');
    await waitFor("the dialog to close", async () => !(await dialogShown()));
    await waitFor("the unpinned_gateway error", async () => (await textOf('[data-testid="error-code"]')) === "unpinned_gateway", 10000);
    const message = await textOf('[data-testid="error-message"]');
    assert(message.includes('"lab"') && message.includes(labPin.fingerprint), `message: ${message}`);
    assert((await invoke("pinned_gateways")).length === 0, "refused, yet pinned");
    await click('[data-testid="nav-sessions"]');
    await sleep(500);
    assert((await echoSessions()) === before, "a session started after a refusal");

    await click('[data-testid="nav-resources"]');
    await click('[data-testid="connect-demo-echo"]');
    const again = await waitFor("the pin dialog again", dialogShown);
    assert(again.includes(labPin.fingerprint), `dialog: ${again}`);
    await click('[data-testid="confirm-yes"]');
    await waitFor("the accepted launch's ready checkpoint", async () => (await phasesShown()).includes("ready"));
    assert((await textOf('[data-testid="error-banner"]')) === null, `error: ${await textOf('[data-testid="error-banner"]')}`);
    await click('[data-testid="nav-sessions"]');
    const row = await waitFor("the accepted launch's session", async () =>
      (await echoSessions()) === before + 1 && (await sessionRows()).find((r) => r.resource === "demo-echo" && Number(r.port) > 0));
    const reply = await echo(Number(row.port), "after the pin\n");
    assert(reply === "after the pin\n", `echo: ${JSON.stringify(reply)}`);
    await click(`[data-testid="close-${row.id}"]`);
    await waitFor("the session to go", async () => !(await sessionRows()).some((r) => r.id === row.id));
    await click('[data-testid="nav-settings"]');
    const pins = await waitFor("the pin listed again", async () => {
      const p = await pinsShown();
      return p.length === 1 ? p : null;
    });
    assert(pins[0].gateway === "lab" && pins[0].fingerprint === labPin.fingerprint, `pins: ${JSON.stringify(pins)}`);
  });

  await check("an imported profile pinning another key for the lab's gateway: the launch is refused naming both fingerprints", async () => {
    await click('[data-testid="nav-settings"]');
    const routerUrl = await script(`return document.querySelector('[data-testid="settings-router"]').value;`);
    assert(routerUrl.startsWith("https://127.0.0.1:"), `router: ${routerUrl}`);
    const wrong = crypto.randomBytes(32).toString("base64");
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "sallyport-e2e-")), "team.toml");
    fs.writeFileSync(file, `router_url = "${routerUrl}"\n[gateways]\nlab = "${wrong}"\n`);
    await pickProfile(file);
    await waitFor("the import's status", async () =>
      (await textOf('[data-testid="import-status"]')) === `Imported: ${routerUrl}, 1 pinned gateway(s)`, 10000);
    const pins = await pinsShown();
    assert(pins.length === 1 && pins[0].fingerprint === fingerprintOf(wrong), `pins: ${JSON.stringify(pins)}`);

    await click('[data-testid="nav-resources"]');
    await click('[data-testid="connect-demo-echo"]');
    await waitFor("the gateway_key_changed error", async () => (await textOf('[data-testid="error-code"]')) === "gateway_key_changed", 10000);
    const message = await textOf('[data-testid="error-message"]');
    for (const part of ["lab", fingerprintOf(wrong), labPin.fingerprint]) assert(message.includes(part), `${part} not in: ${message}`);
    assert(!(await dialogShown()), "a changed key must not be offered for pinning");
    await screenshot("key-changed");

    // The right key back, typed into Settings' pin form: the lab launches again.
    await dismissShownError();
    await click('[data-testid="nav-settings"]');
    await typeInto('[data-testid="pin-gateway"]', "lab");
    await typeInto('[data-testid="pin-key"]', labPin.key);
    await click('[data-testid="pin-add"]');
    await waitFor("the right pin listed", async () => {
      const p = await pinsShown();
      return p.length === 1 && p[0].fingerprint === labPin.fingerprint;
    });
    await click('[data-testid="nav-resources"]');
    await click('[data-testid="connect-demo-echo"]');
    await waitFor("the ready checkpoint with the right pin", async () => (await phasesShown()).includes("ready"));
    assert((await textOf('[data-testid="error-banner"]')) === null, `error: ${await textOf('[data-testid="error-banner"]')}`);
  });
} catch {
  // reported above
} finally {
  await wd("DELETE", `/session/${sid}`).catch(() => {});
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
