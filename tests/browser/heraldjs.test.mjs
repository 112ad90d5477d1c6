// herald.js in Chromium, as an application uses it: the page lives on ANOTHER origin (a tiny
// static server on loopback) and imports `/herald.js` from the hub, over HTTP/1.1.
// - eight tabs on eight topics share one hub connection, each gets exactly its own updates;
// - the leader tab closes: another takes over, nothing is lost or seen twice;
// - a token (never in a URL) receives a private update, an anonymous subscription does not;
//   a refused token closes the subscription with the problem's detail;
// - the hub is killed and restarted on a durable store: every tab gets what was published
//   while it was down, exactly once;
// - resuming from an id older than history fires `gap` (fetch and native EventSource);
// - `json: true` with a payload that is not JSON is an `error` event, the connection stays open;
// - `headers` reach the hub (through a recording proxy in front of it; the hub's preflight
//   allows them).
import assert from 'node:assert/strict';
import {mkdtempSync, rmSync} from 'node:fs';
import {createServer, request as httpRequest} from 'node:http';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {after, before, test} from 'node:test';
import {KEY, eventually, launch, publish, startHub, token, watch} from './lib.mjs';

let browser;
let site;
let origin;

before(async () => {
  browser = await launch();
  site = createServer((request, response) => {
    const url = new URL(request.url, 'http://site');
    if (url.pathname !== '/') {
      response.writeHead(404).end();
      return;
    }
    // The hub to import from is in the query: ?hub=http://127.0.0.1:PORT
    const hub = url.searchParams.get('hub') || '';
    response.writeHead(200, {'content-type': 'text/html; charset=utf-8'});
    response.end('<!doctype html><title>an application</title><link rel="icon" href="data:,">'
      + '<p>An application on its own origin.</p>'
      + `<script type="module">import {subscribe} from ${JSON.stringify(`${hub}/herald.js`)};`
      + ' window.subscribe = subscribe; window.ready = true;</script>');
  });
  await new Promise((done) => site.listen(0, '127.0.0.1', done));
  origin = `http://127.0.0.1:${site.address().port}`;
});

after(async () => {
  await browser?.close();
  site?.close();
});

/** A hub that allows the site's origin. */
function hubArgs(extra = []) {
  return ['--jwt-key', KEY, '--anonymous', '--cors-origin', origin, ...extra];
}

/** A page of the application, with herald.js imported from `hubUrl`. */
async function openTab(context, hubUrl) {
  const page = await context.newPage();
  const problems = watch(page);
  await page.goto(`${origin}/?hub=${encodeURIComponent(hubUrl)}`);
  await page.waitForFunction(() => window.ready === true);
  return {page, problems};
}

/**
 * Subscribes in `page`; events, states, gaps and errors are collected in `window.log[name]`.
 * `options` is passed to subscribe() as is (JSON).
 */
async function subscribeIn(page, name, url, options) {
  await page.evaluate(({name, url, options}) => {
    window.log ||= {};
    window.subs ||= {};
    const log = (window.log[name] = {events: [], states: [], gaps: [], errors: []});
    const sub = (window.subs[name] = window.subscribe(url, options));
    for (const type of ['message', 'ping']) {
      sub.addEventListener(type, (e) => log.events.push({type: e.type, data: e.data, id: e.lastEventId, topic: e.topic}));
    }
    sub.addEventListener('state', (e) => log.states.push(e.detail));
    sub.addEventListener('gap', (e) => log.gaps.push(e.detail));
    sub.addEventListener('error', (e) => log.errors.push({message: e.message, data: e.data}));
  }, {name, url, options});
}

const logOf = (page, name) => page.evaluate((name) => window.log[name], name);

/** `name`'s subscription in `page` is open. */
const isOpen = (page, name) => page.evaluate((name) => window.subs[name].state === 'open', name);

/** A GET on a connection of its own, closed after the answer (so it is not counted later). */
function getOnce(url) {
  return new Promise((done, fail) => {
    httpRequest(url, {agent: false, headers: {connection: 'close'}}, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk) => { body += chunk; });
      response.on('end', () => done(body));
    }).on('error', fail).end();
  });
}

