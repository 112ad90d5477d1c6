// The chat page: two browsers chatting, history on opening, escaping, connection state.
import assert from 'node:assert/strict';
import {after, before, test} from 'node:test';
import {DESKTOP, KEY, eventually, launch, startHub, watch} from './lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** Opens /chat in a fresh context (its own cookies and storage: another browser). */
async function openChat(hub, name) {
  const context = await browser.newContext(DESKTOP);
  const page = await context.newPage();
  const problems = watch(page);
  await page.goto(`${hub.url}/chat`);
  await eventually(`${name}'s chat to connect`, async () => (await page.textContent('#state')) === 'open');
  await page.fill('input[name="name"]', name);
  return {context, page, problems};
}

async function say(page, text) {
  await page.fill('input[name="message"]', text);
  await page.press('input[name="message"]', 'Enter');
}

async function messages(page) {
  return page.$$eval('#messages li:not(.empty):not(.system) .text', (nodes) => nodes.map((node) => node.textContent));
}

test('two browsers chat: each sees the other\'s messages, once, in #messages', {timeout: 60000}, async () => {
  const hub = await startHub(['--store', 'memory:', '--demo', '--jwt-key', KEY]);
  try {
    const ada = await openChat(hub, 'Ada');
    const bob = await openChat(hub, 'Bob');

    await say(ada.page, 'Hello from Ada');
    await eventually('Bob to see Ada\'s message', async () => (await messages(bob.page)).includes('Hello from Ada'));
    await say(bob.page, 'Hi Ada, Bob here');
    await eventually('Ada to see Bob\'s reply', async () => (await messages(ada.page)).includes('Hi Ada, Bob here'));
    assert.equal(await ada.page.inputValue('input[name="message"]'), '', 'the input is cleared after sending');

    // Markup is shown as text, never run.
    const attack = '<img src=x onerror="window.pwned=1"><b>bold?</b>';
    await say(ada.page, attack);
    await eventually('Bob to see the markup as text', async () => (await messages(bob.page)).includes(attack));
    assert.equal(await bob.page.$('#messages img'), null);
    assert.equal(await bob.page.$('#messages b'), null);
    assert.equal(await bob.page.evaluate(() => window.pwned), undefined);

    // Nobody sees a message twice, and the sender's own message is marked as theirs.
    for (const page of [ada.page, bob.page]) {
      const all = await messages(page);
      assert.deepEqual(all, ['Hello from Ada', 'Hi Ada, Bob here', attack]);
    }
    assert.equal(await ada.page.$$eval('#messages li.mine', (nodes) => nodes.length), 2);

    // Someone who opens the page later gets the latest messages by replay, then live ones.
    const cy = await openChat(hub, 'Cy');
    await eventually('Cy to see the history', async () => (await messages(cy.page)).length === 3);
    await say(bob.page, 'Welcome, Cy');
    await eventually('Cy to see the new message', async () => (await messages(cy.page)).includes('Welcome, Cy'));
    assert.deepEqual(await messages(cy.page), ['Hello from Ada', 'Hi Ada, Bob here', attack, 'Welcome, Cy']);

    // An empty message is refused by the page, not sent.
    await say(cy.page, '   ');
    await eventually('the page to say why', async () => (await cy.page.textContent('#error')).length > 0);

    for (const {problems, context} of [ada, bob, cy]) {
      assert.deepEqual(problems, []);
      await context.close();
    }
  } finally {
    await hub.stop();
  }
});

test('the chat shows the connection state: open, then reconnecting when the hub goes away', {timeout: 60000}, async () => {
  const hub = await startHub(['--store', 'memory:', '--demo', '--jwt-key', KEY]);
  let context;
  try {
    ({context} = await openChat(hub, 'Dee'));
    const page = context.pages()[0];
    await hub.stop('SIGKILL');
    await eventually('the page to show reconnecting', async () => (await page.textContent('#state')) === 'reconnecting');
    assert.equal(await page.getAttribute('#state', 'data-state'), 'reconnecting');
  } finally {
    await context?.close();
    await hub.stop();
  }
});

test('opening the chat shows the latest 50 messages of a long history, in order', {timeout: 60000}, async () => {
  const hub = await startHub(['--store', 'memory:', '--demo', '--jwt-key', KEY]);
  let context;
  try {
    // More than one page of history (the events API pages by 1000).
    const total = 1030;
    for (let start = 1; start <= total; start += 50) {
      await Promise.all(Array.from({length: Math.min(50, total - start + 1)}, (_, i) => fetch(`${hub.url}/chat/send`, {
        method: 'POST',
        headers: {'content-type': 'application/x-www-form-urlencoded'},
        body: new URLSearchParams({name: 'Bot', message: `message ${start + i}`}),
      }).then((response) => assert.equal(response.status, 200))));
    }
    let page;
    ({context, page} = await openChat(hub, 'Eve'));
    const shown = await eventually('the latest messages', async () => {
      const all = await messages(page);
      return all.length === 50 ? all : null;
    });
    // Concurrent sends commit in some order: what is shown is the newest 50 of history, in
    // history's order.
    let all = [];
    for (let after = ''; ;) {
      const body = await (await fetch(`${hub.url}/topics/chat/events?limit=1000&after=${encodeURIComponent(after)}`)).json();
      all = all.concat(body.events);
      if (body.events.length < 1000) break;
      after = body.last_event_id;
    }
    assert.equal(all.length, total);
    const ids = await page.$$eval('#messages li[data-id]', (items) => items.map((item) => item.dataset.id));
    assert.deepEqual(ids, all.slice(-50).map((event) => event.id));
    assert.deepEqual(shown, all.slice(-50).map((event) => JSON.parse(event.data).message));
    await say(page, 'and one more');
    await eventually('the live message after the replay', async () => (await messages(page)).at(-1) === 'and one more');
  } finally {
    await context?.close();
    await hub.stop();
  }
});
