// Helpers shared by Herald's pages. Plain script, no build step. Text from the network is only
// ever put into the page with textContent (through el()), never as HTML.
'use strict';

const Herald = (() => {
  /** Creates an element: el('li', {className: 'x', title: 't'}, 'text', childNode, ...). */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null) continue;
      if (key === 'className' || key === 'textContent' || key === 'title' || key === 'href') {
        node[key] = value;
      } else {
        node.setAttribute(key, value);
      }
    }
    for (const child of children) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /** Quotes a word for a POSIX shell. */
  function shellQuote(text) {
    return /^[A-Za-z0-9_@%+=:,./-]+$/.test(text) ? text : `'${text.replaceAll("'", `'\\''`)}'`;
  }

  /** HH:MM:SS of a Date, in the viewer's time zone. */
  function clockTime(date) {
    return date.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false});
  }

  /** The detail of a problem+json answer, or the status line. */
  async function problemText(response) {
    try {
      const problem = await response.json();
      if (problem && problem.detail) return `${response.status}: ${problem.detail}`;
    } catch (_) { /* not JSON */ }
    return `${response.status} ${response.statusText}`;
  }

  /** Copies text to the clipboard (with a fallback outside secure contexts). */
  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(text);
        return true;
      } catch (_) { /* fall back below */ }
    }
    const area = el('textarea', {readonly: '', 'aria-hidden': 'true'});
    area.value = text;
    area.className = 'offscreen';
    document.body.append(area);
    area.select();
    let done = false;
    try { done = document.execCommand('copy'); } catch (_) { done = false; }
    area.remove();
    return done;
  }

  /** Makes `button` copy the text of `source` (an element) and say so. */
  function bindCopy(button, source) {
    button.addEventListener('click', async () => {
      const done = await copyText(source.textContent);
      const label = button.dataset.label || button.textContent;
      button.dataset.label = label;
      button.textContent = done ? 'Copied' : 'Select & copy';
      setTimeout(() => { button.textContent = label; }, 1500);
    });
  }

  /** Marks the current page in the top bar. */
  function markNav() {
    for (const link of document.querySelectorAll('.bar nav a')) {
      if (link.getAttribute('href') === location.pathname) link.setAttribute('aria-current', 'page');
    }
  }

  /** Replaces the placeholder origin in code samples with this hub's. */
  function fillOrigin() {
    for (const code of document.querySelectorAll('code')) {
      if (code.textContent.includes('http://HOST')) {
        code.textContent = code.textContent.replaceAll('http://HOST', location.origin);
      }
    }
  }

  /** Connection state of an EventSource, for a .pill element. `wasOpen` tells reconnecting apart. */
  function showState(pill, source, wasOpen) {
    let state;
    if (source.readyState === EventSource.OPEN) state = 'open';
    else if (source.readyState === EventSource.CONNECTING) state = wasOpen ? 'reconnecting' : 'connecting';
    else state = 'closed';
    pill.dataset.state = state;
    pill.textContent = state;
    return state;
  }

  document.addEventListener('DOMContentLoaded', () => {
    markNav();
    fillOrigin();
    for (const button of document.querySelectorAll('button.copy[data-copy]')) {
      const source = document.getElementById(button.dataset.copy);
      if (source) bindCopy(button, source);
    }
  });

  return {el, shellQuote, clockTime, problemText, copyText, bindCopy, showState};
})();