async function metric(hub, name) {
  const text = await getOnce(`${hub.url}/metrics`);
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : NaN;
}

/** The live subscriber count of each topic (GET /topics). */
async function topicSubscribers(hub) {
  const body = JSON.parse(await getOnce(`${hub.url}/topics`));
  return Object.fromEntries(body.topics.map((t) => [t.topic, t.subscribers]));
}

test('eight tabs on eight topics share one connection; the leader closes and nothing is lost', async () => {
  const hub = await startHub(hubArgs(['--store', 'memory:']));
  const context = await browser.newContext();
  try {
    const tabs = [];
    for (let i = 0; i < 8; i += 1) {
      const tab = await openTab(context, hub.url);
      await subscribeIn(tab.page, 's', `${hub.url}/.well-known/mercure`, {topics: [`https://example.com/t/${i}`]});
      tabs.push(tab);
    }
    // The union reaches the hub as ONE stream carrying all eight topics.
    await eventually('one stream with all eight topics', async () => {
      const counts = await topicSubscribers(hub);
      return tabs.every((_, i) => counts[`https://example.com/t/${i}`] === 1)
        && await metric(hub, 'herald_subscriptions') === 1;
    }, 15000);
    for (const {page} of tabs) await eventually('tab open', () => isOpen(page, 's'));

    const sent = tabs.map(() => []);
    for (let round = 0; round < 3; round += 1) {
      for (let i = 0; i < 8; i += 1) {
        sent[i].push(await publish(hub, {topic: `https://example.com/t/${i}`, data: `t${i}-r${round}`}));
      }
    }
    for (let i = 0; i < 8; i += 1) {
      await eventually(`tab ${i} got its three updates`, async () => (await logOf(tabs[i].page, 's')).events.length >= 3);
    }
    await new Promise((done) => setTimeout(done, 300));
    for (let i = 0; i < 8; i += 1) {
      const {events} = await logOf(tabs[i].page, 's');
      assert.deepEqual(events.map((e) => e.id), sent[i], `tab ${i}: exactly its own updates, in order`);
      assert.deepEqual(events.map((e) => e.data), [0, 1, 2].map((r) => `t${i}-r${r}`));
      assert.ok(events.every((e) => e.topic === `https://example.com/t/${i}` && e.type === 'message'));
    }
    assert.equal(await metric(hub, 'herald_subscriptions'), 1, 'one stream for eight tabs');
    // Open connections: the stream alone, once the idle keep-alive connections (the script's,
    // the publishes') are gone. The metrics request itself is counted (its own connection).
    await eventually('one connection besides the metrics request',
      async () => await metric(hub, 'herald_connections') === 2, 20000);

    // Failover: close the leader while updates keep coming; the others resume after the last
    // event they saw.
    const leaders = [];
    for (let i = 0; i < 8; i += 1) {
      if (await tabs[i].page.evaluate(() => !!window.subs.s.shared?.leader)) leaders.push(i);
    }
    assert.equal(leaders.length, 1, `exactly one leader: ${leaders}`);
    const [leader] = leaders;
    const closedAt = Date.now();
    const closing = tabs[leader].page.close();
    const takeover = (async () => {
      for (;;) {
        for (let i = 0; i < 8; i += 1) {
          if (i !== leader && await tabs[i].page.evaluate(() => !!window.subs.s.shared?.stream?.live)) {
            return Date.now() - closedAt;
          }
        }
        await new Promise((done) => setTimeout(done, 50));
      }
    })();
    for (let round = 3; round < 13; round += 1) {
      for (let i = 0; i < 8; i += 1) {
        if (i === leader) continue;
        sent[i].push(await publish(hub, {topic: `https://example.com/t/${i}`, data: `t${i}-r${round}`}));
      }
      await new Promise((done) => setTimeout(done, 100));
    }
    await closing;
    const handover = await takeover;
    console.log(`leader failover: a new leader's connection open after ${handover} ms`);
    assert.ok(handover < 5000, `${handover} ms`);
    for (let i = 0; i < 8; i += 1) {
      if (i === leader) continue;
      await eventually(`tab ${i} got everything across the failover`,
        async () => (await logOf(tabs[i].page, 's')).events.length >= sent[i].length, 15000);
    }
    await new Promise((done) => setTimeout(done, 300));
    for (let i = 0; i < 8; i += 1) {
      if (i === leader) continue;
      const {events} = await logOf(tabs[i].page, 's');
      assert.deepEqual(events.map((e) => e.id), sent[i], `tab ${i}: nothing lost, nothing twice`);
    }
    await eventually('one stream again', async () => await metric(hub, 'herald_subscriptions') === 1);
    const newLeaders = [];
    for (let i = 0; i < 8; i += 1) {
      if (i !== leader && await tabs[i].page.evaluate(() => !!window.subs.s.shared?.leader)) newLeaders.push(i);
    }
    assert.equal(newLeaders.length, 1);
    for (const [i, {problems}] of tabs.entries()) assert.deepEqual(problems, [], `tab ${i}`);
  } finally {
    await context.close();
    await hub.stop();
  }
});

