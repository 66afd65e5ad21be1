// The workflow editor and runs, end to end in Chromium against a real `orrery up` with its real
// worker: a DAG drawn by drag and drop, saved, triggered and watched live; a cycle refused; the
// YAML view driving the graph; versions diffed and rolled back; Chinese; and a viewer who may
// look but not cancel.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startOrrery, openBrowser, hydrated, signIn, ADMIN_EMAIL, ADMIN_PASSWORD } from '../harness.mjs';

let orrery;
before(async () => {
  orrery = await startOrrery();
  const p = await orrery.api('POST', '/api/v1/tenants/default/projects', { body: { slug: 'etl', name: 'ETL' } });
  assert.equal(p.status, 201, JSON.stringify(p.body));
});
after(async () => { await orrery.stop(); });

async function apply(document, message = 'by the test') {
  const r = await orrery.api('POST', '/api/v1/tenants/default/workflows', { body: { project: 'etl', document, message } });
  assert.ok(r.status === 201 || r.status === 200, JSON.stringify(r.body));
  return r.body.workflow;
}

async function signedIn(t, email = ADMIN_EMAIL, password = ADMIN_PASSWORD) {
  const b = await openBrowser(t);
  await signIn(b.page, orrery.base, email, password);
  await b.page.waitForURL(`${orrery.base}/t/default`);
  await hydrated(b.page);
  return b;
}

/** Drags a task kind from the palette onto the canvas, at fractions (fx, fy) of its size. */
async function dragKind(page, kind, fx, fy) {
  const canvas = await page.locator('[data-test=canvas]').boundingBox();
  const [x, y] = [canvas.width * fx, canvas.height * fy];
  const item = await page.locator(`.palette-item[data-kind="${kind}"]`).boundingBox();
  await page.mouse.move(item.x + item.width / 2, item.y + item.height / 2);
  await page.mouse.down();
  await page.mouse.move(canvas.x + x, canvas.y + y, { steps: 10 });
  await page.mouse.up();
}

/** Drags from one task's output port onto another task. */
async function connect(page, from, to) {
  const port = await page.locator(`.node[data-task="${from}"] .port.out`).boundingBox();
  const target = await page.locator(`.node[data-task="${to}"] .node-box`).boundingBox();
  await page.mouse.move(port.x + port.width / 2, port.y + port.height / 2);
  await page.mouse.down();
  await page.mouse.move(target.x + target.width / 2, target.y + target.height / 2, { steps: 10 });
  await page.mouse.up();
}

/** Polls `ok` until it holds (30 s at most: a bound against hangs, not a timing claim). */
async function until(what, ok) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (await ok()) return;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const taskIds = (page) => page.locator('.node').evaluateAll((ns) => ns.map((n) => n.getAttribute('data-task')));
const edgeIds = (page) => page.locator('[data-test=canvas] .edge').evaluateAll((es) => es.map((e) => e.getAttribute('data-edge')).sort());

