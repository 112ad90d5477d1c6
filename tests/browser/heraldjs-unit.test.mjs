// herald.js without a browser: the incremental event-stream parser against the WHATWG rules
// (fed whole and byte by byte), the URI-template matcher used to route a shared connection's
// events, and the size budget (under 8 KB minified and gzipped).
import assert from 'node:assert/strict';
import {readFileSync} from 'node:fs';
import {join} from 'node:path';
import {test} from 'node:test';
import {gzipSync} from 'node:zlib';
import {ROOT} from './lib.mjs';

const SOURCE = join(ROOT, 'clients', 'js', 'herald.js');
const {parser, topicMatcher} = await import(SOURCE);

/** Parses `text` fed in pieces of `step` characters; returns events and retry values. */
function parse(text, step = text.length) {
  const events = [];
  const retries = [];
  const p = parser((event) => events.push(event), (ms) => retries.push(ms));
  for (let i = 0; i < text.length; i += step) p.feed(text.slice(i, i + step));
  return {events, retries, lastId: p.lastId()};
}

const CASES = [
  ['LF', 'data: a\n\n', [{type: 'message', data: 'a', id: '', topic: undefined}]],
  ['CR', 'data: a\r\r', [{type: 'message', data: 'a', id: '', topic: undefined}]],
  ['CRLF', 'data: a\r\n\r\n', [{type: 'message', data: 'a', id: '', topic: undefined}]],
  ['mixed ends', 'data: a\rdata: b\r\ndata: c\n\r\n', [{type: 'message', data: 'a\nb\nc', id: '', topic: undefined}]],
  ['BOM once', '\uFEFFdata: a\n\n\uFEFFdata: b\n\n', [{type: 'message', data: 'a', id: '', topic: undefined}]],
  ['no space after colon, colon in value', 'data:x: y\n\n', [{type: 'message', data: 'x: y', id: '', topic: undefined}]],
  ['field without colon', 'data\n\ndata\ndata\n\n', [
    {type: 'message', data: '', id: '', topic: undefined},
    {type: 'message', data: '\n', id: '', topic: undefined},
  ]],
  ['comments dispatch nothing', ':\n: hi\n\n:x\n\n', []],
  ['id persists, NUL ignored', 'id: 1\ndata: a\n\ndata: b\n\nid: 2\0x\ndata: c\n\n', [
    {type: 'message', data: 'a', id: '1', topic: undefined},
    {type: 'message', data: 'b', id: '1', topic: undefined},
    {type: 'message', data: 'c', id: '1', topic: undefined},
  ]],
  ['empty id resets', 'id: 1\ndata: a\n\nid\ndata: b\n\n', [
    {type: 'message', data: 'a', id: '1', topic: undefined},
    {type: 'message', data: 'b', id: '', topic: undefined},
  ]],
  ['event type resets', 'event: ping\ndata: a\n\ndata: b\n\n', [
    {type: 'ping', data: 'a', id: '', topic: undefined},
    {type: 'message', data: 'b', id: '', topic: undefined},
  ]],
  ['no data, no event', 'event: x\nid: 7\n\n', []],
  ['unterminated event is not dispatched', 'data: a\n\ndata: b', [{type: 'message', data: 'a', id: '', topic: undefined}]],
  ['topic field', 'topic: https://e.com/a\nid: 1\ndata: x\n\ndata: y\n\n', [
    {type: 'message', data: 'x', id: '1', topic: 'https://e.com/a'},
    {type: 'message', data: 'y', id: '1', topic: undefined},
  ]],
  ['unknown fields ignored', 'foo: bar\ndata: a\n\n', [{type: 'message', data: 'a', id: '', topic: undefined}]],
];

for (const [name, text, expected] of CASES) {
  test(`parser: ${name}`, () => {
    for (const step of [text.length || 1, 1, 2, 3]) {
      assert.deepEqual(parse(text, step).events, expected, `fed ${step} at a time`);
    }
  });
}

test('parser: retry takes only digits; the last id is kept', () => {
  const {retries, lastId} = parse('retry: 500\nretry: 5x\nretry:\nretry: 2000\nid: z\n\n', 1);
  assert.deepEqual(retries, [500, 2000]);
  assert.equal(lastId, 'z');
});

test('parser: a CRLF split across chunks is one line end', () => {
  const events = [];
  const p = parser((event) => events.push(event));
  p.feed('data: a\r');
  p.feed('\ndata: b\r');
  p.feed('\n\r');
  p.feed('\n');
  assert.deepEqual(events.map((e) => e.data), ['a\nb']);
});

test('matcher: exact, star and URI templates', () => {
  const yes = (selector, topic) => assert.ok(topicMatcher(selector)(topic), `${selector} ~ ${topic}`);
  const no = (selector, topic) => assert.ok(!topicMatcher(selector)(topic), `${selector} !~ ${topic}`);
  yes('*', 'anything at all');
  yes('chat', 'chat');
  no('chat', 'chat2');
  no('a.c', 'abc');
  yes('https://example.com/books/{id}', 'https://example.com/books/1');
  yes('https://example.com/books/{id}', 'https://example.com/books/1.jsonld');
  no('https://example.com/books/{id}', 'https://example.com/books/1/reviews');
  no('https://example.com/books/{id}', 'https://example.com/authors/1');
  yes('https://example.com/{+path}', 'https://example.com/a/b/c');
  yes('https://example.com/users{/id*}', 'https://example.com/users/1/2');
  yes('https://example.com/s{?q,lang}', 'https://example.com/s?q=a&lang=en');
  yes('https://example.com/s{?q,lang}', 'https://example.com/s');
  yes('https://example.com/x{#frag}', 'https://example.com/x#a/b');
  yes('https://example.com/{id}{.ext}', 'https://example.com/1.json');
  yes('https://example.com/m{;a,b}', 'https://example.com/m;a=1;b=2');
  yes('https://example.com/p?x=1{&y}', 'https://example.com/p?x=1&y=2');
  // Not a valid template: compared as an exact topic.
  yes('https://example.com/{a', 'https://example.com/{a');
  no('https://example.com/{a', 'https://example.com/b');
});

test('size: herald.js is under 8 KB minified and gzipped', () => {
  const source = readFileSync(SOURCE, 'utf8');
  // A conservative stand-in for a minifier: comments and indentation removed, names kept.
  const stripped = source
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/^\s*\/\/.*$/gm, '')
    .replace(/^\s+/gm, '')
    .replace(/\n+/g, '\n');
  const minified = gzipSync(stripped, {level: 9}).length;
  const raw = gzipSync(source, {level: 9}).length;
  console.log(`herald.js: ${source.length} B source, ${raw} B gzipped, ${minified} B stripped+gzipped`);
  assert.ok(minified < 8 * 1024, `${minified} B stripped and gzipped`);
});

test('package.json carries the hub version and names the files', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'clients', 'js', 'package.json'), 'utf8'));
  const cargo = readFileSync(join(ROOT, 'Cargo.toml'), 'utf8');
  assert.equal(pkg.version, /^version = "([^"]+)"/m.exec(cargo)[1]);
  assert.equal(pkg.types, 'herald.d.ts');
  assert.equal(pkg.exports['.'].default, './herald.js');
});