/** A proxy in front of the hub that records every request's method, URL and headers. */
async function recordingProxy(hubAddr) {
  const seen = [];
  const [host, port] = hubAddr.split(':');
  const proxy = createServer((request, response) => {
    seen.push({method: request.method, url: request.url, headers: request.headers});
    const upstream = httpRequest({host, port, method: request.method, path: request.url, headers: request.headers},
      (answer) => {
        response.writeHead(answer.statusCode, answer.headers);
        answer.pipe(response);
      });
    upstream.on('error', () => response.destroy());
    response.on('close', () => upstream.destroy());
    request.pipe(upstream);
  });
  await new Promise((done) => proxy.listen(0, '127.0.0.1', done));
  return {url: `http://127.0.0.1:${proxy.address().port}`, seen, close: () => proxy.close()};
}

test('headers and the token reach the hub as headers; private updates follow the token; a bad token closes', async () => {
  const hub = await startHub(hubArgs(['--store', 'memory:']));
  const proxy = await recordingProxy(hub.addr);
  const context = await browser.newContext();
  try {
    const {page, problems} = await openTab(context, hub.url);
    const subscriber = token({subscribe: ['https://example.com/secret']});
    const endpoint = `${proxy.url}/.well-known/mercure`;
    const topics = ['https://example.com/secret'];
    await subscribeIn(page, 'token', endpoint, {topics, token: subscriber, headers: {'X-Custom-Header': 'v1'}});
    await subscribeIn(page, 'anonymous', endpoint, {topics});
    await subscribeIn(page, 'refused', endpoint, {topics, token: token({subscribe: ['*']}, 'another-key')});
    await eventually('both open', async () => await isOpen(page, 'token') && await isOpen(page, 'anonymous'));
    await eventually('both streams at the hub', async () => await metric(hub, 'herald_subscriptions') === 2);

    const secret = await publish(hub, {topic: topics[0], data: 'for the token only', private: 'on'});
    const open = await publish(hub, {topic: topics[0], data: 'for everyone'});
    await eventually('the anonymous tab got the public update',
      async () => (await logOf(page, 'anonymous')).events.length >= 1);
    await eventually('the token got both', async () => (await logOf(page, 'token')).events.length >= 2);
    await new Promise((done) => setTimeout(done, 200));
    assert.deepEqual((await logOf(page, 'token')).events.map((e) => e.id), [secret, open]);
    assert.deepEqual((await logOf(page, 'anonymous')).events.map((e) => e.id), [open]);

    // The refused token: closed, with the problem's detail, and no more attempts.
    await eventually('refused subscription closed', () => page.evaluate(() => window.subs.refused.state === 'closed'));
    const refused = await logOf(page, 'refused');
    const detail = refused.states.at(-1);
    assert.ok(typeof detail === 'string' && detail.length > 0 && !['open', 'closed', 'connecting', 'reconnecting'].includes(detail),
      `the closing state carries the problem detail: ${JSON.stringify(refused.states)}`);
    assert.ok(!refused.states.includes('open'));

    const streams = proxy.seen.filter((r) => r.method === 'GET' && r.url.startsWith('/.well-known/mercure'));
    const withToken = streams.filter((r) => r.headers.authorization === `Bearer ${subscriber}`);
    assert.ok(withToken.length >= 1, 'the token went as Authorization: Bearer');
    assert.ok(withToken.every((r) => r.headers['x-custom-header'] === 'v1'), 'the custom header reached the hub');
    assert.ok(proxy.seen.every((r) => !r.url.includes(subscriber) && !/authorization=/i.test(r.url)),
      'no token in any URL');
    const preflights = proxy.seen.filter((r) => r.method === 'OPTIONS');
    assert.ok(preflights.some((r) => /x-custom-header/.test(r.headers['access-control-request-headers'] || '')),
      'the browser asked the hub for the custom header, and the hub allowed it');
    const attempts = streams.filter((r) => r.headers.authorization?.endsWith(token({subscribe: ['*']}, 'another-key')));
    await new Promise((done) => setTimeout(done, 1500));
    assert.equal(streams.length, proxy.seen.filter((r) => r.method === 'GET' && r.url.startsWith('/.well-known/mercure')).length,
      'no retry after 401');
    assert.equal(attempts.length, 1);
    assert.deepEqual(problems.filter((p) => !/401/.test(p)), []);
  } finally {
    await context.close();
    proxy.close();
    await hub.stop();
  }
});

