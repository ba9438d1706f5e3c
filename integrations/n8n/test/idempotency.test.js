'use strict';
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { canonicalJson, defaultIdempotencyKey } = require('../dist/shared/idempotency');

test('canonical JSON sorts keys at every level and drops undefined', () => {
	assert.equal(canonicalJson({ b: 1, a: { d: [2, { z: 1, y: 2 }], c: null }, u: undefined }),
		'{"a":{"c":null,"d":[2,{"y":2,"z":1}]},"b":1}');
	assert.equal(canonicalJson({ a: 1, b: 2 }), canonicalJson({ b: 2, a: 1 }));
});

test('the default key is stable for the same call and differs for another', () => {
	const body = { provider: 'telegram', external_id: '42', feature: 'pdf', amount: 1 };
	const key = defaultIdempotencyKey('evt_1', 'quota.consume', 0, 'POST', '/billing/quota/consume', body);
	assert.equal(key, defaultIdempotencyKey('evt_1', 'quota.consume', 0, 'POST', '/billing/quota/consume',
		{ amount: 1, feature: 'pdf', external_id: '42', provider: 'telegram' }));
	assert.match(key, /^n8n:evt_1:quota\.consume:0:[0-9a-f]{24}$/);
	const others = [
		defaultIdempotencyKey('evt_2', 'quota.consume', 0, 'POST', '/billing/quota/consume', body),
		defaultIdempotencyKey('evt_1', 'quota.consume', 1, 'POST', '/billing/quota/consume', body),
		defaultIdempotencyKey('evt_1', 'quota.consume', 0, 'POST', '/billing/quota/consume', { ...body, amount: 2 }),
		defaultIdempotencyKey('evt_1', 'hold.create', 0, 'POST', '/billing/holds', body),
	];
	assert.equal(new Set([key, ...others]).size, 5);
});

test('the default key is printable ASCII of at most 255 characters', () => {
	const key = defaultIdempotencyKey('é\n'.repeat(300), 'order.create', 12, 'POST', '/billing/orders', {});
	assert.ok(key.length <= 255, key.length);
	assert.match(key, /^[\x21-\x7e]+$/);
	assert.match(defaultIdempotencyKey('', 'order.create', 0, 'POST', '/x', {}), /^n8n:run:/);
});
