'use strict';
// The trigger's Standard Webhooks check, over the compiled code (npm run build first).
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { createHmac } = require('node:crypto');
const { verifyStandardWebhook } = require('../dist/shared/signature');

const SECRET = 'whsec_' + Buffer.from('0123456789abcdef0123456789abcdef').toString('base64');
const OTHER = 'whsec_' + Buffer.from('fedcba9876543210fedcba9876543210').toString('base64');
const NOW = 1_800_000_000;

function sign(secret, id, ts, body) {
	const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
	return 'v1,' + createHmac('sha256', key).update(`${id}.${ts}.${body}`).digest('base64');
}

function headers(body, { secret = SECRET, ts = NOW, id = 'evt_1', signature } = {}) {
	return {
		'webhook-id': id,
		'webhook-timestamp': String(ts),
		'webhook-signature': signature ?? sign(secret, id, ts, body),
	};
}

const BODY = '{"id":"evt_1","type":"quota.depleted","data":{"ratio":1.0,"10":"ten","note":"Zoë"}}';

test('a genuine delivery verifies over the raw bytes', () => {
	const verdict = verifyStandardWebhook(SECRET, headers(BODY), Buffer.from(BODY), NOW);
	assert.deepEqual(verdict, { ok: true, id: 'evt_1', timestamp: NOW });
});

test('re-serialised JSON is not the signed body', () => {
	const reserialised = JSON.stringify(JSON.parse(BODY));
	assert.notEqual(reserialised, BODY);
	const verdict = verifyStandardWebhook(SECRET, headers(BODY), reserialised, NOW);
	assert.deepEqual(verdict, { ok: false, reason: 'no matching signature' });
});

test('a tampered body, another secret or another id fails', () => {
	const h = headers(BODY);
	assert.equal(verifyStandardWebhook(SECRET, h, BODY.replace('Zoë', 'Zoe'), NOW).ok, false);
	assert.equal(verifyStandardWebhook(OTHER, h, BODY, NOW).ok, false);
	assert.equal(verifyStandardWebhook(SECRET, { ...h, 'webhook-id': 'evt_2' }, BODY, NOW).ok, false);
});

test('during a rotation either of two signatures is enough, v1a entries are skipped', () => {
	const both = `v1a,AAAA ${sign(OTHER, 'evt_1', NOW, BODY)} ${sign(SECRET, 'evt_1', NOW, BODY)}`;
	assert.equal(verifyStandardWebhook(SECRET, headers(BODY, { signature: both }), BODY, NOW).ok, true);
	assert.equal(verifyStandardWebhook(OTHER, headers(BODY, { signature: both }), BODY, NOW).ok, true);
	const onlyV1a = `v1a,${sign(SECRET, 'evt_1', NOW, BODY).slice(3)}`;
	assert.equal(verifyStandardWebhook(SECRET, headers(BODY, { signature: onlyV1a }), BODY, NOW).ok, false);
});

test('the timestamp must be within five minutes', () => {
	const old = headers(BODY, { ts: NOW - 301 });
	assert.deepEqual(verifyStandardWebhook(SECRET, old, BODY, NOW), { ok: false, reason: 'timestamp too old' });
	const future = headers(BODY, { ts: NOW + 301 });
	assert.deepEqual(verifyStandardWebhook(SECRET, future, BODY, NOW), { ok: false, reason: 'timestamp too new' });
	assert.equal(verifyStandardWebhook(SECRET, headers(BODY, { ts: NOW - 299 }), BODY, NOW).ok, true);
});

test('missing or malformed headers fail without throwing', () => {
	const h = headers(BODY);
	for (const name of Object.keys(h)) {
		const partial = { ...h };
		delete partial[name];
		assert.deepEqual(verifyStandardWebhook(SECRET, partial, BODY, NOW), { ok: false, reason: 'missing webhook headers' });
	}
	assert.equal(verifyStandardWebhook(SECRET, { ...h, 'webhook-timestamp': 'soon' }, BODY, NOW).reason, 'invalid webhook-timestamp');
	for (const signature of ['garbage', 'v1,a,b', 'v1,!!!', 'v1,', ',']) {
		assert.equal(verifyStandardWebhook(SECRET, { ...h, 'webhook-signature': signature }, BODY, NOW).ok, false, signature);
	}
	assert.deepEqual(verifyStandardWebhook('', h, BODY, NOW), { ok: false, reason: 'no signing secret' });
});

test('header names are matched in any case, array values take the first', () => {
	const h = headers(BODY);
	const upper = Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toUpperCase(), [v]]));
	// Node lower-cases incoming header names; the check accepts the lower-case form.
	const lower = Object.fromEntries(Object.entries(upper).map(([k, v]) => [k.toLowerCase(), v]));
	assert.equal(verifyStandardWebhook(SECRET, lower, BODY, NOW).ok, true);
});