test('the hub is killed and restarted on a durable store: every tab gets what was published meanwhile, once', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'herald-js-'));
  const args = hubArgs(['--store', join(dir, 'store')]);
  let hub = await startHub(args);
  const context = await browser.newContext();
  try {
    const tabs = [];
    for (let i = 0; i < 3; i += 1) {
      const tab = await openTab(context, hub.url);
      await subscribeIn(tab.page, 's', `${hub.url}/.well-known/mercure`, {topics: [`https://example.com/r/${i}`]});
      tabs.push(tab);
    }
    await eventually('one stream with the three topics', async () => {
      const counts = await topicSubscribers(hub);
      return [0, 1, 2].every((i) => counts[`https://example.com/r/${i}`] === 1);
    }, 15000);
    // No event yet: the client resumes from where the hub said the stream started.
    await hub.stop('SIGKILL');
    for (const {page} of tabs) await eventually('tab reconnecting', () => page.evaluate(() => window.subs.s.state !== 'open'));
    hub = await startHub(args, {listen: hub.addr});
    const sent = [];
    for (let i = 0; i < 3; i += 1) sent.push(await publish(hub, {topic: `https://example.com/r/${i}`, data: `while down ${i}`}));
    for (let i = 0; i < 3; i += 1) {
      await eventually(`tab ${i} got the update published while the hub was down`,
        async () => (await logOf(tabs[i].page, 's')).events.length >= 1, 40000);
    }
    // Once more, now with a last event id to resume from.
    await hub.stop('SIGKILL');
    const publisher = await startHub(hubArgs(['--store', join(dir, 'store')]), {listen: hub.addr});
    hub = publisher;
    for (let i = 0; i < 3; i += 1) sent.push(await publish(hub, {topic: `https://example.com/r/${i}`, data: `second ${i}`}));
    for (let i = 0; i < 3; i += 1) {
      await eventually(`tab ${i} got the second update`, async () => (await logOf(tabs[i].page, 's')).events.length >= 2, 40000);
    }
    await new Promise((done) => setTimeout(done, 500));
    for (let i = 0; i < 3; i += 1) {
      const {events, states} = await logOf(tabs[i].page, 's');
      assert.deepEqual(events.map((e) => e.id), [sent[i], sent[3 + i]], `tab ${i}: each exactly once`);
      assert.ok(states.includes('reconnecting'), JSON.stringify(states));
      assert.equal(states.at(-1), 'open');
    }
  } finally {
    await context.close();
    await hub.stop();
    rmSync(dir, {recursive: true, force: true});
  }
});

