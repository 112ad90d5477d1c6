// Mercure in a real browser: a page on the hub's origin opens a native EventSource on
// /.well-known/mercure and receives exactly the updates its selectors match, with the right
// data, lastEventId and type; private and non-matching updates never arrive.
import assert from 'node:assert/strict';
import {after, before, test} from 'node:test';
import {DESKTOP, KEY, eventually, launch, publish, startHub, watch} from './lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('a native EventSource receives raw topics, several topics, URI templates, multi-line data and custom ids',
  {timeout: 60000}, async () => {
    const hub = await startHub(['--store', 'memory:', '--jwt-key', KEY, '--anonymous']);
    const context = await browser.newContext(DESKTOP);
    try {
      const page = await context.newPage();
      const problems = watch(page);
      await page.goto(`${hub.url}/`);
      const url = '/.well-known/mercure?' + new URLSearchParams([
        ['topic', 'plain-topic'],
        ['topic', 'https://example.com/books/{id}'],
        ['topic', 'second-topic'],
      ]);
      await page.evaluate((url) => {
        window.received = [];
        window.source = new EventSource(url);
        const keep = (event) => window.received.push({type: event.type, id: event.lastEventId, data: event.data});
        window.source.onmessage = keep;
        window.source.addEventListener('book.updated', keep);
      }, url);
      await eventually('the EventSource to open', () => page.evaluate(() => window.source.readyState === 1));

      const raw = await publish(hub, {topic: 'plain-topic', data: 'a raw string topic'});
      const second = await publish(hub, {topic: 'second-topic', data: 'one of several topics'});
      const templated = await publish(hub, {topic: 'https://example.com/books/42', data: '{"id":42}', type: 'book.updated'});
      const multiline = await publish(hub, {topic: 'plain-topic', data: 'line one\nline two\r\nline three'});
      await publish(hub, {topic: 'plain-topic', data: 'a private update', private: 'on'});
      await publish(hub, {topic: 'https://example.com/books/42/reviews', data: 'not matching the template'});
      await publish(hub, {topic: 'elsewhere', data: 'not selected'});
      await publish(hub, {topic: 'plain-topic', data: 'with a custom id', id: 'my-custom-id'});

      await eventually('five updates', () => page.evaluate(() => window.received.length >= 5));
      // Give anything that should not arrive a moment to (wrongly) show up.
      await new Promise((done) => setTimeout(done, 300));
      assert.deepEqual(await page.evaluate(() => window.received), [
        {type: 'message', id: raw, data: 'a raw string topic'},
        {type: 'message', id: second, data: 'one of several topics'},
        {type: 'book.updated', id: templated, data: '{"id":42}'},
        {type: 'message', id: multiline, data: 'line one\nline two\nline three'},
        {type: 'message', id: 'my-custom-id', data: 'with a custom id'},
      ]);
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
      await hub.stop();
    }
  });
