// The npm clients people use instead of the native EventSource, unmodified and with their
// defaults, against a real hub on a durable store that is killed and restarted:
// - event-source-polyfill (an Authorization header through its `headers` option) resumes with
//   the `lastEventId` query parameter, its only way to send the last id;
// - @microsoft/fetch-event-source, whose `onmessage` sees every blank line, with the
//   `JSON.parse(msg.data)` handler apps write: comments must never reach it.
// The page lives on another origin (a tiny static server on loopback that also serves the
// packages' files from node_modules), as an application using these clients does.
import assert from 'node:assert/strict';
import {mkdtempSync, readFileSync, rmSync} from 'node:fs';
import {createServer} from 'node:http';
import {createRequire} from 'node:module';
import {tmpdir} from 'node:os';
import {dirname, extname, join, normalize} from 'node:path';
import {after, before, test} from 'node:test';
import {DESKTOP, KEY, eventually, launch, publish, startHub, token} from './lib.mjs';

const require = createRequire(import.meta.url);
const POLYFILL = require.resolve('event-source-polyfill/src/eventsource.js');
const FETCH_EVENT_SOURCE = join(dirname(require.resolve('@microsoft/fetch-event-source/package.json')), 'lib', 'esm');

let browser;
let site;
let origin;

before(async () => {
  browser = await launch();
  site = createServer((request, response) => {
    const path = new URL(request.url, 'http://site').pathname;
    if (path === '/') {
      response.writeHead(200, {'content-type': 'text/html; charset=utf-8'});
      response.end('<!doctype html><title>an application</title><p>An application on its own origin.</p>'
        + '<script src="/event-source-polyfill.js"></script>'
        + '<script type="module">import {fetchEventSource} from "/fetch-event-source/index.js";'
        + ' window.fetchEventSource = fetchEventSource;</script>');
      return;
    }
    let file;
    if (path === '/event-source-polyfill.js') {
      file = POLYFILL;
    } else if (path.startsWith('/fetch-event-source/')) {
      // The package's ES modules import './parse' without an extension, as bundlers allow.
      const name = normalize(path.slice('/fetch-event-source/'.length)).replace(/^(\.\.[/\\])+/, '');
      file = join(FETCH_EVENT_SOURCE, extname(name) ? name : `${name}.js`);
    }
    try {
      const body = readFileSync(file);
      response.writeHead(200, {'content-type': 'text/javascript; charset=utf-8'});
      response.end(body);
    } catch {
      response.writeHead(404).end();
    }
  });
  await new Promise((done) => site.listen(0, '127.0.0.1', done));
  origin = `http://127.0.0.1:${site.address().port}`;
});

after(async () => {
  await browser?.close();
  site?.close();
});

/** A hub on a durable store in a temp dir; `restart` kills it and starts it on the same port. */
async function durableHub(extra = []) {
  const dir = mkdtempSync(join(tmpdir(), 'herald-clients-'));
  const args = ['--store', join(dir, 'store'), '--jwt-key', KEY, '--cors-origin', origin, ...extra];
  const hub = {current: await startHub(args)};
  return {
    get url() { return hub.current.url; },
    get server() { return hub.current; },
    async crash() { await hub.current.stop('SIGKILL'); },
    async restart() { hub.current = await startHub(args, {listen: hub.current.addr}); },
    async close() {
      await hub.current.stop();
      rmSync(dir, {recursive: true, force: true});
    },
  };
}

/** Opens the application page and waits for both packages to be loaded. */
async function appPage(context) {
  const page = await context.newPage();
  await page.goto(`${origin}/`);
  await eventually('the packages to load', () => page.evaluate(
    () => typeof window.EventSourcePolyfill === 'function' && typeof window.fetchEventSource === 'function'));
  return page;
}

const subscriptions = async (url) => (await (await fetch(`${url}/healthz`)).json()).subscriptions;
const pause = (ms) => new Promise((done) => setTimeout(done, ms));

test('event-source-polyfill with its defaults gets what was published while the hub was down, once',
  {timeout: 90000}, async () => {
    const hub = await durableHub();
    const context = await browser.newContext(DESKTOP);
    try {
      const page = await appPage(context);
      const requests = [];
      page.on('request', (request) => {
        if (request.method() === 'GET' && request.url().startsWith(`${hub.url}/.well-known/mercure`)) {
          requests.push(request.url());
        }
      });
      const url = `${hub.url}/.well-known/mercure?topic=${encodeURIComponent('orders/{id}')}`;
      await page.evaluate(([url, bearer]) => {
        window.received = [];
        window.opens = 0;
        // Defaults, plus the token in a header: the reason people use this package.
        window.source = new window.EventSourcePolyfill(url, {headers: {Authorization: `Bearer ${bearer}`}});
        window.source.onopen = () => { window.opens += 1; };
        window.source.onmessage = (event) => window.received.push({id: event.lastEventId, data: event.data});
      }, [url, token({subscribe: ['orders/{id}']})]);
      await eventually('the polyfill to open', () => page.evaluate(() => window.source.readyState === 1));
      const received = () => page.evaluate(() => window.received);

      // `retry` keeps the client away for 4 s after the crash: time to restart and publish.
      const a = await publish(hub.server, {topic: 'orders/1', data: 'A', private: 'on', retry: '4000'});
      await eventually('A', async () => (await received()).length === 1);

      await hub.crash();
      await eventually('the polyfill to notice', () => page.evaluate(() => window.source.readyState === 0));
      await hub.restart();
      const b = await publish(hub.server, {topic: 'orders/2', data: 'B (published while the client was away)', private: 'on'});
      assert.equal(await subscriptions(hub.url), 0, 'the client had not reconnected yet when B was published');

      await eventually('B, by replay after the reconnection', async () => (await received()).length >= 2, 20000);
      const c = await publish(hub.server, {topic: 'orders/3', data: 'C', private: 'on'});
      await eventually('C, live', async () => (await received()).length >= 3);
      await pause(500); // room for a duplicate to (wrongly) show up
      assert.deepEqual(await received(), [
        {id: a, data: 'A'},
        {id: b, data: 'B (published while the client was away)'},
        {id: c, data: 'C'},
      ]);
      assert.equal(await page.evaluate(() => window.opens), 2);
      // It resumed the way it always does: the query parameter, spelled `lastEventId`.
      assert.equal(requests.length, 2, requests.join('\n'));
      assert.equal(new URL(requests[1]).searchParams.get('lastEventId'), a, requests[1]);
    } finally {
      await context.close();
      await hub.close();
    }
  });

