// Fixtures for the browser tests: real hub processes on loopback, Debian's headless Chromium
// through playwright-core, HS256 tokens, and a watcher for console errors.
import {spawn} from 'node:child_process';
import {createHmac} from 'node:crypto';
import {existsSync, mkdirSync} from 'node:fs';
import {createInterface} from 'node:readline';
import {dirname, join, resolve} from 'node:path';
import {fileURLToPath} from 'node:url';
import {chromium} from 'playwright-core';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const TARGET = process.env.CARGO_TARGET_DIR ? resolve(ROOT, process.env.CARGO_TARGET_DIR) : join(ROOT, 'target');
export const SCREENSHOTS = join(TARGET, 'screenshots');
export const HERALD = process.env.HERALD_BIN || join(TARGET, 'debug', 'herald');
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
export const KEY = 'browser-test-secret';

/** The flags that keep Chromium quiet and offline (this machine has no internet). */
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage',
];

export const DESKTOP = {viewport: {width: 1280, height: 800}};
export const PHONE = {
  viewport: {width: 390, height: 844}, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
};

/** Launches Chromium; throws (the test fails, never skips) when it is not installed. */
export async function launch() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: install it (apt-get install -y chromium) or set CHROMIUM_BIN`);
  }
  return chromium.launch({executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS});
}

/**
 * Starts `herald serve --listen ADDR ARGS...` and resolves once it printed
 * `herald listening on http://ADDR`. `listen` defaults to a random loopback port.
 */
export async function startHub(args, {listen = '127.0.0.1:0'} = {}) {
  if (!existsSync(HERALD)) {
    throw new Error(`${HERALD} is missing: run cargo build first (or set HERALD_BIN)`);
  }
  const child = spawn(HERALD, ['serve', '--listen', listen, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {...process.env, HERALD_LOG: process.env.HERALD_LOG || 'warn'},
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => { stderr += chunk; });
  const exited = new Promise((done) => child.once('exit', (code, signal) => done({code, signal})));
  const lines = createInterface({input: child.stdout});
  let timer;
  const first = await Promise.race([
    new Promise((done) => lines.once('line', done)),
    exited.then(({code, signal}) => {
      throw new Error(`herald exited (${code ?? signal}) before listening: ${stderr.trim()}`);
    }),
    new Promise((_, fail) => { timer = setTimeout(() => fail(new Error('herald did not start within 15 s')), 15000); }),
  ]).finally(() => clearTimeout(timer));
  lines.on('line', () => {}); // keep draining stdout
  const match = /^herald listening on (https?:\/\/\S+)$/.exec(first);
  if (!match) {
    child.kill('SIGKILL');
    throw new Error(`unexpected first line from herald: ${first}`);
  }
  const url = match[1];
  return {
    url,
    addr: url.replace(/^https?:\/\//, ''),
    child,
    exited,
    stderr: () => stderr,
    /** SIGKILL (a crash) or SIGTERM (a clean stop); resolves when the process is gone. */
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 8000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** An HS256 JWT with a `mercure` claim, signed with `key`. */
export function token(claim, key = KEY) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const unsigned = `${part({alg: 'HS256', typ: 'JWT'})}.${part({mercure: claim})}`;
  return `${unsigned}.${createHmac('sha256', key).update(unsigned).digest('base64url')}`;
}

/** Publishes a Mercure form with a token allowed to publish anywhere; resolves to the id. */
export async function publish(hub, fields, key = KEY) {
  const body = new URLSearchParams();
  for (const [name, value] of Object.entries(fields)) {
    for (const one of [].concat(value)) body.append(name, one);
  }
  const response = await fetch(`${hub.url}/.well-known/mercure`, {
    method: 'POST',
    headers: {authorization: `Bearer ${token({publish: ['*']}, key)}`},
    body,
  });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`publish failed: ${response.status} ${text}`);
  return text;
}

/** Collects console errors, uncaught exceptions and failed requests of a page. */
export function watch(page) {
  const problems = [];
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()} (${message.location().url})`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('requestfailed', (request) => {
    // A stream cut short by navigation or by closing the page is not a failure of the page.
    const failure = request.failure()?.errorText || '';
    if (!/ERR_ABORTED/.test(failure)) problems.push(`request failed: ${request.url()} ${failure}`);
  });
  return problems;
}

/** Polls `check` until it returns a truthy value; fails after `timeout` ms with `what`. */
export async function eventually(what, check, timeout = 10000) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await new Promise((done) => setTimeout(done, 100));
  }
}

/** Saves a full-page screenshot under target/screenshots/. */
export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, {recursive: true});
  const path = join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({path, fullPage: true});
  return path;
}
