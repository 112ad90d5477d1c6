// HTTP/2 over TLS: one page opens 20 EventSources to one origin and every one of them receives.
// Over HTTP/1.1 a browser stops at 6 connections per origin, so streams 7..20 would hang.
import assert from 'node:assert/strict';
import {execFileSync} from 'node:child_process';
import {mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {after, before, test} from 'node:test';
import {DESKTOP, KEY, eventually, launch, startHub, token, watch} from './lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** A self-signed certificate for 127.0.0.1, made with the openssl command. */
function selfSigned(dir) {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ], {stdio: 'ignore'});
  return {cert, key};
}

test('twenty EventSources on one origin all receive over HTTP/2', {timeout: 60000}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'herald-h2-'));
  const {cert, key} = selfSigned(dir);
  const hub = await startHub(['--store', 'memory:', '--jwt-key', KEY, '--anonymous', '--tls-cert', cert, '--tls-key', key]);
  assert.match(hub.url, /^https:/);
  const context = await browser.newContext({...DESKTOP, ignoreHTTPSErrors: true});
  try {
    const page = await context.newPage();
    const problems = watch(page);
    await page.goto(`${hub.url}/`);
    const protocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
    assert.equal(protocol, 'h2');
    await page.evaluate(() => {
      window.received = new Array(20).fill(null);
      window.sources = [];
      for (let i = 0; i < 20; i += 1) {
        const source = new EventSource(`/.well-known/mercure?topic=stream-${i}&topic=everyone`);
        source.onmessage = (event) => { window.received[i] = event.data; };
        window.sources.push(source);
      }
    });
    await eventually('20 open streams', () => page.evaluate(() => window.sources.every((s) => s.readyState === 1)));
    // Publish from the page (same origin, same HTTP/2 connection; Node's fetch would refuse the
    // self-signed certificate).
    const status = await page.evaluate(async (bearer) => {
      const answer = await fetch('/.well-known/mercure', {
        method: 'POST',
        headers: {authorization: `Bearer ${bearer}`},
        body: new URLSearchParams({topic: 'everyone', data: 'to all twenty'}),
      });
      return answer.status;
    }, token({publish: ['*']}));
    assert.equal(status, 200);
    await eventually('every stream to receive', () => page.evaluate(() => window.received.every((d) => d === 'to all twenty')));
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
    await hub.stop();
    rmSync(dir, {recursive: true, force: true});
  }
});