test('a DAG drawn by drag and drop is saved, triggered, turns green live, and shows its log', async (t) => {
  const b = await signedIn(t);
  const { page } = b;
  try {
    await page.goto(`${orrery.base}/t/default/workflows`);
    await hydrated(page);
    await page.click('[data-test=new-workflow]');
    await page.waitForURL(`${orrery.base}/t/default/workflows/new`);
    await page.waitForSelector('[data-test=palette]');
    await dragKind(page, 'shell', 0.2, 0.3);
    await dragKind(page, 'sleep', 0.5, 0.55);
    await dragKind(page, 'python', 0.8, 0.3);
    assert.deepEqual(await taskIds(page), ['shell_1', 'sleep_1', 'python_1']);
    await connect(page, 'shell_1', 'sleep_1');
    await connect(page, 'sleep_1', 'python_1');
    assert.deepEqual(await edgeIds(page), ['shell_1->sleep_1', 'sleep_1->python_1']);

    // The side panel edits the selected task through its kind's form.
    await page.click('.node[data-task="shell_1"]');
    await page.waitForSelector('[data-test=task-panel][data-task="shell_1"]');
    await page.fill('[data-test=kind-config] [data-field=script]', 'echo building step one');
    await page.press('[data-test=kind-config] [data-field=script]', 'Tab');
    await page.click('.node[data-task="sleep_1"]');
    await page.fill('[data-test=kind-config] [data-field=seconds]', '2');
    await page.press('[data-test=kind-config] [data-field=seconds]', 'Tab');
    await page.click('[data-test=tab-settings]');
    await page.fill('[data-test=workflow-name-input]', 'drawn-by-hand');
    await page.press('[data-test=workflow-name-input]', 'Tab');
    await page.click('[data-test=tab-graph]');
    assert.equal(await page.textContent('[data-test=workflow-name]'), 'drawn-by-hand');

    await page.fill('[data-test=save-message]', 'three tasks, drawn');
    await page.click('[data-test=save]');
    await page.waitForURL(/\/t\/default\/workflows\/[0-9a-f-]{36}$/);
    await hydrated(page);
    assert.equal((await page.textContent('[data-test=version]')).trim(), 'v1');
    const stored = await orrery.api('GET', '/api/v1/tenants/default/workflows/drawn-by-hand');
    assert.equal(stored.status, 200);
    assert.deepEqual(stored.body.document.tasks.map((x) => [x.id, x.kind, x.depends_on ?? []]),
      [['shell_1', 'shell', []], ['sleep_1', 'sleep', ['shell_1']], ['python_1', 'python', ['sleep_1']]]);
    assert.equal(stored.body.document.tasks[0].config.script, 'echo building step one');
    assert.ok(stored.body.layout?.sleep_1, 'the canvas positions are kept');

    await page.click('[data-test=open-trigger]');
    await page.click('[data-test=trigger-submit]');
    await page.waitForURL(/\/t\/default\/runs\/[0-9a-f-]{36}$/);
    await hydrated(page);
    // Live: the page is never reloaded; the states arrive as server-sent events.
    await page.evaluate(() => { window.__samePage = true; });
    await page.waitForSelector('.node.state-running', { timeout: 20_000 });
    await page.waitForSelector('[data-test=run-state] [data-state=succeeded]', { timeout: 30_000 });
    assert.equal(await page.locator('.node.state-succeeded').count(), 3);
    assert.equal(await page.evaluate(() => window.__samePage), true, 'no reload happened');
    assert.ok(await page.locator('[data-test=gantt] .bar.attempt-succeeded').count() >= 3, 'the timeline shows each attempt');

    await page.click('.node[data-task="shell_1"]');
    await page.waitForSelector('[data-test=task-detail][data-task="shell_1"]');
    await page.waitForFunction(() => document.querySelector('[data-test=log-text]')?.textContent.includes('building step one'), null, { timeout: 15_000 });
    await page.fill('[data-test=log-search]', 'step');
    assert.equal(await page.textContent('[data-test=log-matches]'), '1/1');
    assert.match(await page.textContent('[data-test=attempts]'), /succeeded/);
    assert.deepEqual(b.problems, []);
  } finally { await b.close(t); }
});

test('a cycle is refused on the canvas and marked when written in YAML', async (t) => {
  const wf = await apply('name: cyclic\ntasks:\n  - {id: a, kind: noop}\n  - {id: b, kind: noop, depends_on: [a]}\n  - {id: c, kind: noop, depends_on: [b]}\n');
  const b = await signedIn(t);
  const { page } = b;
  try {
    await page.goto(`${orrery.base}/t/default/workflows/${wf.id}`);
    await hydrated(page);
    await page.waitForSelector('.node[data-task="c"]');
    await connect(page, 'c', 'a');
    const notice = await page.textContent('[data-test=edit-notice]');
    assert.match(notice, /cycle/);
    assert.match(notice, /a → b → c → a/);
    assert.deepEqual(await edgeIds(page), ['a->b', 'b->c'], 'the edge was not added');

    await page.click('[data-test=toggle-yaml]');
    const yaml = page.locator('[data-test=yaml]');
    await yaml.waitFor();
    const text = await yaml.inputValue();
    await yaml.fill(text.replace('- id: a\n  kind: noop\n', '- id: a\n  kind: noop\n  depends_on:\n  - c\n'));
    await page.waitForSelector('.node.in-cycle');
    assert.equal(await page.locator('.node.in-cycle').count(), 3);
    assert.match(await page.textContent('[data-test=problems]'), /cycle/);
    assert.equal(await page.isDisabled('[data-test=save]'), true, 'a workflow with a cycle cannot be saved');
    // The server refuses it too.
    const refused = await orrery.api('POST', '/api/v1/tenants/default/workflows', { body: { project: 'etl', document: await yaml.inputValue() } });
    assert.equal(refused.status, 422);
    assert.match(JSON.stringify(refused.body), /cycle/);
    assert.deepEqual(b.problems, []);
  } finally { await b.close(t); }
});

