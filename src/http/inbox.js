// The staff inbox: the API under /api/v1/chatbot with the credential kept in this tab's
// session storage; live updates from conversations/events/ (Server-Sent Events, read with
// fetch so the credential goes in a header, never in a URL). Text from the server is only
// ever set as text, never as HTML.
'use strict';

const API = '/api/v1/chatbot';
const $ = (id) => document.getElementById(id);
let openId = null;       // the conversation shown
let openRow = null;      // its last known state
let stream = null;       // AbortController of the event stream
let refreshTimer = null;

function credential() {
  const raw = sessionStorage.getItem('inbox.credential');
  return raw ? JSON.parse(raw) : null;
}

function headers(extra) {
  const c = credential();
  const h = Object.assign({ 'Accept': 'application/json' }, extra || {});
  if (c && c.kind === 'token') h['Authorization'] = 'Bearer ' + c.secret;
  else if (c) h['X-API-KEY'] = c.secret;
  return h;
}

async function api(method, path, body) {
  const init = { method, headers: headers(body ? { 'Content-Type': 'application/json' } : {}) };
  if (body) init.body = JSON.stringify(body);
  const r = await fetch(API + path, init);
  const data = await r.json().catch(() => ({}));
  if (r.status === 401) { signOut('Your credential was refused: sign in again.'); throw new Error('unauthorized'); }
  if (!r.ok) throw new Error(data.message || ('HTTP ' + r.status));
  return data;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return d.toLocaleString([], { dateStyle: 'short', timeStyle: 'short' });
}

// ---- The list --------------------------------------------------------------------------

async function refreshList() {
  const lists = { waiting: [], staff: [], bot: [] };
  for (const status of Object.keys(lists)) {
    const page = await api('GET', '/conversations/?page_size=50&status=' + status);
    lists[status] = page.results;
  }
  for (const [status, rows] of Object.entries(lists)) {
    const ul = $(status);
    ul.replaceChildren();
    if (rows.length === 0) ul.appendChild(el('li', 'empty', 'None.'));
    for (const c of rows) {
      const li = el('li');
      li.dataset.id = c.id;
      li.dataset.phone = c.phone;
      if (c.id === openId) li.classList.add('open');
      li.appendChild(el('div', 'phone', c.phone));
      if (c.last_message) li.appendChild(el('div', 'preview', c.last_message.preview));
      li.appendChild(el('div', 'when', when(c.last_activity_at) + ' · ' + c.channel));
      li.addEventListener('click', () => openConversation(c.id));
      ul.appendChild(li);
    }
  }
}

function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => refreshList().catch(showError), 150);
}

// ---- One conversation ------------------------------------------------------------------

function renderHead(c) {
  const head = $('head');
  head.replaceChildren();
  head.appendChild(el('span', 'title', c.phone));
  const s = el('span', 'status ' + c.status, c.status === 'staff' ? 'staff: ' + (c.assignee || '') : c.status);
  s.id = 'status';
  s.dataset.status = c.status;
  head.appendChild(s);
  if (c.children && c.children.length) {
    head.appendChild(el('span', 'children', c.children.map((k) => k.full_name + ' (' + k.student_id + ')').join(', ')));
  }
  const take = el('button', null, 'Take over');
  take.id = 'takeover';
  take.type = 'button';
  take.hidden = c.status === 'staff';
  take.addEventListener('click', () => act('takeover'));
  head.appendChild(take);
  const release = el('button', null, 'Hand back to the bot');
  release.id = 'release';
  release.type = 'button';
  release.hidden = c.status === 'bot';
  release.addEventListener('click', () => act('release'));
  head.appendChild(release);
  $('reply').hidden = c.status !== 'staff';
}

