// The chat room: replays the latest messages of topic `chat`, then follows it live with
// herald.js, resuming from the last message shown (no gap, no duplicate). Sends through
// POST /chat/send. Every text goes into the page with textContent. An ES module.
import {subscribe} from '/herald.js';

(() => {
  const TOPIC = 'chat';
  const SHOWN_ON_OPEN = 50;     // messages replayed when the page opens
  const MAX_SHOWN = 300;        // older messages leave the page beyond this
  const PAGE = 1000;            // history page size (the hub's maximum)
  const NAME_KEY = 'herald.chat.name';

  const list = document.getElementById('messages');
  const empty = document.getElementById('empty');
  const pill = document.getElementById('state');
  const form = document.getElementById('composer');
  const nameInput = document.getElementById('name');
  const messageInput = document.getElementById('message');
  const sendButton = document.getElementById('send');
  const errorLine = document.getElementById('error');

  const seen = new Set();
  let lastId = null;

  function storage(action, value) {
    try {
      if (action === 'get') return localStorage.getItem(NAME_KEY) || '';
      localStorage.setItem(NAME_KEY, value);
    } catch (_) { /* storage disabled: the name is just not remembered */ }
    return '';
  }
  nameInput.value = storage('get');

  function showError(text) {
    errorLine.textContent = text;
    errorLine.hidden = !text;
  }

  function nearBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }

  function shortTime(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return '';
    return date.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit', hour12: false});
  }

  /** Appends one message, once, whatever the route it came by (history page or stream). */
  function render(id, data) {
    if (id) {
      if (seen.has(id)) return;
      seen.add(id);
      lastId = id;
    }
    let message;
    try {
      message = JSON.parse(data);
    } catch (_) {
      return;
    }
    if (!message || typeof message.message !== 'string') return;
    const name = typeof message.name === 'string' && message.name ? message.name : 'anonymous';
    const stick = nearBottom();
    empty.hidden = true;
    const mine = name === (nameInput.value.trim() || 'anonymous');
    const item = Herald.el('li', {className: mine ? 'mine' : '', 'data-id': id || ''},
      Herald.el('div', {className: 'meta'},
        Herald.el('span', {className: 'who'}, name),
        Herald.el('time', {datetime: message.at || ''}, shortTime(message.at))),
      Herald.el('div', {className: 'text'}, message.message));
    list.append(item);
    const items = list.querySelectorAll('li:not(.empty)');
    for (let i = 0; i < items.length - MAX_SHOWN; i++) items[i].remove();
    if (stick || mine) list.scrollTop = list.scrollHeight;
  }

  function system(text) {
    list.append(Herald.el('li', {className: 'system'}, text));
    list.scrollTop = list.scrollHeight;
  }

  /** The latest messages kept in history, oldest first. */
  async function latest() {
    let events = [];
    let after = '';
    for (let page = 0; page < 50; page++) {
      const url = `/topics/${TOPIC}/events?limit=${PAGE}` + (after ? `&after=${encodeURIComponent(after)}` : '');
      const response = await fetch(url, {cache: 'no-store'});
      if (!response.ok) throw new Error(await Herald.problemText(response));
      const body = await response.json();
      events = events.concat(body.events).slice(-SHOWN_ON_OPEN);
      if (body.events.length < PAGE || !body.last_event_id) break;
      after = body.last_event_id;
    }
    return events;
  }

  function showState(state) {
    pill.dataset.state = state;
    pill.textContent = state;
  }

  /**
   * Follows the topic from `from` (an event id, or `earliest` when nothing was shown). herald.js
   * reconnects by itself with Last-Event-ID; it closes only when the hub refuses the stream.
   */
  function follow(from) {
    const sub = subscribe('/.well-known/mercure', {topics: [TOPIC], lastEventId: from});
    showState(sub.state);
    sub.addEventListener('state', () => {
      showState(sub.state);
      if (sub.state === 'closed') system(`The hub refused the stream: ${sub.reason || 'closed'}.`);
    });
    sub.addEventListener('message', (event) => render(event.lastEventId, event.data));
  }

  async function open() {
    try {
      const events = await latest();
      for (const event of events) render(event.id, event.data);
    } catch (error) {
      system(`Could not load the latest messages (${error.message}); showing new ones.`);
    }
    if (!seen.size) empty.textContent = 'No messages yet. Say hello.';
    // Nothing shown: replay whatever arrived since (from the start of history), so no message
    // published between the history read and the subscription is missed.
    follow(lastId || 'earliest');
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const message = messageInput.value.trim();
    if (!message) {
      showError('Write a message first.');
      return;
    }
    const name = nameInput.value.trim();
    storage('set', name);
    sendButton.disabled = true;
    try {
      const response = await fetch('/chat/send', {
        method: 'POST',
        headers: {'content-type': 'application/json'},
        body: JSON.stringify({name, message}),
      });
      if (response.ok) {
        messageInput.value = '';
        showError('');
      } else {
        showError(`Not sent: ${await Herald.problemText(response)}`);
      }
    } catch (error) {
      showError(`Not sent: the hub cannot be reached (${error.message}).`);
    } finally {
      sendButton.disabled = false;
      messageInput.focus();
    }
  });

  open();
})();
