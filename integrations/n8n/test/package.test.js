'use strict';
// The package as n8n loads it: each file named in package.json's `n8n` section exports a class
// named like the file, with its icon beside it; and every field an operation reads is one the
// editor shows for that operation.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { existsSync } = require('node:fs');
const { basename, dirname, join } = require('node:path');

const root = join(__dirname, '..');
const pkg = require('../package.json');

function load(rel) {
	const name = basename(rel).split('.')[0];
	const Class = require(join(root, rel))[name];
	assert.equal(typeof Class, 'function', `${rel} exports ${name}`);
	return { instance: new Class(), dir: dirname(join(root, rel)) };
}

function iconExists(dir, icon) {
	assert.match(icon, /^file:/);
	assert.ok(existsSync(join(dir, icon.slice('file:'.length))), icon);
}

test('package.json is a community node package', () => {
	assert.match(pkg.name, /^n8n-nodes-/);
	assert.ok(pkg.keywords.includes('n8n-community-node-package'));
	assert.equal(pkg.n8n.n8nNodesApiVersion, 1);
	assert.deepEqual(Object.keys(pkg.dependencies ?? {}), [], 'no runtime dependencies');
	assert.ok(pkg.peerDependencies['n8n-workflow']);
	assert.deepEqual(pkg.files, ['dist']);
});

test('credentials and nodes load as n8n loads them', () => {
	const credentials = pkg.n8n.credentials.map(load);
	assert.deepEqual(credentials.map((c) => c.instance.name), ['billableApi']);
	for (const { instance, dir } of credentials) {
		iconExists(dir, instance.icon);
		assert.deepEqual(instance.properties.map((p) => p.name), ['baseUrl', 'apiKey']);
		assert.equal(instance.authenticate.properties.headers['X-API-Key'], '={{$credentials.apiKey}}');
		assert.equal(instance.test.request.url, '/billing/balance');
	}
	const nodes = pkg.n8n.nodes.map(load);
	assert.deepEqual(nodes.map((n) => n.instance.description.name), ['billable', 'billableTrigger']);
	for (const { instance, dir } of nodes) {
		iconExists(dir, instance.description.icon);
		assert.deepEqual(instance.description.credentials, [{ name: 'billableApi', required: true }]);
	}
	const trigger = nodes[1].instance;
	assert.deepEqual(Object.keys(trigger.webhookMethods.default).sort(), ['checkExists', 'create', 'delete']);
	assert.equal(typeof trigger.webhook, 'function');
	assert.equal(typeof nodes[0].instance.execute, 'function');
});

/** Whether n8n's editor shows a property for these parameter values (displayOptions.show). */
function shown(prop, values) {
	const show = prop.displayOptions?.show ?? {};
	return Object.entries(show).every(([name, allowed]) => allowed.includes(values[name]));
}

test('each operation is offered, and reads only fields shown for it', () => {
	const { Billable } = require('../dist/nodes/Billable/Billable.node');
	const { OPERATIONS } = require('../dist/nodes/Billable/operations');
	const { WRITE_OPS } = require('../dist/nodes/Billable/description');
	const props = new Billable().description.properties;
	const resources = props.find((p) => p.name === 'resource').options.map((o) => o.value);
	const offered = [];
	for (const p of props.filter((p) => p.name === 'operation')) {
		const [resource] = p.displayOptions.show.resource;
		assert.ok(resources.includes(resource), resource);
		for (const option of p.options) offered.push(`${resource}.${option.value}`);
	}
	assert.deepEqual([...offered].sort(), Object.keys(OPERATIONS).sort());
	assert.deepEqual(
		Object.values(OPERATIONS).filter((o) => o.write).map((o) => o.id).sort(), [...WRITE_OPS].sort(),
	);
	for (const id of offered) {
		const [resource, operation] = id.split('.');
		const values = { resource, operation };
		// Two passes: the first picks the choice fields' defaults (customerBy), the second reads.
		for (const prop of props) if (shown(prop, values) && !(prop.name in values)) values[prop.name] = prop.default;
		for (const by of ['identity', 'id']) {
			const v = { ...values };
			for (const key of Object.keys(v)) if (key.endsWith('customerBy')) v[key] = by;
			const visible = new Map();
			for (const prop of props) if (shown(prop, v)) visible.set(prop.name, prop);
			const read = [];
			const get = (name) => {
				read.push(name);
				assert.ok(visible.has(name), `${id} (${by}) reads ${name}, which the editor does not show`);
				const prop = visible.get(name);
				if (prop.type === 'fixedCollection') return { item: [{ sku: 'X', quantity: 1 }] };
				if (prop.type === 'string' && v[name] === '') return 'x';
				return v[name];
			};
			const call = OPERATIONS[id].build(get);
			assert.match(call.path, /^\/billing\//, id);
			assert.ok(['GET', 'POST'].includes(call.method), id);
			assert.equal(call.method === 'POST', OPERATIONS[id].write, id);
			if (call.method === 'GET') assert.equal(call.body, undefined, id);
		}
	}
});

test('the trigger offers every event type once, and * for all', () => {
	const { BillableTrigger, EVENT_TYPES } = require('../dist/nodes/BillableTrigger/BillableTrigger.node');
	const events = new BillableTrigger().description.properties.find((p) => p.name === 'events');
	const values = events.options.map((o) => o.value);
	assert.deepEqual(values, ['*', ...EVENT_TYPES]);
	assert.equal(new Set(values).size, values.length);
});