test('editing the YAML changes the graph, and a bad line is named', async (t) => {
  const wf = await apply('name: from-yaml\ntasks:\n  - {id: a, kind: noop}\n  - {id: b, kind: noop, depends_on: [a]}\n');
  const b = await signedIn(t);
  const { page } = b;
  try {
    await page.goto(`${orrery.base}/t/default/workflows/${wf.id}?view=yaml`);
    await hydrated(page);
    const yaml = page.locator('[data-test=yaml]');
    await yaml.waitFor();
    const text = await yaml.inputValue();
    await yaml.fill(`${text}- id: c\n  kind: sleep\n  config:\n    seconds: 1\n  depends_on:\n  - b\n`);
    await page.waitForSelector('.node[data-task="c"]');
    assert.deepEqual(await edgeIds(page), ['a->b', 'b->c']);
    assert.equal(await page.textContent('.node[data-task="c"] .node-kind'), 'sleep');
    // A graph edit rewrites the text.
    await page.click('.node[data-task="a"]');
    await page.locator('[data-test=canvas]').press('Delete');
    await page.waitForFunction(() => !document.querySelector('[data-test=yaml]').value.includes('id: a'));
    assert.deepEqual(await taskIds(page), ['b', 'c']);
    // Text that does not parse says where; the graph stays as it was.
    await yaml.fill('name: from-yaml\ntasks:\n  - id: b\n    kind: [noop\n');
    const err = await page.textContent('[data-test=yaml-error]');
    assert.match(err, /line \d/);
    assert.deepEqual(await taskIds(page), ['b', 'c']);
    await page.click('[data-test=undo]');
    assert.deepEqual(await taskIds(page), ['a', 'b', 'c'], 'undo brings the deleted task back');
    assert.deepEqual(b.problems, []);
  } finally { await b.close(t); }
});

test('two versions are diffed on the graph and the older one is rolled back to', async (t) => {
  await apply('name: versioned\ntasks:\n  - {id: keep, kind: noop}\n  - {id: gone, kind: noop, depends_on: [keep]}\n  - {id: edit, kind: sleep, config: {seconds: 1}, depends_on: [keep]}\n', 'first');
  const wf = await apply('name: versioned\ntasks:\n  - {id: keep, kind: noop}\n  - {id: edit, kind: sleep, config: {seconds: 5}, depends_on: [keep]}\n  - {id: fresh, kind: noop, depends_on: [edit]}\n', 'second');
  assert.equal(wf.version, 2);
  const b = await signedIn(t);
  const { page } = b;
  try {
    await page.goto(`${orrery.base}/t/default/workflows/${wf.id}`);
    await hydrated(page);
    await page.click('[data-test=tab-versions]');
    await page.waitForSelector('[data-test=diff]');
    assert.match(await page.textContent('[data-test=diff-added]'), /fresh/);
    assert.match(await page.textContent('[data-test=diff-removed]'), /gone/);
    assert.match(await page.textContent('[data-test=diff-changed]'), /edit: config/);
    const diffGraph = page.locator('[data-test=versions] [data-test=canvas]');
    assert.equal(await diffGraph.locator('.node.diff-added').getAttribute('data-task'), 'fresh');
    assert.equal(await diffGraph.locator('.node.diff-removed').getAttribute('data-task'), 'gone');
    assert.equal(await diffGraph.locator('.node.diff-changed').getAttribute('data-task'), 'edit');

    await page.click('tr[data-version="1"] [data-test=rollback]');
    await page.click('[data-test=confirm-yes]');
    await page.waitForSelector('[data-test=rolled-back]');
    assert.match(await page.textContent('[data-test=rolled-back]'), /3/);
    assert.equal((await page.textContent('[data-test=version]')).trim(), 'v3');
    const now = await orrery.api('GET', `/api/v1/tenants/default/workflows/${wf.id}`);
    assert.equal(now.body.workflow.version, 3);
    assert.deepEqual(now.body.document.tasks.map((x) => x.id), ['keep', 'gone', 'edit']);
    await page.click('[data-test=tab-graph]');
    assert.deepEqual(await taskIds(page.locator('.editor-body')), ['keep', 'gone', 'edit'], 'the editor shows the rolled-back document');
    assert.deepEqual(b.problems, []);
  } finally { await b.close(t); }
});

