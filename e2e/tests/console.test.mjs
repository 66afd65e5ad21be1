// The console shell, end to end: sign in, dashboard, granting roles, signing out, and what a
// viewer may not reach. Each test drives Chromium against one real `orrery up`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startOrrery, openBrowser, hydrated, signIn, ADMIN_EMAIL, ADMIN_PASSWORD } from '../harness.mjs';

let orrery;
before(async () => { orrery = await startOrrery(); });
after(async () => {
  const { code, leftovers } = await orrery.stop();
  assert.equal(code, 0, `orrery up should exit cleanly on SIGTERM:\n${orrery.output()}`);
  assert.deepEqual(leftovers, [], 'no postgres process may outlive orrery up');
});

test('an admin signs in and sees the live dashboard', async (t) => {
  const b = await openBrowser(t);
  try {
    await signIn(b.page, orrery.base, ADMIN_EMAIL, ADMIN_PASSWORD);
    await b.page.waitForURL(`${orrery.base}/t/default`);
    await hydrated(b.page);
    assert.equal(await b.page.textContent('[data-test=my-role]'), 'owner');
    assert.equal(await b.page.textContent('[data-test=stat-database]'), 'healthy');
    const members = Number(await b.page.textContent('[data-test=stat-members]'));
    assert.ok(members >= 1, `members: ${members}`);
    // Live: the server time refreshes without a reload.
    const first = await b.page.getAttribute('[data-test=server-time]', 'datetime');
    await b.page.waitForFunction((t) => document.querySelector('[data-test=server-time]')?.getAttribute('datetime') !== t, first, { timeout: 15_000 });
    assert.deepEqual(b.problems, []);
  } finally { await b.close(t); }
});

test('a wrong password gets a generic message', async (t) => {
  const b = await openBrowser(t);
  b.allowStatus(401);
  try {
    await signIn(b.page, orrery.base, ADMIN_EMAIL, 'not-the-password');
    const msg = await b.page.textContent('[data-test=login-error]');
    assert.match(msg, /email or password is not right/);
    assert.equal(new URL(b.page.url()).pathname, '/login');
    assert.deepEqual(b.problems, []);
  } finally { await b.close(t); }
});

test('an admin invites a member, grants a role, and signs out', async (t) => {
  const b = await openBrowser(t);
  try {
    await signIn(b.page, orrery.base, ADMIN_EMAIL, ADMIN_PASSWORD);
    await b.page.waitForURL(`${orrery.base}/t/default`);
    await hydrated(b.page);
    await b.page.click('nav.sidebar >> text=Settings');
    await b.page.waitForSelector('[data-test=members]');
    await b.page.fill('[data-test=invite-email]', 'dev@example.com');
    await b.page.selectOption('[data-test=invite-role]', 'developer');
    await b.page.click('[data-test=invite-submit]');
    const password = (await b.page.textContent('[data-test=initial-password]')).trim();
    assert.ok(password.length >= 16, 'a new user gets an initial password');
    const row = b.page.locator('tr[data-member="dev@example.com"]');
    await row.waitFor();
    // Grant another role from the table.
    await row.locator('[data-test=role-select]').selectOption('operator');
    const roleNow = async () => (await orrery.api('GET', '/api/v1/tenants/default/members')).body.items.find((m) => m.email === 'dev@example.com')?.role;
    for (let i = 0; i < 50 && (await roleNow()) !== 'operator'; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await roleNow(), 'operator', 'the role change is stored');
    // Sign out: back to the login page, and the console is closed to this browser.
    await b.page.click('[data-test=logout]');
    await b.page.waitForURL(`${orrery.base}/login`);
    await b.page.goto(`${orrery.base}/t/default`);
    assert.equal(new URL(b.page.url()).pathname, '/login');
    assert.deepEqual(b.problems, []);
  } finally { await b.close(t); }
});

test('a viewer cannot reach the members page, and sees no invite form', async (t) => {
  const invited = await orrery.api('POST', '/api/v1/tenants/default/members', { body: { email: 'viewer@example.com', role: 'viewer' } });
  assert.equal(invited.status, 201);
  const password = invited.body.initial_password;
  const b = await openBrowser(t);
  b.allowStatus(403);
  try {
    await signIn(b.page, orrery.base, 'viewer@example.com', password);
    await b.page.waitForURL(`${orrery.base}/t/default`);
    await hydrated(b.page);
    assert.equal(await b.page.textContent('[data-test=my-role]'), 'viewer');
    const res = await b.page.goto(`${orrery.base}/t/default/settings/members`);
    assert.equal(res.status(), 403, 'the page itself answers 403');
    await hydrated(b.page);
    const notice = b.page.locator('[data-code=forbidden]');
    await notice.waitFor();
    assert.match(await notice.textContent(), /viewer/);
    assert.equal(await b.page.locator('[data-test=invite-email]').count(), 0);
    assert.equal(await b.page.locator('[data-test=members]').count(), 0);
    assert.deepEqual(b.problems, []);
  } finally { await b.close(t); }
});

test('an expired session goes back to the login, and returns to the page after', async (t) => {
  const b = await openBrowser(t);
  b.allowStatus(401); // the open page's next refresh is refused: that is what we simulate
  try {
    await signIn(b.page, orrery.base, ADMIN_EMAIL, ADMIN_PASSWORD);
    await b.page.waitForURL(`${orrery.base}/t/default`);
    await hydrated(b.page);
    await b.context.clearCookies();
    // The open dashboard notices at its next refresh and goes to the login by itself.
    await b.page.waitForURL(`${orrery.base}/login?next=/t/default`, { timeout: 20_000 });
    // A page load without a session goes there too.
    await b.page.goto(`${orrery.base}/t/default/workflows`);
    assert.equal(new URL(b.page.url()).pathname, '/login');
    await hydrated(b.page);
    await b.page.fill('[data-test=email]', ADMIN_EMAIL);
    await b.page.fill('[data-test=password]', ADMIN_PASSWORD);
    await b.page.click('[data-test=sign-in]');
    await b.page.waitForURL(`${orrery.base}/t/default/workflows`);
    assert.deepEqual(b.problems, []);
  } finally { await b.close(t); }
});
