// The native EventSource against a real hub: resuming across a hub crash and restart on the same
// durable store, and private updates to a page on another origin with withCredentials + cookie.
import assert from 'node:assert/strict';
import {mkdtempSync, rmSync} from 'node:fs';
import {createServer} from 'node:http';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {after, before, test} from 'node:test';
import {DESKTOP, KEY, eventually, launch, publish, startHub, token, watch} from './lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** Opens an EventSource in the page; its events collect in window.received. */
async function listen(page, url, init) {
  await page.evaluate(([url, init]) => {
    window.received = [];
    window.opens = 0;
    window.source = new EventSource(url, init || undefined);
    window.source.onopen = () => { window.opens += 1; };
    window.source.onmessage = (event) => window.received.push({id: event.lastEventId, data: event.data});
  }, [url, init]);
  await eventually('the EventSource to open', () => page.evaluate(() => window.source.readyState === 1));
}

const received = (page) => page.evaluate(() => window.received);

test('an EventSource resumes after the hub is killed and restarted on the same store, and gets what it missed',
  {timeout: 90000}, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'herald-browser-'));
    const store = join(dir, 'store');
    const args = ['--store', store, '--jwt-key', KEY, '--anonymous', '--heartbeat', '1s'];
    let hub = await startHub(args);
    const context = await browser.newContext(DESKTOP);
    try {
      const page = await context.newPage();
      await page.goto(`${hub.url}/`);
      await listen(page, '/.well-known/mercure?topic=resume');

      // `retry` makes the browser wait 4 s before reconnecting: time to restart the hub and
      // publish while the page is away.
      const first = await publish(hub, {topic: 'resume', data: 'one', retry: '4000'});
      await eventually('the first update', async () => (await received(page)).length === 1);

      await hub.stop('SIGKILL');
      await eventually('the page to notice', () => page.evaluate(() => window.source.readyState === 0));
      hub = await startHub(args, {listen: hub.addr});
      const missed = await publish(hub, {topic: 'resume', data: 'two (published while the page was away)'});
      const health = await (await fetch(`${hub.url}/healthz`)).json();
      assert.equal(health.subscriptions, 0, 'the page had not reconnected yet when "two" was published');

      await eventually('the missed update, by replay', async () => (await received(page)).length >= 2, 20000);
      const third = await publish(hub, {topic: 'resume', data: 'three'});
      await eventually('the live update after it', async () => (await received(page)).length >= 3);
      assert.deepEqual(await received(page), [
        {id: first, data: 'one'},
        {id: missed, data: 'two (published while the page was away)'},
        {id: third, data: 'three'},
      ]);
      assert.equal(await page.evaluate(() => window.opens), 2);
    } finally {
      await context.close();
      await hub.stop();
      rmSync(dir, {recursive: true, force: true});
    }
  });

test('a page on another origin receives a private update with withCredentials and the mercureAuthorization cookie',
  {timeout: 60000}, async () => {
    // The other origin: a tiny server on another loopback port that serves one page.
    const site = createServer((request, response) => {
      if (request.url === '/favicon.ico') {
        response.writeHead(204).end();
        return;
      }
      response.writeHead(200, {'content-type': 'text/html; charset=utf-8'});
      response.end('<!doctype html><title>another origin</title><p>An application on another origin.</p>');
    });
    await new Promise((done) => site.listen(0, '127.0.0.1', done));
    const origin = `http://127.0.0.1:${site.address().port}`;
    // No --anonymous: without its cookie the page gets nothing at all.
    const hub = await startHub(['--store', 'memory:', '--jwt-key', KEY, '--cors-origin', origin]);
    const context = await browser.newContext(DESKTOP);
    try {
      await context.addCookies([{
        name: 'mercureAuthorization',
        value: token({subscribe: ['orders/{id}']}),
        url: hub.url,
        httpOnly: true,
        sameSite: 'Lax',
      }]);
      const page = await context.newPage();
      const problems = watch(page);
      await page.goto(`${origin}/`);
      assert.notEqual(new URL(page.url()).origin, new URL(hub.url).origin);

      await listen(page, `${hub.url}/.well-known/mercure?topic=orders/42`, {withCredentials: true});
      const id = await publish(hub, {topic: 'orders/42', data: 'private: for the cookie holder', private: 'on'});
      await eventually('the private update', async () => (await received(page)).length === 1);
      assert.deepEqual(await received(page), [{id, data: 'private: for the cookie holder'}]);
      assert.deepEqual(problems, []);

      // Without credentials the cookie is not sent, and the hub (no --anonymous) refuses.
      const refused = await page.evaluate((url) => new Promise((done) => {
        const source = new EventSource(url);
        source.onerror = () => { done(source.readyState); source.close(); };
        source.onopen = () => { done('opened'); source.close(); };
      }), `${hub.url}/.well-known/mercure?topic=orders/42`);
      assert.equal(refused, 2, 'EventSource without credentials is refused (CLOSED)');
    } finally {
      await context.close();
      await hub.stop();
      site.close();
    }
  });
