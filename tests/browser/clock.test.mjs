// The clock page: the hub's ticks arrive live, and the /topics table follows.
import assert from 'node:assert/strict';
import {after, before, test} from 'node:test';
import {DESKTOP, KEY, eventually, launch, startHub, watch} from './lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('the clock ticks: two different times are shown, and /topics lists the clock', {timeout: 60000}, async () => {
  const hub = await startHub(['--store', 'memory:', '--demo', '--jwt-key', KEY]);
  const context = await browser.newContext(DESKTOP);
  try {
    const page = await context.newPage();
    const problems = watch(page);
    await page.goto(`${hub.url}/clock`);
    const time = async () => {
      const text = await page.textContent('#time');
      return /^\d{2}:\d{2}:\d{2}$/.test(text) ? text : null;
    };
    const first = await eventually('a first tick', time, 8000);
    const second = await eventually('a later tick', async () => {
      const now = await time();
      return now && now !== first ? now : null;
    }, 8000);
    assert.notEqual(first, second);
    assert.match(await page.textContent('#caption'), /^Current time is \d{2}:\d{2}:\d{2} \(UTC\)/);
    assert.equal(await page.textContent('#state'), 'open');

    // The table of GET /topics: the clock topic, with this page as a subscriber.
    const row = await eventually('the clock row', async () => {
      const rows = await page.$$eval('#topics tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
      return rows.find((cells) => cells[0] === 'clock');
    });
    assert.ok(Number(row[1]) >= 1, `subscribers: ${row[1]}`);
    assert.ok(Number(row[2]) >= 1, `events: ${row[2]}`);
    assert.match(row[3], /^urn:uuid:/);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
    await hub.stop();
  }
});
