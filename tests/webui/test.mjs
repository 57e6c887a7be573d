// The management page in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core):
// log in, watch a queue that pika fills, purge it, publish and get, close a connection, and
// check that client-chosen names are shown as text. Run it through tests/webui/run.sh.
//
//   node test.mjs --url PAGE_URL --amqp PORT --shots DIR [--python PY] [--only NAME]...
//
// One line per check: `PASS name` or `FAIL name: reason`; the last line is
// `webui: N passed, M failed`; exit status 1 if any failed. Every wait is bounded.
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// Longest wait for the page to show a broker event: RabbitMQ's statistics lag up to its
// collect_statistics_interval, and the page polls every 5 s.
const WAIT_MS = 30000;
const N = 25;
const XSS_QUEUE = '<img src=x onerror=alert(1)>';
const XSS_CONN = 'webui-test-conn <b onmouseover=alert(2)>b</b><img src=y onerror=alert(3)>';

function parseArgs(argv) {
  const a = { only: [], python: process.env.PYTHON || 'python3' };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[++i];
    if (v === undefined) throw new Error(k + ' needs a value');
    if (k === '--url') a.url = v;
    else if (k === '--amqp') a.amqp = Number(v);
    else if (k === '--shots') a.shots = v;
    else if (k === '--python') a.python = v;
    else if (k === '--only') a.only.push(v);
    else throw new Error('unknown option ' + k);
  }
  if (!a.url || !a.amqp || !a.shots) throw new Error('usage: test.mjs --url URL --amqp PORT --shots DIR');
  return a;
}

class CheckFailed extends Error {}
function expect(cond, what) {
  if (!cond) throw new CheckFailed(what);
}

// Polls fn() until it returns a truthy value; fails with `what` and the last value seen.
async function eventually(fn, what, timeout = WAIT_MS) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    let value;
    try {
      value = await fn();
      last = value;
    } catch (e) {
      last = { error: e.message };
    }
    if (value) return value;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new CheckFailed(what + ' within ' + timeout / 1000 + ' s (last seen: ' + JSON.stringify(last) + ')');
}

// The pika helper (amqp.py serve): one JSON request per line, one answer per line.
class Amqp {
  constructor(python, port) {
    this.proc = spawn(python, [path.join(HERE, 'amqp.py'), 'serve', String(port)],
      { stdio: ['pipe', 'pipe', 'inherit'] });
    this.lines = [];
    this.waiters = [];
    readline.createInterface({ input: this.proc.stdout }).on('line', (l) => {
      const w = this.waiters.shift();
      if (w) w(l); else this.lines.push(l);
    });
    this.proc.on('exit', () => { for (const w of this.waiters.splice(0)) w(null); });
  }