function messageNode(m) {
  const div = el('div', 'msg ' + m.direction + (m.from_staff ? ' staff' : ''), m.body !== undefined ? m.body : m.preview);
  div.dataset.id = m.id;
  div.dataset.direction = m.direction;
  div.dataset.status = m.status;
  if (m.from_staff) div.dataset.staff = 'yes';
  const meta = m.direction === 'out'
    ? (m.from_staff ? 'staff · ' : 'bot · ') + m.status + (m.error ? ' (' + m.error + ')' : '')
    : 'parent';
  div.appendChild(el('span', 'meta', when(m.created_at) + ' · ' + meta));
  return div;
}

async function openConversation(id) {
  hideAnalytics();
  openId = id;
  const [c, page] = await Promise.all([
    api('GET', '/conversations/' + id + '/'),
    api('GET', '/conversations/' + id + '/messages/?page_size=100'),
  ]);
  openRow = c;
  renderHead(c);
  const t = $('transcript');
  t.replaceChildren();
  for (const m of page.results.slice().reverse()) t.appendChild(messageNode(m));
  t.scrollTop = t.scrollHeight;
  document.querySelectorAll('nav li').forEach((li) => li.classList.toggle('open', Number(li.dataset.id) === id));
}

async function act(what) {
  if (openId === null) return;
  try {
    const c = await api('POST', '/conversations/' + openId + '/' + what + '/');
    openRow = Object.assign(openRow || {}, c);
    renderHead(openRow);
    refreshSoon();
  } catch (e) { showError(e); }
}

// ---- Live updates ----------------------------------------------------------------------

function onEvent(name, data) {
  if (name === 'message' && data.message) {
    const m = data.message;
    if (openRow && m.phone === openRow.phone && m.channel === openRow.channel) {
      const t = $('transcript');
      const old = t.querySelector('.msg[data-id="' + m.id + '"]');
      const node = messageNode(m);
      if (old) {
        // Keep the full text already shown; take the new status.
        node.firstChild.textContent = old.firstChild.textContent;
        old.replaceWith(node);
      } else {
        t.appendChild(node);
        t.scrollTop = t.scrollHeight;
      }
    }
    refreshSoon();
  } else if (name === 'conversation' && data.conversation) {
    const c = data.conversation;
    if (openRow && c.phone === openRow.phone && c.channel === openRow.channel) {
      openRow.status = c.status;
      openRow.assignee = c.status === 'staff' ? (c.action === 'takeover' ? c.actor : openRow.assignee) : null;
      renderHead(openRow);
    }
    refreshSoon();
  }
}

async function listen() {
  const controller = new AbortController();
  stream = controller;
  let wait = 1000;
  while (stream === controller) {
    try {
      const r = await fetch(API + '/conversations/events/', { headers: headers({ 'Accept': 'text/event-stream' }), signal: controller.signal });
      if (r.status === 401) { signOut('Your credential was refused: sign in again.'); return; }
      if (!r.ok || !r.body) throw new Error('HTTP ' + r.status);
      $('live').textContent = 'live';
      $('live').className = 'on';
      wait = 1000;
      // What changed while the stream was down.
      refreshSoon();
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let name = 'message', data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) name = line.slice(6).trim();
            else if (line.startsWith('data:')) data += line.slice(5).trimStart();
          }
          if (data) onEvent(name, JSON.parse(data));
        }
      }
    } catch (e) {
      if (controller.signal.aborted) return;
    }
    $('live').textContent = 'reconnecting…';
    $('live').className = '';
    await new Promise((ok) => setTimeout(ok, wait));
    wait = Math.min(wait * 2, 30000);
  }
}

// ---- Analytics --------------------------------------------------------------------------

const SVG = 'http://www.w3.org/2000/svg';
const WHO = { rules: ['rules'], model: ['model'], staff: ['staff'], nobody: ['nobody', 'refused'] };

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}

