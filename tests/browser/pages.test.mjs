// Every page loads with no console error, on a desktop and on a phone, and is saved as a
// screenshot under target/screenshots/ for a person to look at. Without --demo only / is there.
import assert from 'node:assert/strict';
import {after, before, test} from 'node:test';
import {DESKTOP, KEY, PHONE, eventually, launch, publish, startHub, token, watch, screenshot} from './lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** A chat name long enough to overflow a phone's line, with no place to break. */
const LONG_NAME = 'WWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWW'; // 40, the most allowed

/** Elements that stick out past the right edge of the screen and are not inside a box that
 * scrolls or clips (a `<pre>` scrolls sideways by design; an ellipsis clips). */
function overflowingElements() {
  const clipped = (node) => {
    for (let up = node.parentElement; up; up = up.parentElement) {
      if (['auto', 'scroll', 'hidden', 'clip'].includes(getComputedStyle(up).overflowX)) return true;
    }
    return false;
  };
  return [...document.querySelectorAll('body *')]
    .filter((node) => node.getBoundingClientRect().right > window.innerWidth + 0.5 && !clipped(node))
    .map((node) => `${node.tagName.toLowerCase()}${node.id ? '#' + node.id : ''}.${node.className}`);
}

/** What each page should show before its picture is taken. */
const PAGES = {
  index: {path: '/', ready: async (page) => (await page.textContent('main')).includes('Console')},
  chat: {
    path: '/chat',
    ready: async (page) => (await page.textContent('#state')) === 'open'
      && (await page.$$('#messages li:not(.empty)')).length >= 5,
  },
  clock: {
    path: '/clock',
    ready: async (page) => /^\d{2}:\d{2}:\d{2}$/.test(await page.textContent('#time'))
      && (await page.$$('#topics tbody tr')).length >= 2,
  },
  console: {
    path: '/console',
    prepare: async (page, hub) => {
      await page.fill('#selectors', 'demo\nbooks/{id}');
      await page.fill('#last-id', 'earliest');
      await page.click('#subscribe-start');
      await eventually('the console to subscribe', async () => (await page.textContent('#state')) === 'open');
      await page.fill('#pub-token', token({publish: ['*']}));
      await page.fill('#pub-data', '{"title": "Dune", "author": "Frank Herbert"}');
      await page.fill('#pub-topics', 'books/1');
      await page.fill('#pub-type', 'book.created');
      await page.click('#publish-send');
      await eventually('the publish result', async () => (await page.textContent('#publish-result')).startsWith('Published'));
      await publish(hub, {topic: 'demo', data: 'hello from curl'});
    },
    ready: async (page) => (await page.$$('#events li.event')).length >= 3,
  },
};

