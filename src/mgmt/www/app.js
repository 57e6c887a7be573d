// coney's management page: login, the views over the management HTTP API, their actions and
// the live rate chart. Every server-provided string reaches the page as a text node or an
// attribute value (see h()), never as HTML: queue and connection names are client-controlled.
'use strict';
(function () {
  const POLL_MS = 5000;
  const CHART_SAMPLES = 60; // 5 minutes at one sample per poll
  const PAGE_SIZE = 100;
  const AUTH_KEY = 'coney.auth';
  const VIEWS = ['overview', 'queues', 'exchanges', 'connections', 'channels'];

  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent; // '/' becomes %2F, as the API wants for the default vhost

  // Builds an element. Children that are not nodes become text nodes; attribute names are
  // always literals here, values are set with setAttribute, so neither is parsed as markup.
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'onclick') el.addEventListener('click', v);
      else if (k === 'class') el.className = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of kids.flat()) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }

  // ------------------------------------------------------------------ the API

  class AuthError extends Error {}
  let auth = sessionStorage.getItem(AUTH_KEY); // base64 of "user:password"

  function basic(user, pass) {
    const bytes = new TextEncoder().encode(user + ':' + pass);
    let bin = '';
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin);
  }

  function reasonOf(data) {
    if (data && typeof data === 'object') return data.reason || data.error || '';
    return typeof data === 'string' ? data.slice(0, 200) : '';
  }

  // One request with the remembered credentials. credentials:'omit' keeps the browser's own
  // Basic-auth prompt away when the server answers 401 with WWW-Authenticate.
  async function api(method, path, body, headers) {
    const hdrs = Object.assign({ Authorization: 'Basic ' + auth }, headers);
    const init = { method, headers: hdrs, credentials: 'omit', cache: 'no-store' };
    if (body !== undefined) {
      hdrs['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const resp = await fetch('api' + path, init);
    const text = await resp.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = text; }
    }
    if (resp.status === 401) throw new AuthError(reasonOf(data) || 'Login failed');
    if (!resp.ok) {
      const err = new Error(method + ' ' + path + ': ' + resp.status + ' ' + (reasonOf(data) || resp.statusText));
      err.status = resp.status;
      throw err;
    }
    return data;
  }

  // ------------------------------------------------------------------ status line

  let statusTimer = null;
  function setStatus(text, ok) {
    const s = $('status');
    clearTimeout(statusTimer);
    s.textContent = text;
    s.className = ok ? 'ok' : '';
    s.dataset.kind = ok ? 'ok' : 'error';
    s.hidden = !text;
    if (ok && text) statusTimer = setTimeout(() => { s.hidden = true; }, 6000);
  }

  function fail(e) {
    if (e instanceof AuthError) {
      logout('Your credentials were refused (' + e.message + '); log in again.');
    } else {
      setStatus(e.message || String(e), false);
    }
  }

  // Runs a user action, reports its outcome and refreshes the view.
  async function act(fn, okText) {
    try {
      await fn();
      if (okText) setStatus(okText, true);
      await refresh();
    } catch (e) {
      fail(e);
    }
  }

  let pendingConfirm = null;
  function confirmThen(text, action) {
    $('confirm-text').textContent = text;
    $('confirm').hidden = false;
    pendingConfirm = action;
    $('confirm-yes').focus();
  }

  // ------------------------------------------------------------------ login

  function showLogin(message) {
    $('app').hidden = true;
    $('nav').hidden = true;
    $('user-box').hidden = true;
    $('login').hidden = false;
    const err = $('login-error');
    err.textContent = message || '';
    err.hidden = !message;
    $(($('login-user').value ? 'login-pass' : 'login-user')).focus();
  }

  function logout(message) {
    auth = null;
    sessionStorage.removeItem(AUTH_KEY);
    clearTimeout(pollTimer);
    samples.length = 0;
    showLogin(message);
  }

  async function login(user, pass) {
    auth = basic(user, pass);
    try {
      const who = await api('GET', '/whoami');
      sessionStorage.setItem(AUTH_KEY, auth);
      $('login-pass').value = '';
      enterApp(who);
    } catch (e) {
      auth = null;
      sessionStorage.removeItem(AUTH_KEY);
      $('login-pass').value = '';
      if (!(e instanceof AuthError)) showLogin('Cannot reach the server: ' + e.message);
      else showLogin(/login failed/i.test(e.message) ? e.message : 'Login failed: ' + e.message);
    }
  }

  function enterApp(who) {
    $('login').hidden = true;
    $('login-error').hidden = true;
    $('nav').hidden = false;
    $('app').hidden = false;
    $('user-box').hidden = false;
    const tags = Array.isArray(who.tags) ? who.tags.join(', ') : String(who.tags || '');
    $('user-name').textContent = who.name + (tags ? ' (' + tags + ')' : '');
    route();
  }

  // ------------------------------------------------------------------ overview and chart

  const samples = []; // {t, p, d, a}: time (ms) and the three rates
  // Key, colour, line width: widest first, so equal rates (publish = deliver = ack in a
  // steady flow) still show every colour.
  const SERIES = [['p', '#2f6fd6', 6], ['d', '#1e9e5a', 3.5], ['a', '#d9822b', 1.5]];

  const rate = (stats, key) => {
    const d = stats && stats[key + '_details'];
    return d && typeof d.rate === 'number' ? d.rate : 0;
  };
  const fmtRate = (r) => (r >= 100 ? r.toFixed(0) : r.toFixed(1)) + '/s';
  const fmtNum = (n) => (typeof n === 'number' ? String(n) : '–');

  function fillCard(id, title, rows) {
    $(id).replaceChildren(h('dt', { class: 'title' }, title),
      ...rows.flatMap(([label, value, testid]) => [h('dt', {}, label), h('dd', { 'data-testid': testid }, value)]));
  }

  async function loadOverview() {
    const o = await api('GET', '/overview');
    const ot = o.object_totals || {};
    const qt = o.queue_totals || {};
    const ms = o.message_stats || {};
    $('server-info').textContent = [o.product_name, o.product_version, o.cluster_name && '· ' + o.cluster_name]
      .filter(Boolean).join(' ');
    fillCard('object-totals', 'Objects', [
      ['Connections', fmtNum(ot.connections), 'total-connections'],
      ['Channels', fmtNum(ot.channels), 'total-channels'],
      ['Exchanges', fmtNum(ot.exchanges), 'total-exchanges'],
      ['Queues', fmtNum(ot.queues), 'total-queues'],
      ['Consumers', fmtNum(ot.consumers), 'total-consumers']]);
    fillCard('queue-totals', 'Messages', [
      ['Ready', fmtNum(qt.messages_ready), 'total-ready'],
      ['Unacked', fmtNum(qt.messages_unacknowledged), 'total-unacked'],
      ['Total', fmtNum(qt.messages), 'total-messages']]);
    const listeners = (o.listeners || []).map((l) => l.protocol + ' ' + l.port).join(', ');
    fillCard('node-info', 'Node', [
      ['Node', o.node || '–', 'node-name'],
      ['Version', o.product_version || o.rabbitmq_version || '–', 'node-version'],
      ['Listeners', listeners || '–', 'node-listeners']]);
    const s = { t: Date.now(), p: rate(ms, 'publish'), d: rate(ms, 'deliver_get'), a: rate(ms, 'ack') };
    samples.push(s);
    if (samples.length > CHART_SAMPLES) samples.shift();
    $('rate-publish').textContent = fmtRate(s.p);
    $('rate-deliver').textContent = fmtRate(s.d);
    $('rate-ack').textContent = fmtRate(s.a);
    drawChart();
  }

  // The smallest 1, 2 or 5 times a power of ten that is at least v.
  function niceMax(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function drawChart() {
    const c = $('rate-chart');
    c.dataset.samples = String(samples.length);
    const dpr = window.devicePixelRatio || 1;
    const W = c.clientWidth || 720;
    const H = c.clientHeight || 180;
    if (c.width !== Math.round(W * dpr)) c.width = Math.round(W * dpr);
    if (c.height !== Math.round(H * dpr)) c.height = Math.round(H * dpr);
    const g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, W, H);
    const L = 52, R = 10, T = 10, B = 20;
    const top = niceMax(Math.max(1, ...samples.map((s) => Math.max(s.p, s.d, s.a))));
    g.font = '11px sans-serif';
    g.fillStyle = '#5b6577';
    g.strokeStyle = '#e3e6eb';
    g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = T + (H - T - B) * (1 - i / 4);
      g.beginPath();
      g.moveTo(L, Math.round(y) + 0.5);
      g.lineTo(W - R, Math.round(y) + 0.5);
      g.stroke();
      g.textAlign = 'right';
      g.fillText(String(+(top * i / 4).toPrecision(3)), L - 6, y + 4);
    }
    // The time axis grows with the history held, from one minute up to the whole of it.
    const now = Date.now();
    const held = samples.length ? now - samples[0].t : 0;
    const span = Math.min(CHART_SAMPLES * POLL_MS, Math.max(60000, held));
    g.textAlign = 'left';
    g.fillText(span >= 120000 ? '-' + Math.round(span / 60000) + ' min' : '-' + Math.round(span / 1000) + ' s', L, H - 5);
    g.textAlign = 'right';
    g.fillText('now', W - R, H - 5);
    const x = (t) => L + (W - L - R) * (1 - (now - t) / span);
    const y = (v) => T + (H - T - B) * (1 - v / top);
    g.lineJoin = 'round';
    for (const [key, colour, width] of SERIES) {
      g.strokeStyle = colour;
      g.lineWidth = width;
      g.beginPath();
      samples.forEach((s, i) => (i ? g.lineTo(x(s.t), y(s[key])) : g.moveTo(x(s.t), y(s[key]))));
      if (samples.length === 1) g.lineTo(x(samples[0].t) - 2, y(samples[0][key]));
      g.stroke();
    }
  }

  // ------------------------------------------------------------------ list views

  const tag = (text, title) => h('span', { class: 'tag', title }, text);
  const num = (n, testid) => h('td', { class: 'n', 'data-testid': testid }, fmtNum(n));
  const button = (text, testid, onclick, danger) =>
    h('button', { type: 'button', class: danger ? 'danger' : '', 'data-testid': testid, onclick }, text);

  const ARG_TAGS = {
    'x-message-ttl': 'TTL', 'x-expires': 'Exp', 'x-max-length': 'Lim', 'x-max-length-bytes': 'Lim B',
    'x-overflow': 'Ovfl', 'x-dead-letter-exchange': 'DLX', 'x-dead-letter-routing-key': 'DLK',
    'x-max-priority': 'Pri', 'x-single-active-consumer': 'SAC', 'x-queue-mode': 'Mode',
    'x-delivery-limit': 'DLim', 'alternate-exchange': 'AE', 'x-queue-type': null,
  };

  function features(o) {
    const out = [];
    if (o.durable) out.push(tag('D', 'durable'));
    if (o.auto_delete) out.push(tag('AD', 'auto-delete'));
    if (o.exclusive) out.push(tag('Excl', 'exclusive'));
    if (o.internal) out.push(tag('I', 'internal'));
    for (const [k, v] of Object.entries(o.arguments || {})) {
      const label = k in ARG_TAGS ? ARG_TAGS[k] : k;
      if (label) out.push(tag(label, k + ': ' + JSON.stringify(v)));
    }
    if (o.policy) out.push(tag('Policy', 'policy: ' + o.policy));
    return out;
  }

  function queueActions(q) {
    const where = 'queue "' + q.name + '" in virtual host "' + q.vhost + '"';
    const path = '/queues/' + enc(q.vhost) + '/' + enc(q.name);
    return h('td', { class: 'actions' },
      button('Publish', 'queue-publish', () => openPublish(q.vhost, '', q.name, 'queue "' + q.name + '"')),
      button('Get', 'queue-get', () => openGet(q.vhost, q.name)),
      button('Purge', 'queue-purge', () => confirmThen('Purge every ready message from ' + where + '?',
        () => act(() => api('DELETE', path + '/contents'), 'Purged ' + where + '.')), true),
      button('Delete', 'queue-delete', () => confirmThen('Delete ' + where + '?',
        () => act(() => api('DELETE', path), 'Deleted ' + where + '.')), true));
  }

  function exchangeActions(x) {
    if (x.internal) return h('td', { class: 'actions' });
    const label = x.name ? 'exchange "' + x.name + '"' : 'the default exchange';
    return h('td', { class: 'actions' },
      button('Publish', 'exchange-publish', () => openPublish(x.vhost, x.name, '', label)));
  }

  function closeConnection(c) {
    confirmThen('Close connection "' + c.name + '"?', () => act(() =>
      api('DELETE', '/connections/' + enc(c.name), undefined, { 'X-Reason': 'Closed from the management page' }),
    'Closed connection "' + c.name + '".'));
  }

  const LISTS = {
    queues: {
      cols: 10,
      empty: 'No queues',
      row: (q) => h('tr', { 'data-testid': 'queue-row', 'data-vhost': q.vhost, 'data-name': q.name },
        h('td', {}, q.vhost),
        h('td', { class: 'name', 'data-testid': 'queue-name' }, q.name),
        h('td', {}, q.type || 'classic'),
        h('td', {}, features(q)),
        h('td', { 'data-testid': 'queue-state' }, q.state || ''),
        num(q.messages_ready, 'queue-ready'),
        num(q.messages_unacknowledged, 'queue-unacked'),
        num(q.messages, 'queue-messages'),
        num(q.consumers, 'queue-consumers'),
        queueActions(q)),
    },
    exchanges: {
      cols: 7,
      empty: 'No exchanges',
      row: (x) => h('tr', { 'data-testid': 'exchange-row', 'data-vhost': x.vhost, 'data-name': x.name },
        h('td', {}, x.vhost),
        h('td', { class: 'name', 'data-testid': 'exchange-name' }, x.name || h('i', {}, '(AMQP default)')),
        h('td', {}, x.type),
        h('td', {}, features(x)),
        h('td', { class: 'n' }, fmtRate(rate(x.message_stats, 'publish_in'))),
        h('td', { class: 'n' }, fmtRate(rate(x.message_stats, 'publish_out'))),
        exchangeActions(x)),
    },
    connections: {
      cols: 9,
      empty: 'No connections',
      row: (c) => h('tr', { 'data-testid': 'connection-row', 'data-name': c.name },
        h('td', { class: 'name', 'data-testid': 'connection-name' }, c.name),
        h('td', { 'data-testid': 'connection-client-name' }, (c.client_properties || {}).connection_name || ''),
        h('td', {}, c.user),
        h('td', {}, c.vhost),
        h('td', {}, (c.peer_host || '') + ':' + fmtNum(c.peer_port)),
        h('td', {}, c.protocol || ''),
        num(c.channels, 'connection-channels'),
        h('td', { 'data-testid': 'connection-state' }, c.state || ''),
        h('td', { class: 'actions' }, button('Close', 'connection-close', () => closeConnection(c), true))),
    },
    channels: {
      cols: 8,
      empty: 'No channels',
      row: (ch) => h('tr', { 'data-testid': 'channel-row', 'data-name': ch.name },
        h('td', { class: 'name', 'data-testid': 'channel-name' }, ch.name),
        h('td', {}, ch.user),
        h('td', {}, ch.vhost),
        h('td', {}, [ch.confirm && tag('C', 'confirm'), ch.transactional && tag('T', 'transactional')]),
        num(ch.prefetch_count, 'channel-prefetch'),
        num(ch.consumer_count, 'channel-consumers'),
        num(ch.messages_unacknowledged, 'channel-unacked'),
        h('td', {}, ch.state || '')),
    },
  };
  const listState = {};
  for (const name of Object.keys(LISTS)) listState[name] = { page: 1, filter: '', seq: 0 };

  async function loadList(name) {
    const st = listState[name];
    const seq = ++st.seq;
    let qs = '?page=' + st.page + '&page_size=' + PAGE_SIZE;
    if (st.filter) qs += '&name=' + enc(st.filter);
    let data;
    try {
      data = await api('GET', '/' + name + qs);
    } catch (e) {
      // The page can vanish under us when objects are deleted: go back to the first.
      if (e.status === 400 && st.page > 1) {
        st.page = 1;
        return loadList(name);
      }
      throw e;
    }
    if (seq !== st.seq) return; // a newer request (filter, page) has been sent since
    const items = Array.isArray(data) ? data : (data && data.items) || [];
    const def = LISTS[name];
    const rows = items.map(def.row);
    if (!rows.length) rows.push(h('tr', {}, h('td', { class: 'empty', colspan: def.cols }, def.empty)));
    document.querySelector('#' + name + '-table tbody').replaceChildren(...rows);
    renderPager(name, Array.isArray(data) ? null : data);
  }

  function renderPager(name, data) {
    const st = listState[name];
    const el = document.querySelector('.pager[data-list="' + name + '"]');
    if (!data) return el.replaceChildren();
    const pages = Math.max(1, data.page_count || 1);
    const go = (p) => () => { st.page = p; loadList(name).catch(fail); };
    el.replaceChildren(
      h('button', { type: 'button', disabled: st.page <= 1, onclick: go(st.page - 1), 'data-testid': name + '-prev' }, '‹'),
      h('span', { 'data-testid': name + '-page' }, 'Page ' + st.page + ' of ' + pages + ' · ' +
        fmtNum(data.filtered_count) + ' shown of ' + fmtNum(data.total_count)),
      h('button', { type: 'button', disabled: st.page >= pages, onclick: go(st.page + 1), 'data-testid': name + '-next' }, '›'));
  }

  // ------------------------------------------------------------------ publish and get

  let publishTarget = null;
  function openPublish(vhost, exchange, routingKey, label) {
    publishTarget = { vhost, exchange };
    $('get').hidden = true;
    $('publish-target').textContent = label + ' (virtual host "' + vhost + '")';
    const f = $('publish-form');
    f.elements.routing_key.value = routingKey;
    $('publish-result').textContent = '';
    $('publish').hidden = false;
    f.elements.payload.focus();
  }

  async function publish(ev) {
    ev.preventDefault();
    const f = ev.target;
    const t = publishTarget;
    try {
      const res = await api('POST', '/exchanges/' + enc(t.vhost) + '/' + enc(t.exchange || 'amq.default') + '/publish', {
        properties: f.elements.persistent.checked ? { delivery_mode: 2 } : {},
        routing_key: f.elements.routing_key.value,
        payload: f.elements.payload.value,
        payload_encoding: 'string',
      });
      const out = $('publish-result');
      out.dataset.routed = String(!!(res && res.routed));
      out.textContent = res && res.routed ? 'Message published.' : 'Message published, but not routed to any queue.';
      await refresh();
    } catch (e) {
      fail(e);
    }
  }

  let getTarget = null;
  function openGet(vhost, name) {
    getTarget = { vhost, name };
    $('publish').hidden = true;
    $('get-target').textContent = 'queue "' + name + '" (virtual host "' + vhost + '")';
    $('get-result').replaceChildren();
    $('get').hidden = false;
  }

  function renderMessage(m) {
    const props = m.properties && Object.keys(m.properties).length ? JSON.stringify(m.properties) : '';
    return h('div', { class: 'msg', 'data-testid': 'get-message' },
      h('dl', {},
        h('dt', {}, 'Exchange'), h('dd', {}, m.exchange || '(AMQP default)'),
        h('dt', {}, 'Routing key'), h('dd', {}, m.routing_key),
        h('dt', {}, 'Redelivered'), h('dd', {}, String(!!m.redelivered)),
        h('dt', {}, 'Properties'), h('dd', {}, props),
        h('dt', {}, 'Payload'), h('dd', {}, m.payload_bytes + ' bytes, encoding ' + m.payload_encoding),
        h('dt', {}, 'Left in queue'), h('dd', {}, fmtNum(m.message_count))),
      h('pre', { 'data-testid': 'get-payload' }, m.payload));
  }

  async function getMessages(ev) {
    ev.preventDefault();
    const f = ev.target;
    const t = getTarget;
    try {
      const msgs = await api('POST', '/queues/' + enc(t.vhost) + '/' + enc(t.name) + '/get', {
        count: Math.max(1, parseInt(f.elements.count.value, 10) || 1),
        ackmode: f.elements.ackmode.value,
        encoding: 'auto',
        truncate: 50000,
      });
      const list = Array.isArray(msgs) ? msgs : [];
      $('get-result').replaceChildren(...(list.length ? list.map(renderMessage)
        : [h('p', { 'data-testid': 'get-empty' }, 'Queue is empty.')]));
      await refresh();
    } catch (e) {
      fail(e);
    }
  }

  async function addQueue(ev) {
    ev.preventDefault();
    const f = ev.target;
    const vhost = f.elements.vhost.value;
    const name = f.elements.name.value;
    const body = { durable: f.elements.durable.checked, auto_delete: f.elements.auto_delete.checked, arguments: {} };
    if (f.elements.type.value !== 'classic') body.arguments['x-queue-type'] = f.elements.type.value;
    await act(() => api('PUT', '/queues/' + enc(vhost) + '/' + enc(name), body),
      'Declared queue "' + name + '" in virtual host "' + vhost + '".');
  }

  // ------------------------------------------------------------------ routing and polling

  let view = 'overview';
  let pollTimer = null;

  function route() {
    const want = location.hash.replace(/^#/, '');
    view = VIEWS.includes(want) ? want : 'overview';
    for (const v of VIEWS) $('view-' + v).hidden = v !== view;
    for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.view === view);
    $('publish').hidden = true;
    $('get').hidden = true;
    $('confirm').hidden = true;
    refresh();
  }

  // Reloads the overview (the chart needs every sample) and the list on screen, then polls.
  async function refresh() {
    clearTimeout(pollTimer);
    if (!auth) return;
    try {
      const jobs = [loadOverview()];
      if (view !== 'overview') jobs.push(loadList(view));
      await Promise.all(jobs);
      if ($('status').dataset.kind === 'error') setStatus('', false);
    } catch (e) {
      fail(e);
    }
    if (auth) pollTimer = setTimeout(refresh, POLL_MS);
  }

  function wire() {
    $('login-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      login($('login-user').value, $('login-pass').value);
    });
    $('logout').addEventListener('click', () => logout(''));
    $('confirm-yes').addEventListener('click', () => {
      const a = pendingConfirm;
      pendingConfirm = null;
      $('confirm').hidden = true;
      if (a) a();
    });
    $('confirm-no').addEventListener('click', () => {
      pendingConfirm = null;
      $('confirm').hidden = true;
    });
    $('publish-form').addEventListener('submit', publish);
    $('get-form').addEventListener('submit', getMessages);
    $('queue-add-form').addEventListener('submit', addQueue);
    for (const b of document.querySelectorAll('.close-panel')) {
      b.addEventListener('click', () => { b.closest('.panel').hidden = true; });
    }
    for (const b of document.querySelectorAll('button.refresh')) b.addEventListener('click', () => refresh());
    for (const name of Object.keys(LISTS)) {
      let t = null;
      $(name + '-filter').addEventListener('input', (ev) => {
        clearTimeout(t);
        t = setTimeout(() => {
          listState[name].filter = ev.target.value;
          listState[name].page = 1;
          loadList(name).catch(fail);
        }, 250);
      });
    }
    window.addEventListener('hashchange', () => { if (auth) route(); });
  }

  async function boot() {
    wire();
    if (!auth) return showLogin('');
    try {
      enterApp(await api('GET', '/whoami'));
    } catch (e) {
      if (e instanceof AuthError) logout('Your saved credentials were refused; log in again.');
      else showLogin('Cannot reach the server: ' + e.message);
    }
  }

  boot();
})();