test('resuming from an id older than history fires gap, with fetch and with the native EventSource', async () => {
  const hub = await startHub(hubArgs(['--store', 'memory:', '--history-size', '2']));
  const context = await browser.newContext();
  try {
    const topic = 'https://example.com/gap';
    const ids = [];
    for (let n = 0; n < 5; n += 1) ids.push(await publish(hub, {topic, data: `n${n}`}));
    const {page, problems} = await openTab(context, hub.url);
    const endpoint = `${hub.url}/.well-known/mercure`;
    await subscribeIn(page, 'fetch', endpoint, {topics: [topic], lastEventId: ids[0]});
    await subscribeIn(page, 'native', endpoint, {topics: [topic], lastEventId: ids[0], shared: false});
    await subscribeIn(page, 'known', endpoint, {topics: [topic], lastEventId: ids[3], shared: false, token: token({subscribe: []})});
    for (const name of ['fetch', 'native']) {
      await eventually(`${name}: gap and the kept history`, async () => {
        const log = await logOf(page, name);
        return log.gaps.length === 1 && log.events.length === 2;
      });
      const log = await logOf(page, name);
      assert.equal(log.gaps[0].lastEventID, ids[0], name);
      assert.equal(log.gaps[0].oldestEventID, ids[3], name);
      assert.deepEqual(log.events.map((e) => e.id), ids.slice(3), name);
    }
    assert.equal(await page.evaluate(() => window.subs.native.stream.constructor.name), 'NativeStream');
    await eventually('known id: replay without a gap', async () => (await logOf(page, 'known')).events.length === 1);
    assert.deepEqual((await logOf(page, 'known')).gaps, []);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
    await hub.stop();
  }
});

test('json: a payload that is not JSON is an error event and the connection stays open', async () => {
  const hub = await startHub(hubArgs(['--store', 'memory:']));
  const context = await browser.newContext();
  try {
    const topic = 'https://example.com/json';
    const {page, problems} = await openTab(context, hub.url);
    await subscribeIn(page, 'j', `${hub.url}/.well-known/mercure`, {topics: [topic], json: true});
    await eventually('open', () => isOpen(page, 'j'));
    await eventually('subscribed at the hub', async () => (await topicSubscribers(hub))[topic] === 1);
    await publish(hub, {topic, data: 'not { json'});
    const good = await publish(hub, {topic, data: '{"a": [1, 2]}', type: 'ping'});
    await eventually('the JSON event after the bad one', async () => (await logOf(page, 'j')).events.length === 1);
    const log = await logOf(page, 'j');
    assert.equal(log.errors.length, 1);
    assert.equal(log.errors[0].data, 'not { json');
    assert.deepEqual(log.events, [{type: 'ping', data: {a: [1, 2]}, id: good, topic}]);
    assert.ok(!log.states.includes('reconnecting'), JSON.stringify(log.states));
    assert.equal(await page.evaluate(() => window.subs.j.state), 'open');
    assert.equal(await metric(hub, 'herald_subscriptions'), 1);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
    await hub.stop();
  }
});