test('every page loads with no console error, and looks right on a desktop and a phone', {timeout: 120000}, async () => {
  const hub = await startHub(['--store', 'memory:', '--demo', '--jwt-key', KEY]);
  try {
    // Something to look at: a conversation, and an update the console replays.
    const chat = [['Ada', 'Hello! Is anyone here?'], ['Bob', 'Hi Ada! The hub works.'],
      ['Ada', 'Messages show up in every open window, live.'], ['Cy', 'And reloading replays the latest ones.'],
      [LONG_NAME, 'A long name must not push the time out of view.']];
    for (const [name, message] of chat) {
      const response = await fetch(`${hub.url}/chat/send`, {
        method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify({name, message}),
      });
      assert.equal(response.status, 200);
    }
    await publish(hub, {topic: 'demo', data: '{"greeting": "hello"}', type: 'greeting'});

    for (const [device, options] of [['desktop', DESKTOP], ['phone', PHONE]]) {
      for (const [name, spec] of Object.entries(PAGES)) {
        const context = await browser.newContext(options);
        if (name === 'chat') await context.addInitScript(() => localStorage.setItem('herald.chat.name', 'Ada'));
        const page = await context.newPage();
        const problems = watch(page);
        const response = await page.goto(`${hub.url}${spec.path}`);
        assert.equal(response.status(), 200, `${spec.path}`);
        await spec.prepare?.(page, hub);
        await eventually(`${name} to be ready on a ${device}`, () => spec.ready(page));
        // No horizontal scrolling on a phone, and nothing sticking out.
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(overflow <= 0, `${name} is ${overflow}px wider than the ${device} screen`);
        assert.deepEqual(await page.evaluate(overflowingElements), [], `${name} on a ${device}`);
        // One top bar: the same links on every page.
        const nav = await page.$$eval('.bar nav a', (links) => links.map((link) => link.getAttribute('href')));
        assert.deepEqual(nav, ['/chat', '/clock', '/console', '/topics', '/healthz'], `${name}'s top bar`);
        if (name === 'chat') {
          // Every message's time is in view, next to its name, however long the name.
          const times = await page.$$eval('#messages li:not(.empty) .meta', (metas) => metas.map((meta) => {
            const time = meta.querySelector('time').getBoundingClientRect();
            const box = meta.getBoundingClientRect();
            return {left: time.left, right: time.right, width: time.width, boxRight: box.right, screen: window.innerWidth};
          }));
          assert.equal(times.length, chat.length);
          for (const time of times) {
            assert.ok(time.width > 0 && time.left >= 0 && time.right <= Math.min(time.boxRight, time.screen) + 0.5,
              `a chat time out of view on a ${device}: ${JSON.stringify(time)}`);
          }
        }
        if (name === 'console') {
          // A `\` continuation is never alone on a line: it sits at the right of its argument's
          // last line.
          const lines = await page.$$eval('.cmd-line', (rows) => rows.map((row) => {
            const arg = row.querySelector('.arg').getBoundingClientRect();
            const cont = row.querySelector('.cont')?.getBoundingClientRect();
            return cont ? {argRight: arg.right, argBottom: arg.bottom, contLeft: cont.left, contBottom: cont.bottom} : null;
          }));
          assert.ok(lines.length >= 4, 'the curl commands are shown line by line');
          for (const line of lines.filter(Boolean)) {
            assert.ok(line.contLeft >= line.argRight - 0.5 && Math.abs(line.contBottom - line.argBottom) < 2,
              `a lone \\ on a ${device}: ${JSON.stringify(line)}`);
          }
        }
        await page.evaluate(() => window.scrollTo(0, 0));
        await screenshot(page, `${name}-${device}`);
        assert.deepEqual(problems, [], `${name} on a ${device}`);
        await context.close();
      }
    }
  } finally {
    await hub.stop();
  }
});

test('without --demo the index says how to turn the demo on, and the demo pages are 404', {timeout: 30000}, async () => {
  const hub = await startHub(['--store', 'memory:', '--jwt-key', KEY]);
  const context = await browser.newContext(DESKTOP);
  try {
    const page = await context.newPage();
    const problems = watch(page);
    await page.goto(`${hub.url}/`);
    assert.match(await page.textContent('#demo-off'), /--demo/);
    assert.equal(await page.$('a[href="/chat"]'), null);
    assert.ok((await page.textContent('#quick-start')).includes(`${hub.url}/.well-known/mercure?topic=demo`));
    await screenshot(page, 'index-no-demo-desktop');
    assert.deepEqual(problems, []);
    for (const path of ['/chat', '/clock', '/console', '/assets/chat.js']) {
      const response = await fetch(`${hub.url}${path}`);
      assert.equal(response.status, 404, path);
      assert.equal(response.headers.get('content-type'), 'application/problem+json');
    }
    for (const path of ['/', '/favicon.ico', '/favicon.svg', '/assets/herald.css', '/assets/herald.js']) {
      assert.equal((await fetch(`${hub.url}${path}`)).status, 200, path);
    }
  } finally {
    await context.close();
    await hub.stop();
  }
});