test('the console switches to Chinese and keeps it for the person', async (t) => {
  const invited = await orrery.api('POST', '/api/v1/tenants/default/members', { body: { email: 'zh@example.com', role: 'developer' } });
  assert.equal(invited.status, 201);
  const b = await signedIn(t, 'zh@example.com', invited.body.initial_password);
  const { page } = b;
  try {
    await page.goto(`${orrery.base}/t/default/workflows`);
    await hydrated(page);
    assert.equal(await page.textContent('nav.sidebar a[href="/t/default/workflows"]'), 'Workflows');
    await page.selectOption('[data-test=language]', 'zh');
    await page.waitForFunction(() => document.querySelector('nav.sidebar a[href="/t/default/workflows"]').textContent === '工作流');
    await page.waitForFunction(() => document.documentElement.lang === 'zh');
    assert.equal(await page.textContent('h1'), '工作流');
    await page.selectOption('[data-test=theme]', 'dark');
    await page.waitForFunction(() => document.documentElement.dataset.theme === 'dark');
    // Kept: a reload, and a new browser after signing in again, come back in Chinese.
    await page.reload();
    await hydrated(page);
    assert.equal(await page.textContent('h1'), '工作流');
    const other = await openBrowser(t);
    try {
      await signIn(other.page, orrery.base, 'zh@example.com', invited.body.initial_password);
      await other.page.waitForURL(`${orrery.base}/t/default`);
      await hydrated(other.page);
      assert.equal(await other.page.getAttribute('html', 'lang'), 'zh');
      assert.equal(await other.page.getAttribute('html', 'data-theme'), 'dark');
      assert.equal(await other.page.textContent('nav.sidebar a[href="/t/default/runs"]'), '运行');
      assert.deepEqual(other.problems, []);
    } finally { await other.close(t); }
    // The editor's own checks speak Chinese too.
    const wf = await apply('name: zh-checked\ntasks:\n  - {id: load, kind: noop}\n');
    await page.goto(`${orrery.base}/t/default/workflows/${wf.id}?view=yaml`);
    await hydrated(page);
    const yaml = page.locator('[data-test=yaml]');
    await yaml.waitFor();
    await yaml.fill('name: zh-checked\ntasks:\n  - id: load\n    kind: noop\n    depends_on: [lod]\n');
    await page.waitForSelector('[data-test=problems]');
    assert.match(await page.textContent('[data-test=problems]'), /load: 依赖的 `lod` 不是本工作流的任务（是否想写 `load`？）/);
    assert.deepEqual(b.problems, []);
  } finally { await b.close(t); }
});