  next(timeout) {
    if (this.lines.length) return Promise.resolve(this.lines.shift());
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('amqp.py gave no answer in ' + timeout / 1000 + ' s')), timeout);
      this.waiters.push((l) => { clearTimeout(t); resolve(l); });
    });
  }

  async ready() {
    const l = await this.next(30000);
    if (!l) throw new Error('amqp.py exited before it connected');
  }

  async call(req, timeout = 60000) {
    this.proc.stdin.write(JSON.stringify(req) + '\n');
    const l = await this.next(timeout);
    if (!l) throw new Error('amqp.py exited');
    const out = JSON.parse(l);
    if (!out.ok) throw new CheckFailed('amqp ' + req.cmd + ': ' + out.error);
    return out;
  }

  close() {
    this.proc.stdin.end();
    this.proc.kill();
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  mkdirSync(args.shots, { recursive: true });
  const prefix = 'webui-test-' + Date.now().toString(36) + '-';
  const Q = prefix + 'depth';
  const QPG = prefix + 'pubget';
  const QRATE = prefix + 'rates';
  const origin = new URL(args.url).origin;

  const amqp = new Amqp(args.python, args.amqp);
  await amqp.ready();
  await amqp.call({ cmd: 'delete', queue: XSS_QUEUE });

  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(15000);
  const dialogs = [];
  const pageErrors = [];
  const consoleErrors = [];
  const offOrigin = [];
  const staticResponses = {};
  page.on('dialog', (d) => { dialogs.push(d.type() + ': ' + d.message()); d.dismiss().catch(() => {}); });
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => {
    // A refused login is a 401 that Chromium logs as a failed resource load: expected.
    if (m.type() === 'error' && !/status of 401/.test(m.text())) consoleErrors.push(m.text());
  });
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.protocol !== 'data:' && u.origin !== origin) offOrigin.push(r.url());
  });
  page.on('response', (r) => {
    const u = new URL(r.url());
    if (!u.pathname.startsWith('/api/')) staticResponses[u.pathname] = [r.status(), r.headers()['content-type'] || ''];
  });

  let shot = 0;
  const screenshot = async (name) => {
    const file = path.join(args.shots, String(++shot).padStart(2, '0') + '-' + name + '.png');
    await page.screenshot({ path: file, fullPage: true });
    return file;
  };
  const byTestId = (id) => page.getByTestId(id);
  const visible = (id) => byTestId(id).isVisible();
  const rowOf = (kind, name, cell = kind + '-name') =>
    byTestId(kind + '-row').filter({ has: byTestId(cell).getByText(name, { exact: true }) });
  const cellText = async (kind, name, cell) => {
    const row = rowOf(kind, name);
    if ((await row.count()) !== 1) return null;
    return (await row.getByTestId(cell).textContent()).trim();
  };
  const goView = async (view) => {
    await byTestId('nav-' + view).click();
    await byTestId('view-' + view).waitFor({ state: 'visible' });
  };
  const filter = async (view, text) => {
    await byTestId(view + '-filter').fill(text);
  };
  const login = async (user, pass) => {
    await byTestId('login-user').fill(user);
    await byTestId('login-pass').fill(pass);
    await byTestId('login-submit').click();
  };
  const confirmYes = async () => {
    await byTestId('confirm').waitFor({ state: 'visible' });
    await byTestId('confirm-yes').click();
  };

  const checks = [
    ['page_loads', 'GET / gives the page and its files with their content types; the login form shows', async () => {
      const resp = await page.goto(args.url, { waitUntil: 'load' });
      expect(resp && resp.status() === 200, 'GET / status ' + (resp && resp.status()));
      expect((resp.headers()['content-type'] || '').startsWith('text/html'), 'content-type ' + resp.headers()['content-type']);
      await byTestId('login-form').waitFor({ state: 'visible' });
      for (const [p, type] of [['/app.js', 'javascript'], ['/app.css', 'text/css']]) {
        const got = Object.entries(staticResponses).find(([k]) => k.endsWith(p));
        expect(got && got[1][0] === 200 && got[1][1].includes(type), p + ': ' + JSON.stringify(got));
      }
      expect(!(await visible('view-overview')), 'the overview shows before login');
      await screenshot('login');
    }],
    ['login_wrong_password', 'guest with a wrong password sees an error and never the app', async () => {
      // Records whether the app is shown at any moment, however briefly.
      await page.evaluate(() => {
        window.appShown = false;
        const app = document.getElementById('app');
        new MutationObserver(() => { if (!app.hidden) window.appShown = true; })
          .observe(app, { attributes: true, attributeFilter: ['hidden'] });
      });
      await login('guest', 'not-the-password');
      const err = await eventually(async () => (await visible('login-error')) && (await byTestId('login-error').textContent()),
        'an error on the login form');
      expect(/login failed/i.test(err), 'error text ' + JSON.stringify(err));
      expect(!(await page.evaluate(() => window.appShown)), 'the app was shown after a refused login');
      expect(await page.evaluate(() => sessionStorage.getItem('coney.auth')) === null, 'refused credentials were remembered');
      await screenshot('login-refused');
    }],
    ['login', 'guest/guest reaches the overview, which names the user', async () => {
      await login('guest', 'guest');
      await byTestId('view-overview').waitFor({ state: 'visible' });
      const who = await byTestId('user-name').textContent();
      expect(who.startsWith('guest'), 'user shown as ' + JSON.stringify(who));
      expect(!(await visible('login')), 'the login form is still shown');
    }],
    ['login_remembered', 'a reload keeps the session (credentials in sessionStorage), no second login', async () => {
      await page.reload({ waitUntil: 'load' });
      await byTestId('view-overview').waitFor({ state: 'visible' });
      expect(!(await visible('login')), 'the login form shows after a reload');
    }],
    ['queue_depth', 'a queue that pika fills with ' + N + ' messages shows ' + N + ' in the queues view', async () => {
      await amqp.call({ cmd: 'fill', queue: Q, n: N });
      await goView('queues');
      await filter('queues', prefix);
      await eventually(async () => (await cellText('queue', Q, 'queue-messages')) === String(N),
        'queue ' + Q + ' showing ' + N + ' messages');
      const ready = await cellText('queue', Q, 'queue-ready');
      expect(ready === String(N), 'ready shows ' + ready);
      await screenshot('queues-filled');
    }],
    ['overview_rates', 'the overview counts the queue and charts publish, deliver/get and ack rates while pika pumps', async () => {
      const pump = spawn(args.python, [path.join(HERE, 'amqp.py'), 'pump', String(args.amqp), QRATE, '40'],
        { stdio: ['ignore', 'ignore', 'inherit'] });
      try {
        await goView('overview');
        await eventually(async () => Number(await byTestId('total-queues').textContent()) >= 1, 'object totals counting queues');
        // Each rate must show above zero at some refresh, not all at once: a RabbitMQ test
        // node's 1-second statistics against its 5-second sample buckets make its rates read
        // zero in most seconds, so the test refreshes more often than the page's 5-second poll.
        const peak = { 'rate-publish': 0, 'rate-deliver': 0, 'rate-ack': 0 };
        const rates = await eventually(async () => {
          await byTestId('overview-refresh').click();
          await page.waitForTimeout(300);
          for (const id of Object.keys(peak)) peak[id] = Math.max(peak[id], parseFloat(await byTestId(id).textContent()) || 0);
          return Object.values(peak).every((x) => x > 0) && JSON.stringify(peak);
        }, 'each of the three rates above zero', 40000).catch((e) => {
          throw new CheckFailed(e.message + ' peaks ' + JSON.stringify(peak));
        });
        const samples = Number(await byTestId('rate-chart').getAttribute('data-samples'));
        expect(samples >= 2, 'chart samples ' + samples);
        // The publish series is drawn in its own colour somewhere above the zero line.
        const blue = await page.evaluate(() => {
          const c = document.getElementById('rate-chart');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let n = 0;
          for (let i = 0; i < d.length; i += 4) if (Math.abs(d[i] - 0x2f) < 40 && Math.abs(d[i + 1] - 0x6f) < 40 && d[i + 2] > 0xa0) n++;
          return n;
        });
        expect(blue > 20, 'publish line pixels on the chart: ' + blue + ' (rates ' + rates + ')');
        await screenshot('overview-rates');
      } finally {
        pump.kill();
        await amqp.call({ cmd: 'delete', queue: QRATE });
      }
    }],
    ['purge', 'Purge on the queue row empties it: the row shows 0 and pika counts 0', async () => {
      await goView('queues');
      await filter('queues', prefix);
      await rowOf('queue', Q).getByTestId('queue-purge').click();
      await confirmYes();
      await eventually(async () => (await cellText('queue', Q, 'queue-messages')) === '0', 'queue ' + Q + ' showing 0 messages');
      const { messages } = await amqp.call({ cmd: 'count', queue: Q });
      expect(messages === 0, 'pika counts ' + messages + ' messages after the purge');
      await screenshot('queues-purged');
    }],
    ['publish_and_get', 'a message published from the page is got back from the page, payload shown as text', async () => {
      await amqp.call({ cmd: 'declare', queue: QPG });
      await goView('queues');
      await filter('queues', QPG);
      const row = rowOf('queue', QPG);
      await eventually(async () => (await row.count()) === 1, 'queue ' + QPG + ' listed');
      await row.getByTestId('queue-publish').click();
      const payload = 'hello from the page <b>not bold</b> & more';
      await byTestId('publish-payload').fill(payload);
      await byTestId('publish-submit').click();
      await eventually(async () => (await byTestId('publish-result').getAttribute('data-routed')) === 'true', 'a routed publish');
      await eventually(async () => (await cellText('queue', QPG, 'queue-messages')) === '1', 'queue showing 1 message');
      await rowOf('queue', QPG).getByTestId('queue-get').click();
      await byTestId('get-ackmode').selectOption('ack_requeue_false');
      await byTestId('get-submit').click();
      const got = await eventually(async () => (await byTestId('get-payload').count()) === 1 && byTestId('get-payload').textContent(),
        'the got message');
      expect(got === payload, 'payload shown as ' + JSON.stringify(got));
      expect(await byTestId('get-result').locator('b').count() === 0, 'payload markup became elements');
      await screenshot('publish-get');
      const { messages } = await amqp.call({ cmd: 'count', queue: QPG });
      expect(messages === 0, 'ack_requeue_false left ' + messages + ' messages');
    }],
    ['xss_queue_name', 'a queue named ' + XSS_QUEUE + ' is shown as that text: no element, no dialog', async () => {
      await amqp.call({ cmd: 'declare', queue: XSS_QUEUE });
      await goView('queues');
      await filter('queues', 'onerror');
      await eventually(async () => (await rowOf('queue', XSS_QUEUE).count()) === 1, 'a row whose name is the text ' + XSS_QUEUE);
      expect(await byTestId('queues-table').locator('img').count() === 0, 'an <img> element is in the queues table');
      await page.waitForTimeout(500); // give a wrongly created onerror handler time to fire a dialog
      expect(dialogs.length === 0, 'dialogs: ' + JSON.stringify(dialogs));
      await screenshot('queues-xss-name');
    }],
    ['close_connection', 'Close on a connection row closes it with the X-Reason text; client name shown as text', async () => {
      await amqp.call({ cmd: 'hold', name: XSS_CONN });
      await goView('connections');
      const row = rowOf('connection', XSS_CONN, 'connection-client-name');
      await eventually(async () => (await row.count()) === 1, 'the held connection listed by its client name');
      expect(await byTestId('connections-table').locator('img, b').count() === 0, 'markup from a connection name became elements');
      await screenshot('connections');
      await row.getByTestId('connection-close').click();
      await confirmYes();
      const st = await amqp.call({ cmd: 'held', wait: 15 }, 30000);
      expect(st.closed, 'the connection is still open');
      expect(st.code === 320 && /Closed from the management page/.test(st.text), 'closed with ' + st.code + ' ' + JSON.stringify(st.text));
      await eventually(async () => (await row.count()) === 0, 'the closed connection gone from the list');
    }],
    ['channels_view', 'the channels view lists the test helper\'s channel', async () => {
      await goView('channels');
      await eventually(async () => (await byTestId('channel-row').count()) >= 1, 'at least one channel row');
      await screenshot('channels');
    }],
    ['exchanges_view', 'the exchanges view lists the default exchange and amq.direct; a publish to amq.direct with no binding reads not routed', async () => {
      await goView('exchanges');
      await eventually(async () => (await rowOf('exchange', 'amq.direct').count()) === 1, 'amq.direct listed');
      await eventually(async () => (await rowOf('exchange', '(AMQP default)').count()) >= 1, 'the default exchange listed');
      await rowOf('exchange', 'amq.direct').getByTestId('exchange-publish').click();
      await byTestId('publish-routing-key').fill(prefix + 'no-such-binding');
      await byTestId('publish-payload').fill('unroutable');
      await byTestId('publish-submit').click();
      await eventually(async () => (await byTestId('publish-result').getAttribute('data-routed')) === 'false',
        'amq.direct publish reported as not routed');
      await screenshot('exchanges-publish-unroutable');
    }],
    ['add_queue', 'the Add a queue form declares a queue that pika then finds', async () => {
      const name = prefix + 'added';
      await goView('queues');
      await byTestId('queue-add').locator('summary').click();
      await byTestId('queue-add-name').fill(name);
      await byTestId('queue-add-submit').click();
      await eventually(async () => (await amqp.call({ cmd: 'count', queue: name })).exists, 'queue ' + name + ' declared');
      await amqp.call({ cmd: 'delete', queue: name });
    }],
    ['delete_queue', 'Delete on the queue row deletes it: pika finds it gone', async () => {
      await goView('queues');
      await filter('queues', prefix);
      await eventually(async () => (await rowOf('queue', Q).count()) === 1, 'queue ' + Q + ' listed');
      await rowOf('queue', Q).getByTestId('queue-delete').click();
      await confirmYes();
      await eventually(async () => (await rowOf('queue', Q).count()) === 0, 'queue ' + Q + ' gone from the list');
      const { exists } = await amqp.call({ cmd: 'count', queue: Q });
      expect(!exists, 'queue still exists');
    }],
    ['refused_saved_credentials', 'saved credentials that the server refuses (401) bring the login form back', async () => {
      await page.evaluate(() => sessionStorage.setItem('coney.auth', btoa('guest:wrong')));
      await page.reload({ waitUntil: 'load' });
      await eventually(async () => (await visible('login')) && (await visible('login-error')), 'the login form with an error');
      expect(!(await visible('view-overview')), 'the overview shows with refused credentials');
      await login('guest', 'guest');
      await byTestId('user-name').waitFor({ state: 'visible' });
    }],
    ['logout', 'Log out forgets the credentials: a reload shows the login form', async () => {
      await byTestId('logout').click();
      await byTestId('login-form').waitFor({ state: 'visible' });
      await page.reload({ waitUntil: 'load' });
      await byTestId('login-form').waitFor({ state: 'visible' });
      expect(!(await visible('view-overview')), 'the overview shows after logout and reload');
    }],
    ['clean_run', 'no dialog, no script error, no console error, nothing fetched off the page\'s origin', async () => {
      expect(dialogs.length === 0, 'dialogs: ' + JSON.stringify(dialogs));
      expect(pageErrors.length === 0, 'page errors: ' + JSON.stringify(pageErrors));
      expect(consoleErrors.length === 0, 'console errors: ' + JSON.stringify(consoleErrors));
      expect(offOrigin.length === 0, 'requests off the origin: ' + JSON.stringify(offOrigin));
    }],
  ];

  let passed = 0;
  let failed = 0;
  for (const [name, what, fn] of checks) {
    if (args.only.length && !args.only.includes(name)) continue;
    try {
      await fn();
      passed++;
      console.log('PASS ' + name + ' (' + what + ')');
    } catch (e) {
      failed++;
      console.log('FAIL ' + name + ': ' + (e instanceof CheckFailed ? e.message : e.stack || e));
      await screenshot('FAIL-' + name).catch(() => {});
    }
  }
  for (const q of [Q, QPG, QRATE, XSS_QUEUE, prefix + 'added']) await amqp.call({ cmd: 'delete', queue: q }).catch(() => {});
  amqp.close();
  await browser.close();
  console.log('webui: ' + passed + ' passed, ' + failed + ' failed');
  process.exitCode = failed ? 1 : 0;
}

main().catch((e) => {
  console.log('FAIL webui: ' + (e.stack || e));
  console.log('webui: 0 passed, 1 failed');
  process.exit(1);
});
