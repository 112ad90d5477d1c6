// The clock: follows topic `clock` (published by the hub every 3 s with --demo) with herald.js
// (every clock tab of a browser shares one hub connection), and shows GET /topics as a table
// refreshed every few seconds. An ES module.
import {subscribe} from '/herald.js';

(() => {
  const REFRESH_MS = 3000;
  const pill = document.getElementById('state');
  const time = document.getElementById('time');
  const caption = document.getElementById('caption');
  const tickId = document.getElementById('tick-id');
  const tbody = document.querySelector('#topics tbody');
  const totals = document.getElementById('totals');
  const refreshed = document.getElementById('refreshed');

  const sub = subscribe('/.well-known/mercure', {topics: ['clock']});
  const showState = () => {
    pill.dataset.state = sub.state;
    pill.textContent = sub.state;
  };
  showState();
  sub.addEventListener('state', () => {
    showState();
    if (sub.state === 'open') refresh(); // the table now counts this browser among the subscribers
  });
  sub.addEventListener('message', (event) => {
    let text;
    try {
      text = JSON.parse(event.data).message;
    } catch (_) {
      return;
    }
    const match = typeof text === 'string' && text.match(/\d{1,2}:\d{2}:\d{2}/);
    if (!match) return;
    time.textContent = match[0];
    time.classList.remove('tick');
    void time.offsetWidth; // restart the animation
    time.classList.add('tick');
    caption.textContent = `${text} (UTC), received at ${Herald.clockTime(new Date())} your time`;
    tickId.textContent = `event ${event.lastEventId}`;
  });

  const lastSeen = new Map();
  let busy = false;

  function row(topic) {
    const fresh = lastSeen.has(topic.topic) && lastSeen.get(topic.topic) !== topic.last_event_id;
    lastSeen.set(topic.topic, topic.last_event_id);
    return Herald.el('tr', {className: fresh ? 'fresh' : ''},
      Herald.el('td', {}, Herald.el('code', {}, topic.topic)),
      Herald.el('td', {className: 'num'}, String(topic.subscribers)),
      Herald.el('td', {className: 'num'}, String(topic.events)),
      Herald.el('td', {className: 'id hide-narrow', title: topic.last_event_id || ''}, topic.last_event_id || '—'));
  }

  let again = false;

  async function refresh() {
    if (document.hidden) return;
    if (busy) {
      again = true; // asked while a request is out: one more right after it
      return;
    }
    busy = true;
    again = false;
    try {
      const response = await fetch('/topics', {cache: 'no-store'});
      if (!response.ok) throw new Error(await Herald.problemText(response));
      const body = await response.json();
      const topics = Array.isArray(body.topics) ? body.topics : [];
      const rows = topics.map(row);
      if (!rows.length) {
        rows.push(Herald.el('tr', {}, Herald.el('td', {colspan: '4', className: 'muted'}, 'No topics yet.')));
      }
      tbody.replaceChildren(...rows);
      const count = topics.length;
      totals.textContent = `${count} topic${count === 1 ? '' : 's'} · ${body.subscriptions} live subscription${body.subscriptions === 1 ? '' : 's'}`;
      refreshed.textContent = `updated ${Herald.clockTime(new Date())}`;
    } catch (error) {
      refreshed.textContent = `not updated: ${error.message}`;
    } finally {
      busy = false;
      if (again) refresh();
    }
  }

  refresh();
  setInterval(refresh, REFRESH_MS);
  document.addEventListener('visibilitychange', refresh);
})();