test('a viewer sees no cancel button, and the API refuses them too', async (t) => {
  const wf = await apply('name: long-one\ntasks:\n  - {id: wait, kind: sleep, config: {seconds: 60}}\n');
  const run = await orrery.api('POST', `/api/v1/tenants/default/workflows/${wf.id}/runs`, { body: {} });
  assert.equal(run.status, 201);
  const id = run.body.run.id;
  const invited = await orrery.api('POST', '/api/v1/tenants/default/members', { body: { email: 'looker@example.com', role: 'viewer' } });
  assert.equal(invited.status, 201);
  const b = await signedIn(t, 'looker@example.com', invited.body.initial_password);
  b.allowStatus(403);
  const { page } = b;
  try {
    await page.goto(`${orrery.base}/t/default/runs/${id}`);
    await hydrated(page);
    await page.waitForSelector('[data-test=run-state]');
    assert.equal(await page.locator('[data-test=cancel-run]').count(), 0);
    assert.equal(await page.locator('[data-test=run-actions]').count(), 0);
    await page.click('.node[data-task="wait"]');
    await page.waitForSelector('[data-test=task-detail]');
    assert.equal(await page.locator('[data-test=clear-task], [data-test=mark-failed]').count(), 0);
    // Their session asks anyway: refused.
    const status = await page.evaluate(async (url) => (await fetch(url, { method: 'POST' })).status, `/api/v1/tenants/default/runs/${id}/cancel`);
    assert.equal(status, 403);
    assert.equal((await orrery.api('GET', `/api/v1/tenants/default/runs/${id}`)).body.run.state, 'running');
    // The admin sees the button and cancels.
    const admin = await signedIn(t);
    try {
      // First, the workers page lists the running attempt under the worker that runs it.
      await admin.page.goto(`${orrery.base}/t/default/workers`);
      await hydrated(admin.page);
      const link = admin.page.locator(`[data-test=worker-attempts] a[href="/t/default/runs/${id}"]`);
      await link.waitFor({ timeout: 15_000 });
      assert.equal((await link.textContent()).trim(), 'long-one / wait');
      await link.click();
      await admin.page.waitForURL(`${orrery.base}/t/default/runs/${id}`);
      await admin.page.goto(`${orrery.base}/t/default/runs/${id}`);
      await hydrated(admin.page);
      await admin.page.click('[data-test=cancel-run]');
      await admin.page.click('[data-test=confirm-yes]');
      await admin.page.waitForSelector('[data-test=run-state] [data-state=cancelled]', { timeout: 20_000 });
      assert.deepEqual(admin.problems, []);
    } finally { await admin.close(t); }
  } finally { await b.close(t); }
});

test('the schedule editor lists the next fires as you type, computed in the browser; a backfill previews its runs', async (t) => {
  const wf = await apply('name: nightly\nschedule: {cron: "0 2 * * *"}\ntasks:\n  - {id: load, kind: noop}\n');
  const b = await signedIn(t);
  const { page } = b;
  try {
    await page.goto(`${orrery.base}/t/default/workflows/${wf.id}`);
    await hydrated(page);
    await page.click('[data-test=tab-schedule]');
    await page.waitForSelector('[data-test=next-fires] li');
    const asked = [];
    page.on('request', (r) => asked.push(r.url()));
    await page.fill('[data-test=timezone]', 'Asia/Shanghai');
    await page.press('[data-test=timezone]', 'Tab');
    await page.fill('[data-test=cron]', '30 9 * * 1-5');
    await page.waitForFunction(() => [...document.querySelectorAll('[data-test=next-fires] li')].every((li) => li.textContent.includes('09:30:00')));
    const fires = await page.locator('[data-test=next-fires] li').allTextContents();
    assert.equal(fires.length, 10);
    for (const f of fires) assert.match(f, /^\d{4}-\d\d-\d\d 09:30:00 CST \((Mon|Tue|Wed|Thu|Fri)\)$/, f);
    assert.ok(fires.every((f, i) => i === 0 || f > fires[i - 1]), 'in order');
    await page.fill('[data-test=cron]', '61 * * * *');
    assert.match(await page.textContent('[data-test=cron-error]'), /61/);
    assert.deepEqual(asked, [], 'the fires were computed in the browser, without asking the server');

    // A backfill of the saved schedule (02:00 UTC daily) over three days previews three runs.
    await page.reload();
    await hydrated(page);
    await page.click('[data-test=open-backfill]');
    await page.fill('[data-test=backfill-start]', '2026-01-01T00:00');
    await page.fill('[data-test=backfill-end]', '2026-01-03T23:59');
    await page.click('[data-test=backfill-preview-button]');
    await page.waitForSelector('[data-test=backfill-preview]');
    assert.deepEqual(await page.locator('[data-test=backfill-preview] li').allTextContents(),
      ['2026-01-01 02:00:00', '2026-01-02 02:00:00', '2026-01-03 02:00:00']);
    assert.equal((await orrery.api('GET', `/api/v1/tenants/default/runs?workflow=${wf.id}`)).body.items.length, 0, 'a preview makes no run');
    await page.click('[data-test=backfill-submit]');
    await page.waitForURL(/\/runs\?workflow=.*trigger=backfill/);
    let runs;
    await until('the backfill made its runs', async () => {
      runs = (await orrery.api('GET', `/api/v1/tenants/default/runs?workflow=${wf.id}`)).body.items;
      return runs.length === 3;
    });
    assert.deepEqual(runs.map((r) => r.logical_time).sort(),
      ['2026-01-01T02:00:00Z', '2026-01-02T02:00:00Z', '2026-01-03T02:00:00Z']);
    assert.deepEqual(b.problems, []);
  } finally { await b.close(t); }
});

