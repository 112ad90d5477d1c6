// The debug console. Subscribing reads the event stream with fetch (so it can send the token
// and Last-Event-ID as headers and show every event type, which EventSource cannot), parses it
// with herald.js's parser (the HTML standard's rules), and reconnects with the last id like
// EventSource does. Publishing posts the Mercure form. Each form keeps an equivalent curl
// command up to date. An ES module.
import {parser} from '/herald.js';

(() => {
  const HUB = `${location.origin}/.well-known/mercure`;
  const MAX_ROWS = 500;

  const $ = (id) => document.getElementById(id);
  const pill = $('state');
  const matcher = $('matcher');
  const selectors = $('selectors');
  const subToken = $('sub-token');
  const lastIdInput = $('last-id');
  const startButton = $('subscribe-start');
  const stopButton = $('subscribe-stop');
  const subscribeCurl = $('subscribe-curl');
  const pubTopics = $('pub-topics');
  const pubData = $('pub-data');
  const pubToken = $('pub-token');
  const pubId = $('pub-id');
  const pubType = $('pub-type');
  const pubPrivate = $('pub-private');
  const publishButton = $('publish-send');
  const publishResult = $('publish-result');
  const publishCurl = $('publish-curl');
  const events = $('events');
  const count = $('count');
  const noEvents = $('no-events');

  const lines = (text) => text.split('\n').map((line) => line.trim()).filter(Boolean);
  const q = Herald.shellQuote;

  // ---- curl commands -------------------------------------------------------------------

  function subscribeUrl() {
    const params = new URLSearchParams();
    // `topic` (Mercure 0.x), or `match` / `match_urlpattern` (Mercure 1.0).
    for (const topic of lines(selectors.value)) params.append(matcher.value, topic);
    return `${HUB}?${params}`;
  }

  /**
   * Shows a shell command, one argument per line. The text (what Copy copies) is the command with
   * ` \` line continuations; on screen each argument wraps inside its own line and the `\`
   * stays at its right, so a narrow screen never shows a `\` alone on a line.
   */
  function showCommand(element, parts) {
    element.replaceChildren(...parts.map((part, index) => Herald.el('span', {className: 'cmd-line'},
      ...(index > 0 ? [Herald.el('span', {className: 'indent'}, '     ')] : []),
      Herald.el('span', {className: 'arg'}, part),
      ...(index < parts.length - 1 ? [Herald.el('span', {className: 'cont'}, ' \\\n')] : []))));
  }

  function renderSubscribeCurl() {
    const parts = ['curl -N'];
    const token = subToken.value.trim();
    const lastId = lastIdInput.value.trim();
    if (token) parts.push(`-H ${q(`Authorization: Bearer ${token}`)}`);
    if (lastId) parts.push(`-H ${q(`Last-Event-ID: ${lastId}`)}`);
    parts.push(q(subscribeUrl()));
    showCommand(subscribeCurl, parts);
  }

  function publishForm() {
    const form = new URLSearchParams();
    for (const topic of lines(pubTopics.value)) form.append('topic', topic);
    form.append('data', pubData.value);
    if (pubId.value.trim()) form.append('id', pubId.value.trim());
    if (pubType.value.trim()) form.append('type', pubType.value.trim());
    if (pubPrivate.checked) form.append('private', 'on');
    return form;
  }

  function renderPublishCurl() {
    const token = pubToken.value.trim() || '$TOKEN';
    const parts = [`curl -H ${token === '$TOKEN' ? '"Authorization: Bearer $TOKEN"' : q(`Authorization: Bearer ${token}`)}`];
    for (const [key, value] of publishForm()) parts.push(`--data-urlencode ${q(`${key}=${value}`)}`);
    parts.push(q(HUB));
    showCommand(publishCurl, parts);
  }

  for (const input of [selectors, subToken, lastIdInput]) input.addEventListener('input', renderSubscribeCurl);
  matcher.addEventListener('change', renderSubscribeCurl);
  for (const input of [pubTopics, pubData, pubToken, pubId, pubType, pubPrivate]) {
    input.addEventListener('input', renderPublishCurl);
  }
  renderSubscribeCurl();
  renderPublishCurl();

  // ---- the event log -------------------------------------------------------------------

  let received = 0;

  function stamp() {
    return Herald.el('span', {className: 'at'}, Herald.clockTime(new Date()));
  }

  function prepend(item) {
    noEvents.hidden = true;
    events.prepend(item);
    while (events.children.length > MAX_ROWS) events.lastElementChild.remove();
  }

  function pretty(data) {
    try {
      const value = JSON.parse(data);
      if (value !== null && typeof value === 'object') return JSON.stringify(value, null, 2);
    } catch (_) { /* not JSON: shown as sent */ }
    return data;
  }

  function showEvent(event) {
    received += 1;
    count.textContent = `${received} event${received === 1 ? '' : 's'}`;
    prepend(Herald.el('li', {className: 'event'},
      stamp(),
      Herald.el('div', {className: 'head'},
        Herald.el('span', {className: event.type === 'herald-gap' ? 'type gap' : 'type'}, event.type),
        Herald.el('span', {className: 'eid'}, event.id ? `id ${event.id}` : 'no id')),
      Herald.el('pre', {}, pretty(event.data))));
  }

  function info(text) {
    prepend(Herald.el('li', {className: 'info-line'}, stamp(), Herald.el('span', {className: 'info'}, text)));
  }

  $('clear').addEventListener('click', () => {
    events.replaceChildren();
    received = 0;
    count.textContent = '0 events';
    noEvents.hidden = false;
  });

  // ---- subscribing ---------------------------------------------------------------------

  let session = null;

  function setState(state, label) {
    pill.dataset.state = state;
    pill.textContent = label || state;
  }

  const sleep = (ms, signal) => new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, {once: true});
  });

  async function run(current) {
    const {controller} = current;
    const url = subscribeUrl();
    const token = subToken.value.trim();
    let retry = 3000;
    let lastId = lastIdInput.value.trim();
    let attempt = 0;
    while (!controller.signal.aborted) {
      setState('connecting', attempt ? 'reconnecting' : 'connecting');
      attempt += 1;
      try {
        const headers = {accept: 'text/event-stream'};
        if (token) headers.authorization = `Bearer ${token}`;
        if (lastId) headers['last-event-id'] = lastId;
        const response = await fetch(url, {headers, signal: controller.signal, cache: 'no-store'});
        if (!response.ok || !response.body) {
          // As EventSource: a refusal is final.
          info(`refused: ${await Herald.problemText(response)}`);
          break;
        }
        setState('open');
        info(`connected to ${lines(selectors.value).join(', ')}` + (lastId ? ` after ${lastId}` : ''));
        // A fresh parser per connection; the last id carries over, as with EventSource.
        const stream = parser((event) => { lastId = event.id; showEvent(event); }, (ms) => { retry = ms; });
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const {value, done} = await reader.read();
          if (done) break;
          stream.feed(value);
        }
        info('the hub ended the stream');
      } catch (error) {
        if (controller.signal.aborted) break;
        info(`connection lost (${error.message})`);
      }
      if (controller.signal.aborted) break;
      setState('connecting', 'reconnecting');
      await sleep(retry, controller.signal);
    }
    if (session === current) stop();
  }

  function stop() {
    if (session) {
      const current = session;
      session = null;
      current.controller.abort();
      info('stopped');
    }
    setState('closed', 'not subscribed');
    startButton.textContent = 'Subscribe';
    stopButton.disabled = true;
  }

  $('subscribe').addEventListener('submit', (event) => {
    event.preventDefault();
    if (!lines(selectors.value).length) {
      info('add at least one topic selector');
      return;
    }
    if (session) stop();
    session = {controller: new AbortController()};
    startButton.textContent = 'Resubscribe';
    stopButton.disabled = false;
    run(session);
  });
  stopButton.addEventListener('click', stop);

  // ---- publishing ----------------------------------------------------------------------

  $('publish').addEventListener('submit', async (event) => {
    event.preventDefault();
    const token = pubToken.value.trim();
    if (!lines(pubTopics.value).length) {
      publishResult.className = 'result bad';
      publishResult.textContent = 'Add at least one topic.';
      return;
    }
    publishButton.disabled = true;
    publishResult.className = 'result';
    publishResult.textContent = 'Publishing…';
    try {
      const headers = {'content-type': 'application/x-www-form-urlencoded'};
      if (token) headers.authorization = `Bearer ${token}`;
      const response = await fetch(HUB, {method: 'POST', headers, body: publishForm()});
      if (response.ok) {
        publishResult.className = 'result ok';
        publishResult.textContent = `Published: ${await response.text()}`;
      } else {
        publishResult.className = 'result bad';
        publishResult.textContent = `Refused: ${await Herald.problemText(response)}`;
      }
    } catch (error) {
      publishResult.className = 'result bad';
      publishResult.textContent = `The hub cannot be reached (${error.message}).`;
    } finally {
      publishButton.disabled = false;
    }
  });
})();
