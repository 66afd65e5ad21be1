// The API contract as an outside tool sees it: the OpenAPI document validates against the
// OpenAPI 3.1 schema, and the token rules hold over plain HTTP against a real `orrery up`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Validator } from '@seriousme/openapi-schema-validator';
import { startOrrery } from '../harness.mjs';

let orrery;
before(async () => { orrery = await startOrrery(); });
after(async () => { await orrery.stop(); });

test('the OpenAPI document is valid OpenAPI 3.1', async () => {
  const doc = await (await fetch(`${orrery.base}/api/openapi.json`)).json();
  assert.equal(doc.openapi, '3.1.0');
  const result = await new Validator().validate(doc);
  assert.equal(result.valid, true, JSON.stringify(result.errors, null, 2));
  assert.ok(Object.keys(doc.paths).length >= 10, 'every endpoint is documented');
});

test("a viewer's token gets 403 on an admin endpoint and 404 on another tenant's project", async () => {
  const other = await orrery.api('POST', '/api/v1/tenants', { body: { slug: 'other', name: 'Other' } });
  assert.equal(other.status, 201);
  const project = await orrery.api('POST', '/api/v1/tenants/other/projects', { body: { slug: 'hidden', name: 'Hidden' } });
  assert.equal(project.status, 201);
  const invited = await orrery.api('POST', '/api/v1/tenants/default/members', { body: { email: 'v@example.com', role: 'viewer' } });
  assert.equal(invited.status, 201);
  // The viewer signs in and makes a token of their own.
  const login = await fetch(`${orrery.base}/api/v1/auth/login`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: 'v@example.com', password: invited.body.initial_password }),
  });
  assert.equal(login.status, 200);
  const cookie = login.headers.get('set-cookie').split(';')[0];
  const made = await fetch(`${orrery.base}/api/v1/tokens`, {
    method: 'POST', headers: { 'content-type': 'application/json', cookie, origin: orrery.base },
    body: JSON.stringify({ name: 'viewer-cli' }),
  });
  assert.equal(made.status, 201);
  const viewer = (await made.json()).secret;

  const admin = await orrery.api('GET', '/api/v1/tenants/default/members', { bearer: viewer });
  assert.equal(admin.status, 403);
  assert.equal(admin.body.code, 'forbidden');
  const foreign = await orrery.api('GET', `/api/v1/tenants/other/projects/${project.body.id}`, { bearer: viewer });
  assert.equal(foreign.status, 404);
  const sideways = await orrery.api('GET', `/api/v1/tenants/default/projects/${project.body.id}`, { bearer: viewer });
  assert.equal(sideways.status, 404);
  const own = await orrery.api('GET', '/api/v1/tenants/default/projects', { bearer: viewer });
  assert.equal(own.status, 200);
});