test('dialogs work from the keyboard: the focus goes in, Escape closes, the focus comes back', async (t) => {
  const wf = await apply('name: keyboard\ntasks:\n  - {id: wait, kind: sleep, config: {seconds: 60}}\n');
  const run = await orrery.api('POST', `/api/v1/tenants/default/workflows/${wf.id}/runs`, { body: {} });
  assert.equal(run.status, 201);
  const b = await signedIn(t);
  const { page } = b;
  const focused = () => page.evaluate(() => document.activeElement?.getAttribute('data-test'));
  try {
    await page.goto(`${orrery.base}/t/default/runs/${run.body.run.id}`);
    await hydrated(page);
    await page.focus('[data-test=cancel-run]');
    await page.keyboard.press('Enter');
    await page.waitForSelector('[data-test=confirm]');
    assert.equal(await focused(), 'confirm-yes', 'the question takes the focus');
    await page.keyboard.press('Tab');
    assert.equal(await focused(), 'confirm-no', 'Tab stays inside the dialog');
    await page.keyboard.press('Escape');
    await page.waitForSelector('[data-test=confirm]', { state: 'detached' });
    assert.equal(await focused(), 'cancel-run', 'the focus is back on the button');
    assert.equal((await orrery.api('GET', `/api/v1/tenants/default/runs/${run.body.run.id}`)).body.run.state, 'running');
    // And through to the end with keys only.
    await page.keyboard.press('Enter');
    await page.waitForSelector('[data-test=confirm]');
    await page.keyboard.press('Enter');
    await page.waitForSelector('[data-test=run-state] [data-state=cancelled]', { timeout: 20_000 });

    await page.goto(`${orrery.base}/t/default/workflows/${wf.id}`);
    await hydrated(page);
    await page.focus('[data-test=open-trigger]');
    await page.keyboard.press('Enter');
    await page.waitForSelector('[data-test=trigger-dialog]');
    assert.equal(await page.evaluate(() => !!document.activeElement?.closest('.modal')), true);
    await page.keyboard.press('Escape');
    await page.waitForSelector('[data-test=trigger-dialog]', { state: 'detached' });
    assert.deepEqual(b.problems, []);
  } finally { await b.close(t); }
});

test('leaving the editor with unsaved changes asks first', async (t) => {
  const wf = await apply('name: careful\ntasks:\n  - {id: a, kind: noop}\n  - {id: b, kind: noop, depends_on: [a]}\n');
  const b = await signedIn(t);
  const { page } = b;
  try {
    await page.goto(`${orrery.base}/t/default/workflows/${wf.id}`);
    await hydrated(page);
    // Unchanged: a link just goes.
    await page.click('nav.sidebar a[href="/t/default/runs"]');
    await page.waitForURL(`${orrery.base}/t/default/runs`);
    await page.goto(`${orrery.base}/t/default/workflows/${wf.id}`);
    await hydrated(page);
    await page.click('.node[data-task="b"]');
    await page.locator('[data-test=canvas]').press('Delete');
    assert.deepEqual(await taskIds(page), ['a']);
    const questions = [];
    page.once('dialog', (d) => { questions.push(d.message()); d.dismiss(); });
    await page.click('nav.sidebar a[href="/t/default/runs"]');
    assert.match(questions[0] ?? '', /unsaved changes/);
    assert.equal(page.url(), `${orrery.base}/t/default/workflows/${wf.id}`, 'declined: still in the editor');
    assert.deepEqual(await taskIds(page), ['a'], 'with the edit');
    page.once('dialog', (d) => { questions.push(d.message()); d.accept(); });
    await page.click('nav.sidebar a[href="/t/default/runs"]');
    await page.waitForURL(`${orrery.base}/t/default/runs`);
    assert.equal(questions.length, 2);
    assert.deepEqual(b.problems, []);
  } finally { await b.close(t); }
});