async function showAnalytics() {
  $('conversation').hidden = true;
  $('analytics').hidden = false;
  const a = await api('GET', '/analytics/');
  const chart = $('chart');
  chart.replaceChildren();
  const W = 720, H = 240, left = 36, bottom = 24, top = 8;
  const most = Math.max(1, ...a.days.map((d) => d.inbound));
  const step = (W - left) / a.days.length;
  const scale = (H - bottom - top) / most;
  chart.appendChild(svg('text', { x: 0, y: top + 10, 'font-size': 11 }, most));
  chart.appendChild(svg('text', { x: 0, y: H - bottom, 'font-size': 11 }, 0));
  a.days.forEach((d, i) => {
    let y = H - bottom;
    for (const [cls, keys] of Object.entries(WHO)) {
      const n = keys.reduce((sum, k) => sum + (d.answered[k] || 0), 0);
      if (n === 0) continue;
      const h = n * scale;
      y -= h;
      const bar = svg('rect', { x: left + i * step + 1, y, width: Math.max(step - 2, 1), height: h, class: cls });
      bar.appendChild(svg('title', {}, d.day + ': ' + n + ' answered by ' + cls));
      chart.appendChild(bar);
    }
    if (i % 7 === 0) chart.appendChild(svg('text', { x: left + i * step, y: H - 6, 'font-size': 11 }, d.day.slice(5)));
  });
  const t = a.total;
  const pct = (x) => (x === undefined || x === null) ? '–' : Math.round(x * 100) + ' %';
  const rows = [
    ['Messages from parents', t.inbound], ['Messages to parents', t.outbound],
    ['Answered by the rules', pct(t.rules_share)], ['Answered by the model', pct(t.model_share)],
    ['Not answered', pct(t.unanswered_share)], ['Handed to staff', t.escalations],
    ['Mean minutes to a staff reply', t.first_reply_minutes_mean === undefined ? '–' : Math.round(t.first_reply_minutes_mean)],
    ['Model calls', t.llm_requests], ['Broadcasts (recipients)', t.broadcasts + ' (' + t.broadcast_recipients + ')'],
    ['Failed deliveries', t.deliveries.failed || 0],
  ];
  const body = $('figures').tBodies[0];
  body.replaceChildren();
  for (const [label, value] of rows) {
    const tr = el('tr');
    tr.appendChild(el('th', null, label));
    tr.appendChild(el('td', null, value));
    body.appendChild(tr);
  }
}

function hideAnalytics() {
  $('analytics').hidden = true;
  $('conversation').hidden = false;
}

// ---- Sign in and out -------------------------------------------------------------------

function showError(e) {
  if (String(e && e.message) === 'unauthorized') return;
  const t = $('transcript');
  t.appendChild(el('p', 'error', String(e && e.message ? e.message : e)));
}

function signOut(why) {
  sessionStorage.removeItem('inbox.credential');
  if (stream) stream.abort();
  stream = null;
  $('app').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = why || '';
}

async function start() {
  $('signin').hidden = true;
  $('app').hidden = false;
  try {
    const school = await api('GET', '/school/');
    $('school').textContent = 'Inbox · ' + school.name;
    await refreshList();
    listen();
  } catch (e) { showError(e); }
}

$('signin').addEventListener('submit', (ev) => {
  ev.preventDefault();
  sessionStorage.setItem('inbox.credential', JSON.stringify({ kind: $('kind').value, secret: $('secret').value.trim() }));
  $('secret').value = '';
  start();
});
$('signout').addEventListener('click', () => signOut(''));
$('show-analytics').addEventListener('click', () => showAnalytics().catch(showError));
$('close-analytics').addEventListener('click', hideAnalytics);
$('reply').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const text = $('reply-text').value.trim();
  if (!text || openId === null) return;
  try {
    const m = await api('POST', '/conversations/' + openId + '/reply/', { text });
    $('reply-text').value = '';
    onEvent('message', { message: Object.assign({ phone: openRow.phone, channel: openRow.channel }, m) });
  } catch (e) { showError(e); }
});

if (credential()) start(); else signOut('');