test('retry: sets the backoff, and the browser coming back online reconnects at once', async () => {
  let hub = await startHub(hubArgs(['--store', 'memory:']));
  const context = await browser.newContext();
  try {
    const topic = 'https://example.com/online';
    const {page} = await openTab(context, hub.url);
    await subscribeIn(page, 'o', `${hub.url}/.well-known/mercure`, {topics: [topic]});
    await eventually('subscribed at the hub', async () => (await topicSubscribers(hub))[topic] === 1);
    await publish(hub, {topic, data: 'slow down', retry: '20000'});
    await eventually('the retry event', async () => (await logOf(page, 'o')).events.length === 1);
    await hub.stop('SIGKILL');
    await eventually('reconnecting', () => page.evaluate(() => window.subs.o.state === 'reconnecting'));
    hub = await startHub(hubArgs(['--store', 'memory:']), {listen: hub.addr});
    // retry: 20000 means 10 to 20 s before the next attempt: still waiting.
    await new Promise((done) => setTimeout(done, 2500));
    assert.equal(await page.evaluate(() => window.subs.o.state), 'reconnecting');
    const back = Date.now();
    await context.setOffline(true);
    await context.setOffline(false);
    await eventually('open again right after `online`', () => isOpen(page, 'o'), 5000);
    const waited = Date.now() - back;
    assert.ok(waited < 5000, `${waited} ms`);
    // The restarted hub kept no history (memory store): the client is told about the gap.
    await eventually('gap after the memory store lost history', async () => (await logOf(page, 'o')).gaps.length === 1);
  } finally {
    await context.close();
    await hub.stop();
  }
});

test('the union changes while updates flow: no tab misses or sees twice an update it selects', async () => {
  const hub = await startHub(hubArgs(['--store', 'memory:']));
  const context = await browser.newContext();
  try {
    const endpoint = `${hub.url}/.well-known/mercure`;
    const a = await openTab(context, hub.url);
    await subscribeIn(a.page, 's', endpoint, {topics: ['https://example.com/u/a']});
    await eventually('a at the hub', async () => (await topicSubscribers(hub))['https://example.com/u/a'] === 1);
    // Updates for `a` keep coming while other tabs join and leave (each join or leave changes
    // the union: the leader reconnects).
    const sentA = [];
    let flowing = true;
    const flow = (async () => {
      for (let n = 0; flowing; n += 1) {
        sentA.push(await publish(hub, {topic: 'https://example.com/u/a', data: `a${n}`}));
        await new Promise((done) => setTimeout(done, 30));
      }
    })();
    const b = await openTab(context, hub.url);
    await subscribeIn(b.page, 's', endpoint, {topics: ['https://example.com/u/{name}']});
    const c = await openTab(context, hub.url);
    await subscribeIn(c.page, 's', endpoint, {topics: ['https://example.com/u/c']});
    await eventually('the union has c', async () => (await topicSubscribers(hub))['https://example.com/u/c'] === 1);
    const sentC = [await publish(hub, {topic: 'https://example.com/u/c', data: 'c0'})];
    // Both tabs that select c have it before one of them leaves (closing first would drop an
    // update still on its way, which is what close means).
    await eventually('c got c0', async () => (await logOf(c.page, 's')).events.length >= 1);
    await eventually('b got c0', async () => (await logOf(b.page, 's')).events.some((e) => e.id === sentC[0]));
    await c.page.evaluate(() => window.subs.s.close());
    await new Promise((done) => setTimeout(done, 500));
    await b.page.evaluate(() => window.subs.s.close());
    await new Promise((done) => setTimeout(done, 500));
    flowing = false;
    await flow;
    await eventually('a got every update', async () => (await logOf(a.page, 's')).events.length >= sentA.length);
    await new Promise((done) => setTimeout(done, 300));
    assert.deepEqual((await logOf(a.page, 's')).events.map((e) => e.id), sentA, 'a: all, once, in order');
    const bIds = (await logOf(b.page, 's')).events.map((e) => e.id);
    assert.ok(bIds.includes(sentC[0]), 'the template tab got c');
    assert.equal(new Set(bIds).size, bIds.length, 'the template tab saw nothing twice');
    assert.deepEqual((await logOf(c.page, 's')).events.map((e) => e.id), sentC);
    assert.ok(sentA.length > 20, `${sentA.length} updates flowed`);
    await eventually('one stream left', async () => await metric(hub, 'herald_subscriptions') === 1);
    for (const {problems} of [a, b, c]) assert.deepEqual(problems, []);
  } finally {
    await context.close();
    await hub.stop();
  }
});