test('a workflow is imported from a YAML file', async (t) => {
  const b = await signedIn(t);
  const { page } = b;
  try {
    await page.goto(`${orrery.base}/t/default/workflows`);
    await hydrated(page);
    await page.click('[data-test=import-yaml]');
    await page.waitForSelector('[data-test=import-dialog]');
    const doc = 'name: imported-from-file\ntasks:\n  - {id: one, kind: noop}\n  - {id: two, kind: noop, depends_on: [one]}\n';
    await page.setInputFiles('[data-test=import-file]', { name: 'flow.yaml', mimeType: 'application/yaml', buffer: Buffer.from(doc) });
    await page.waitForFunction((d) => document.querySelector('[data-test=import-text]').value === d, doc);
    await page.click('[data-test=import-submit]');
    await page.waitForURL(/\/t\/default\/workflows\/[0-9a-f-]{36}$/);
    // The router swaps the page in place (the body stays hydrated): wait for the editor itself.
    await page.waitForSelector('.node[data-task="two"]');
    assert.deepEqual(await taskIds(page), ['one', 'two']);
    const stored = await orrery.api('GET', '/api/v1/tenants/default/workflows/imported-from-file');
    assert.equal(stored.status, 200);
    assert.deepEqual(b.problems, []);
  } finally { await b.close(t); }
});

test("the dashboard's numbers open the lists they count, and failed runs are rerun in bulk from there", async (t) => {
  const wf = await apply('name: dash-fails\ntasks:\n  - {id: boom, kind: shell, config: {script: "exit 3"}}\n');
  const ids = [];
  for (let i = 0; i < 2; i++) {
    const r = await orrery.api('POST', `/api/v1/tenants/default/workflows/${wf.id}/runs`, { body: {} });
    assert.equal(r.status, 201);
    ids.push(r.body.run.id);
  }
  const detail = (id) => orrery.api('GET', `/api/v1/tenants/default/runs/${id}`).then((r) => r.body);
  await until('both runs failed', async () => (await Promise.all(ids.map(detail))).every((d) => d.run.state === 'failed'));
  const b = await signedIn(t);
  const { page } = b;
  const rows = () => page.locator('[data-test=runs] tbody tr');
  try {
    // Runs today by state: the number is the length of the list it opens.
    const failed = Number(await page.textContent('[data-test=stat-failed] .value'));
    assert.ok(failed >= 2, `failed today: ${failed}`);
    await page.click('[data-test=stat-failed]');
    await page.waitForURL(/\/t\/default\/runs\?since=\d{4}-\d\d-\d\d&state=failed$/);
    await hydrated(page);
    await page.waitForSelector('[data-test=runs]');
    assert.equal(await rows().count(), failed);
    assert.deepEqual([...new Set(await rows().evaluateAll((rs) => rs.map((r) => r.dataset.state)))], ['failed']);

    // A failing workflow's count opens its failed runs of the day.
    await page.goto(`${orrery.base}/t/default`);
    await hydrated(page);
    const link = page.locator(`[data-test=failing] a[href*="workflow=${wf.id}"]`);
    assert.match(await link.textContent(), /^2 failed$/);
    await link.click();
    await page.waitForURL(new RegExp(`workflow=${wf.id}&state=failed$`));
    await hydrated(page);
    await page.waitForSelector('[data-test=runs]');
    assert.deepEqual((await rows().evaluateAll((rs) => rs.map((r) => r.dataset.run))).sort(), [...ids].sort());

    // Both selected and rerun at once: each runs its task a second time.
    await page.check('[data-test=runs] thead input[type=checkbox]');
    await page.click('[data-test=bulk-rerun]');
    await page.click('[data-test=confirm-yes]');
    await until('both runs ran again', async () => (await Promise.all(ids.map(detail)))
      .every((d) => d.run.state === 'failed' && d.tasks[0].attempts.length === 2));
    assert.deepEqual(b.problems, []);
  } finally { await b.close(t); }
});
