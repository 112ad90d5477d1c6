// The console: subscribe to several selectors with a token and Last-Event-ID, publish with a
// token (public and private), and the curl commands that say the same.
import assert from 'node:assert/strict';
import {after, before, test} from 'node:test';
import {DESKTOP, KEY, eventually, launch, publish, startHub, token, watch} from './lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const eventsText = (page) => page.$$eval('#events li.event', (items) => items.map((item) => item.textContent));

test('the console subscribes, publishes with a token and shows curl for both', {timeout: 60000}, async () => {
  const hub = await startHub(['--store', 'memory:', '--demo', '--jwt-key', KEY]);
  const context = await browser.newContext(DESKTOP);
  try {
    const earlier = await publish(hub, {topic: 'books/1', data: 'published before subscribing'});
    const page = await context.newPage();
    const problems = watch(page);
    await page.goto(`${hub.url}/console`);

    // Subscribe to two selectors (a URI template and an exact topic), resuming from history,
    // with a token that may see private updates of books.
    await page.fill('#selectors', 'books/{id}\nnews');
    await page.fill('#sub-token', token({subscribe: ['books/{id}']}));
    await page.fill('#last-id', 'earliest');
    const subscribeCurl = await page.textContent('#subscribe-curl');
    assert.match(subscribeCurl, /^curl -N/);
    assert.match(subscribeCurl, /-H 'Authorization: Bearer ey[^']+'/);
    assert.match(subscribeCurl, /-H 'Last-Event-ID: earliest'/);
    assert.ok(subscribeCurl.includes(`'${hub.url}/.well-known/mercure?topic=books%2F%7Bid%7D&topic=news'`), subscribeCurl);
    await page.click('#subscribe-start');
    await eventually('the subscription to open', async () => (await page.textContent('#state')) === 'open');
    await eventually('the replayed update', async () => (await eventsText(page)).some((text) => text.includes(earlier)));

    // Publish a private typed update with an id from the form.
    await page.fill('#pub-topics', 'books/2');
    await page.fill('#pub-data', '{"title":"Dune"}');
    await page.fill('#pub-token', token({publish: ['*']}));
    await page.fill('#pub-id', 'book-2');
    await page.fill('#pub-type', 'book.created');
    await page.check('#pub-private');
    const publishCurl = await page.textContent('#publish-curl');
    for (const part of ['--data-urlencode topic=books/2', `--data-urlencode 'data={"title":"Dune"}'`,
      '--data-urlencode id=book-2', '--data-urlencode type=book.created', '--data-urlencode private=on',
      ` ${hub.url}/.well-known/mercure`]) {
      assert.ok(publishCurl.includes(part), `${part} in ${publishCurl}`);
    }
    await page.click('#publish-send');
    await eventually('the publish result', async () => (await page.textContent('#publish-result')) === 'Published: book-2');
    const event = await eventually('the private event', async () => (await eventsText(page)).find((text) => text.includes('id book-2')));
    assert.ok(event.includes('book.created'), event);
    assert.ok(event.includes('"title": "Dune"'), `pretty-printed JSON: ${event}`);

    // Something the selectors do not cover never shows up; a matching public update does.
    await publish(hub, {topic: 'elsewhere', data: 'not for us'});
    await publish(hub, {topic: 'news', data: 'extra extra'});
    await eventually('the news', async () => (await eventsText(page)).some((text) => text.includes('extra extra')));
    assert.ok(!(await eventsText(page)).some((text) => text.includes('not for us')));

    // A refused publish says why.
    await page.fill('#pub-token', 'not-a-token');
    await page.click('#publish-send');
    await eventually('the refusal', async () => (await page.textContent('#publish-result')).startsWith('Refused: 401'));

    // The copy buttons copy the command.
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], {origin: hub.url});
    await page.click('button[data-copy="subscribe-curl"]');
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), await page.textContent('#subscribe-curl'));

    await page.click('#subscribe-stop');
    assert.equal(await page.textContent('#state'), 'not subscribed');
    // The refused publish logs a failed request (401) to the console; nothing else may.
    assert.deepEqual(problems.filter((problem) => !problem.includes('401')), []);
  } finally {
    await context.close();
    await hub.stop();
  }
});

test('the console subscribes the Mercure 1.0 way with a URL Pattern', {timeout: 60000}, async () => {
  const hub = await startHub(['--store', 'memory:', '--demo', '--jwt-key', KEY]);
  const context = await browser.newContext(DESKTOP);
  try {
    const page = await context.newPage();
    const problems = watch(page);
    await page.goto(`${hub.url}/console`);
    await page.selectOption('#matcher', 'match_urlpattern');
    await page.fill('#selectors', '/books/:id');
    const subscribeCurl = await page.textContent('#subscribe-curl');
    assert.ok(subscribeCurl.includes(`'${hub.url}/.well-known/mercure?match_urlpattern=%2Fbooks%2F%3Aid'`), subscribeCurl);
    await page.click('#subscribe-start');
    await eventually('the subscription to open', async () => (await page.textContent('#state')) === 'open');
    await publish(hub, {topic: '/books/1/reviews', data: 'not for us'});
    await publish(hub, {topic: '/books/7', data: 'a relative topic'});
    await eventually('the matching update', async () => (await eventsText(page)).some((text) => text.includes('a relative topic')));
    assert.ok(!(await eventsText(page)).some((text) => text.includes('not for us')));
    await page.click('#subscribe-stop');
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
    await hub.stop();
  }
});