test('event-source-polyfill: heartbeats keep its heartbeatTimeout from reconnecting a quiet stream',
  {timeout: 60000}, async () => {
    // Scaled down: the package waits 45 s (heartbeatTimeout) for any byte before it drops and
    // reconnects, and the hub's default heartbeat is 15 s. Here 1 s against 2.5 s.
    const hub = await durableHub(['--heartbeat', '1s']);
    const context = await browser.newContext(DESKTOP);
    try {
      const page = await appPage(context);
      await page.evaluate(([url, bearer]) => {
        window.received = [];
        window.opens = 0;
        window.errors = 0;
        window.source = new window.EventSourcePolyfill(url, {
          headers: {Authorization: `Bearer ${bearer}`},
          heartbeatTimeout: 2500,
        });
        window.source.onopen = () => { window.opens += 1; };
        window.source.onerror = () => { window.errors += 1; };
        window.source.onmessage = (event) => window.received.push(event.data);
      }, [`${hub.url}/.well-known/mercure?topic=quiet`, token({subscribe: ['quiet']})]);
      await eventually('the polyfill to open', () => page.evaluate(() => window.source.readyState === 1));
      await pause(6000);
      await publish(hub.server, {topic: 'quiet', data: 'after a quiet while'});
      await eventually('the update', () => page.evaluate(() => window.received.length === 1));
      assert.deepEqual(await page.evaluate(() => [window.opens, window.errors, window.received]),
        [1, 0, ['after a quiet while']]);
    } finally {
      await context.close();
      await hub.close();
    }
  });

test('@microsoft/fetch-event-source with a JSON.parse onmessage gets every update across heartbeats and a restart',
  {timeout: 90000}, async () => {
    const hub = await durableHub(['--heartbeat', '1s']);
    const context = await browser.newContext(DESKTOP);
    try {
      const page = await appPage(context);
      await page.evaluate(([url, bearer]) => {
        window.seen = [];
        window.parsed = [];
        window.errors = [];
        window.opens = 0;
        // As the package's README writes it, with the handler apps write.
        window.fetchEventSource(url, {
          headers: {Authorization: `Bearer ${bearer}`},
          async onopen(response) {
            if (!response.ok || !response.headers.get('content-type')?.startsWith('text/event-stream')) {
              throw new Error(`unexpected response ${response.status}`);
            }
            window.opens += 1;
          },
          onmessage(message) {
            window.seen.push(message.data);
            window.parsed.push({id: message.id, value: JSON.parse(message.data)});
          },
          onclose() { throw new Error('the hub closed the stream'); }, // retry, as the README shows
          onerror(error) { window.errors.push(`${error.name}: ${error.message}`); }, // then retry
        });
      }, [`${hub.url}/.well-known/mercure?topic=prices`, token({subscribe: ['prices']})]);
      await eventually('the stream to open', () => page.evaluate(() => window.opens === 1));
      const parsed = () => page.evaluate(() => window.parsed);
      const state = () => page.evaluate(() => ({seen: window.seen, errors: window.errors, opens: window.opens}));

      const one = await publish(hub.server, {topic: 'prices', data: '{"n":1}', retry: '4000'});
      await eventually('the first update', async () => (await parsed()).length === 1);
      await pause(3500); // three heartbeats
      const two = await publish(hub.server, {topic: 'prices', data: '{"n":2}'});
      await eventually('the second update', async () => (await parsed()).length === 2);
      assert.deepEqual(await state(), {seen: ['{"n":1}', '{"n":2}'], errors: [], opens: 1});

      await hub.crash();
      await eventually('the client to notice', async () => (await state()).errors.length >= 1);
      await hub.restart();
      const three = await publish(hub.server, {topic: 'prices', data: '{"n":3}'});
      assert.equal(await subscriptions(hub.url), 0, 'the client had not reconnected yet when 3 was published');
      await eventually('the third update, by replay', async () => (await parsed()).length >= 3, 20000);
      await pause(2500); // more heartbeats
      const four = await publish(hub.server, {topic: 'prices', data: '{"n":4}'});
      await eventually('the fourth update, live', async () => (await parsed()).length >= 4);
      await pause(500);

      assert.deepEqual(await parsed(), [
        {id: one, value: {n: 1}},
        {id: two, value: {n: 2}},
        {id: three, value: {n: 3}},
        {id: four, value: {n: 4}},
      ]);
      const {seen, errors, opens} = await state();
      assert.deepEqual(seen, ['{"n":1}', '{"n":2}', '{"n":3}', '{"n":4}'], 'onmessage saw only the updates');
      assert.equal(opens, 2, 'one reconnection: the restart');
      // The only errors are the crash and the refused attempts while the hub was down.
      assert.ok(errors.every((error) => !/SyntaxError|JSON/.test(error)), errors.join('\n'));
    } finally {
      await context.close();
      await hub.close();
    }
  });
